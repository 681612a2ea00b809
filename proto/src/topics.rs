//! MQTT topics (docs/architecture.md, Topics and rule events). Every device topic is
//! `mir/{device id}/{suffix}`.

use crate::{DeviceId, InvalidDeviceId};

/// First level of every Mir topic.
pub const ROOT: &str = "mir";

/// Prefix of AWS IoT lifecycle topics: `$aws/events/presence/{connected|disconnected}/{id}`.
pub const PRESENCE_PREFIX: &str = "$aws/events/presence/";

/// Who publishes on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    DeviceToCloud,
    CloudToDevice,
}

/// The kinds of device topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceTopic {
    Hello,
    Heartbeat,
    Telemetry,
    Reported,
    DesiredGet,
    CommandResponse,
    CommandRequest,
    Desired,
    HelloGet,
}

impl DeviceTopic {
    pub const ALL: [DeviceTopic; 9] = [
        DeviceTopic::Hello,
        DeviceTopic::Heartbeat,
        DeviceTopic::Telemetry,
        DeviceTopic::Reported,
        DeviceTopic::DesiredGet,
        DeviceTopic::CommandResponse,
        DeviceTopic::CommandRequest,
        DeviceTopic::Desired,
        DeviceTopic::HelloGet,
    ];

    /// The part after `mir/{id}/`.
    pub const fn suffix(self) -> &'static str {
        match self {
            DeviceTopic::Hello => "hello",
            DeviceTopic::Heartbeat => "hb",
            DeviceTopic::Telemetry => "tlm",
            DeviceTopic::Reported => "cfg/reported",
            DeviceTopic::DesiredGet => "cfg/desired/get",
            DeviceTopic::CommandResponse => "cmd/resp",
            DeviceTopic::CommandRequest => "cmd/req",
            DeviceTopic::Desired => "cfg/desired",
            DeviceTopic::HelloGet => "hello/get",
        }
    }

    pub const fn direction(self) -> Direction {
        match self {
            DeviceTopic::CommandRequest | DeviceTopic::Desired | DeviceTopic::HelloGet => {
                Direction::CloudToDevice
            }
            _ => Direction::DeviceToCloud,
        }
    }

    /// The topic for one device.
    pub fn for_device(self, id: &DeviceId) -> String {
        format!("{ROOT}/{}/{}", id.as_str(), self.suffix())
    }

    /// The filter for every device, as used by IoT rules: `mir/+/tlm`.
    pub fn filter(self) -> String {
        format!("{ROOT}/+/{}", self.suffix())
    }

    fn from_suffix(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.suffix() == s)
    }
}

/// Why a topic is not a Mir device topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic {0:?} is not under `mir/`")]
    NotMir(String),
    #[error("topic {topic:?} names an invalid device id: {source}")]
    BadDeviceId {
        topic: String,
        #[source]
        source: InvalidDeviceId,
    },
    #[error("topic {0:?} is not a known Mir device topic")]
    Unknown(String),
}

/// Parses `mir/{id}/{suffix}`.
pub fn parse(topic: &str) -> Result<(DeviceId, DeviceTopic), TopicError> {
    let rest = topic
        .strip_prefix(ROOT)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| TopicError::NotMir(topic.to_string()))?;
    let (id, suffix) = rest
        .split_once('/')
        .ok_or_else(|| TopicError::Unknown(topic.to_string()))?;
    let id = DeviceId::new(id).map_err(|source| TopicError::BadDeviceId {
        topic: topic.to_string(),
        source,
    })?;
    let kind =
        DeviceTopic::from_suffix(suffix).ok_or_else(|| TopicError::Unknown(topic.to_string()))?;
    Ok((id, kind))
}

/// The level of custom device routes: `mir/{id}/x/{module}/{route}`.
pub const CUSTOM: &str = "x";

/// The filter of every custom device route of every device.
pub const CUSTOM_FILTER: &str = "mir/+/x/+/+";

/// Most bytes of a module or route name.
pub const MAX_CUSTOM_NAME: usize = 32;

/// A custom device route: a device -> cloud topic of a module's own
/// (`mir/{id}/x/{module}/{route}`), which the device may publish on and the module
/// subscribes to. The platform stores nothing of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomRoute {
    module: String,
    route: String,
}

/// Why a module or route name is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} {name:?} must be 1 to {MAX_CUSTOM_NAME} of a-z, 0-9 and '-', starting with a letter"
)]
pub struct InvalidCustomName {
    pub what: &'static str,
    pub name: String,
}

fn custom_name(what: &'static str, name: &str) -> Result<String, InvalidCustomName> {
    let ok = name.len() <= MAX_CUSTOM_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(name.to_string())
    } else {
        Err(InvalidCustomName {
            what,
            name: name.to_string(),
        })
    }
}

impl CustomRoute {
    pub fn new(module: &str, route: &str) -> Result<Self, InvalidCustomName> {
        Ok(Self {
            module: custom_name("module", module)?,
            route: custom_name("route", route)?,
        })
    }

    pub fn module(&self) -> &str {
        &self.module
    }

    pub fn route(&self) -> &str {
        &self.route
    }

    /// The topic for one device.
    pub fn for_device(&self, id: &DeviceId) -> String {
        format!(
            "{ROOT}/{}/{CUSTOM}/{}/{}",
            id.as_str(),
            self.module,
            self.route
        )
    }

    /// The filter of this route for every device, as a module's IoT rule reads it.
    pub fn filter(&self) -> String {
        format!("{ROOT}/+/{CUSTOM}/{}/{}", self.module, self.route)
    }
}

/// Parses `mir/{id}/x/{module}/{route}`.
pub fn parse_custom(topic: &str) -> Result<(DeviceId, CustomRoute), TopicError> {
    let rest = topic
        .strip_prefix(ROOT)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| TopicError::NotMir(topic.to_string()))?;
    let unknown = || TopicError::Unknown(topic.to_string());
    let mut parts = rest.split('/');
    let (Some(id), Some(CUSTOM), Some(module), Some(route), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(unknown());
    };
    let id = DeviceId::new(id).map_err(|source| TopicError::BadDeviceId {
        topic: topic.to_string(),
        source,
    })?;
    let route = CustomRoute::new(module, route).map_err(|_| unknown())?;
    Ok((id, route))
}

/// Lifecycle event kinds published by AWS IoT (and the local hub).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceKind {
    Connected,
    Disconnected,
}

impl PresenceKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            PresenceKind::Connected => "connected",
            PresenceKind::Disconnected => "disconnected",
        }
    }
}

/// `$aws/events/presence/{connected|disconnected}/{client id}`.
pub fn presence(kind: PresenceKind, client_id: &str) -> String {
    format!("{PRESENCE_PREFIX}{}/{client_id}", kind.as_str())
}

/// Filter of all lifecycle events, as used by the presence rule.
pub const PRESENCE_FILTER: &str = "$aws/events/presence/+/+";

/// Whether `topic` matches the MQTT filter `filter` (`+` one level, `#` the rest).
///
/// Topics starting with `$` are not matched by filters starting with a wildcard,
/// as MQTT 3.1.1 section 4.7.2 requires.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> DeviceId {
        DeviceId::new(s).expect("valid id")
    }

    #[test]
    fn every_topic_round_trips_through_parse() {
        for kind in DeviceTopic::ALL {
            let topic = kind.for_device(&id("weather"));
            assert_eq!(parse(&topic), Ok((id("weather"), kind)));
            assert!(matches(&kind.filter(), &topic));
        }
    }

    #[test]
    fn topics_of_other_roots_and_bad_ids_are_refused() {
        assert!(matches!(parse("foo/x/tlm"), Err(TopicError::NotMir(_))));
        assert!(matches!(
            parse("mir/a b/tlm"),
            Err(TopicError::BadDeviceId { .. })
        ));
        assert!(matches!(parse("mir/x/nope"), Err(TopicError::Unknown(_))));
        assert!(matches!(parse("mir/x"), Err(TopicError::Unknown(_))));
        assert!(matches!(parse("mirx/y/tlm"), Err(TopicError::NotMir(_))));
    }

    #[test]
    fn a_custom_route_round_trips_through_its_topic_and_matches_its_filters() {
        let route = CustomRoute::new("alerts", "door-open").expect("valid names");
        let topic = route.for_device(&id("pump-1"));
        assert_eq!(topic, "mir/pump-1/x/alerts/door-open");
        assert_eq!(parse_custom(&topic), Ok((id("pump-1"), route.clone())));
        assert!(matches(&route.filter(), &topic));
        assert!(matches(CUSTOM_FILTER, &topic));
        // Not a platform topic.
        assert!(matches!(parse(&topic), Err(TopicError::Unknown(_))));
    }

    #[test]
    fn custom_routes_with_bad_names_or_levels_are_refused() {
        for bad in [
            "mir/d1/x/alerts",
            "mir/d1/x/alerts/door/more",
            "mir/d1/x/Alerts/door",
            "mir/d1/x/alerts/",
            "mir/d1/x/alerts/+",
            "mir/d1/y/alerts/door",
            "mir/d1/tlm",
        ] {
            assert!(
                matches!(parse_custom(bad), Err(TopicError::Unknown(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_custom("mir/a b/x/alerts/door"),
            Err(TopicError::BadDeviceId { .. })
        ));
        assert_eq!(
            CustomRoute::new("alerts", &"r".repeat(33))
                .err()
                .map(|e| e.what),
            Some("route")
        );
        assert_eq!(
            CustomRoute::new("9lives", "door").err().map(|e| e.what),
            Some("module")
        );
    }

    #[test]
    fn wildcards_follow_mqtt_rules() {
        assert!(matches("mir/+/cfg/desired", "mir/a/cfg/desired"));
        assert!(!matches("mir/+/cfg/desired", "mir/a/cfg/desired/get"));
        assert!(matches("mir/a/#", "mir/a/cfg/desired/get"));
        assert!(matches("#", "mir/a"));
        assert!(!matches("#", "$aws/events/presence/connected/a"));
        assert!(matches(
            PRESENCE_FILTER,
            &presence(PresenceKind::Connected, "a")
        ));
        assert!(!matches("mir/+/tlm", "mir/a/b/tlm"));
    }
}
