//! The audit trail: one event per step of a device's life.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why an event was recorded (Mir's reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventReason {
    DeviceCreated,
    DeviceUpdated,
    DeviceDeleted,
    DeviceOnline,
    DeviceOffline,
    SchemaUpdated,
    CommandSent,
    CommandCompleted,
    CommandFailed,
    DesiredPropertiesUpdated,
    ReportedPropertiesUpdated,
    InvalidMessage,
    /// A certificate was issued for the device (API).
    CertificateIssued,
    /// The device's certificates were revoked (delete) or set inactive or active again
    /// (disable, enable).
    CertificatesChanged,
    /// An event a module published (`POST /v1/events`); its own name is
    /// [`Event::custom_name`] (see [`CustomName`]).
    Custom,
}

impl EventReason {
    pub const ALL: [EventReason; 15] = [
        EventReason::DeviceCreated,
        EventReason::DeviceUpdated,
        EventReason::DeviceDeleted,
        EventReason::DeviceOnline,
        EventReason::DeviceOffline,
        EventReason::SchemaUpdated,
        EventReason::CommandSent,
        EventReason::CommandCompleted,
        EventReason::CommandFailed,
        EventReason::DesiredPropertiesUpdated,
        EventReason::ReportedPropertiesUpdated,
        EventReason::InvalidMessage,
        EventReason::CertificateIssued,
        EventReason::CertificatesChanged,
        EventReason::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::DeviceCreated => "DeviceCreated",
            EventReason::DeviceUpdated => "DeviceUpdated",
            EventReason::DeviceDeleted => "DeviceDeleted",
            EventReason::DeviceOnline => "DeviceOnline",
            EventReason::DeviceOffline => "DeviceOffline",
            EventReason::SchemaUpdated => "SchemaUpdated",
            EventReason::CommandSent => "CommandSent",
            EventReason::CommandCompleted => "CommandCompleted",
            EventReason::CommandFailed => "CommandFailed",
            EventReason::DesiredPropertiesUpdated => "DesiredPropertiesUpdated",
            EventReason::ReportedPropertiesUpdated => "ReportedPropertiesUpdated",
            EventReason::InvalidMessage => "InvalidMessage",
            EventReason::CertificateIssued => "CertificateIssued",
            EventReason::CertificatesChanged => "CertificatesChanged",
            EventReason::Custom => "Custom",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
    }

    /// [`parse`](Self::parse), with an error that lists the known reasons (the API's
    /// and the CLI's answer to a reason they do not know).
    pub fn from_name(s: &str) -> Result<Self, UnknownReason> {
        Self::parse(s).ok_or_else(|| UnknownReason(s.to_string()))
    }

    pub fn event_type(self) -> EventType {
        match self {
            EventReason::CommandFailed | EventReason::InvalidMessage => EventType::Warning,
            _ => EventType::Normal,
        }
    }
}

/// A reason name that is not one of [`EventReason::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown reason {0:?}; known: {known}", known = known_reasons())]
pub struct UnknownReason(pub String);

fn known_reasons() -> String {
    let known: Vec<&str> = EventReason::ALL.iter().map(|r| r.as_str()).collect();
    known.join(", ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    Normal,
    Warning,
}

/// One recorded event. `id` is derived from what caused the event, so that a
/// handler that runs twice on the same input records it once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: String,
    pub time: DateTime<Utc>,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub reason: EventReason,
    pub device_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    pub message: String,
    #[serde(default)]
    pub payload: Value,
    /// Who caused it through the API: the caller's IAM ARN (`anonymous` without one).
    /// Events a device's own messages cause have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// A [`EventReason::Custom`] event's own name (a [`CustomName`], e.g.
    /// `DeviceOfflineAlert`); none for Mir's reasons. Absent from events stored before it
    /// existed, so they read back unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_name: Option<String>,
    /// When the store drops it (epoch seconds): set by the store on append, from its
    /// [`super::EventRetention`] (the DynamoDB TTL attribute `expiresAt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// Namespace of the v5 UUIDs used as event ids.
const EVENT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6d69_725f_6576_656e_7473_5f76_3100_0001);

impl Event {
    /// An event whose id is a function of `cause` (e.g. the rule event that led to
    /// it): recording it twice keeps one.
    pub fn new(
        reason: EventReason,
        device_id: &str,
        time: DateTime<Utc>,
        cause: &str,
        message: impl Into<String>,
    ) -> Self {
        let key = format!("{}|{device_id}|{cause}", reason.as_str());
        Self {
            id: uuid::Uuid::new_v5(&EVENT_ID_NAMESPACE, key.as_bytes()).to_string(),
            time,
            event_type: reason.event_type(),
            reason,
            device_id: device_id.to_string(),
            name: String::new(),
            namespace: String::new(),
            message: message.into(),
            payload: Value::Null,
            actor: None,
            custom_name: None,
            expires_at: None,
        }
    }

    /// An event an API request caused: its id derives from the request id, and it
    /// records the caller as its actor.
    pub fn by_caller(
        reason: EventReason,
        device_id: &str,
        time: DateTime<Utc>,
        caller: &crate::api::Caller,
        message: impl Into<String>,
    ) -> Self {
        let fallback = time.timestamp_nanos_opt().unwrap_or_default();
        let mut ev = Self::new(reason, device_id, time, &caller.cause(fallback), message);
        ev.actor = Some(caller.actor());
        ev
    }

    pub fn for_twin(mut self, twin: &super::Twin) -> Self {
        self.name = twin.meta.name.clone();
        self.namespace = twin.meta.namespace.clone();
        self
    }

    pub fn with_payload(mut self, payload: Value) -> Self {
        self.payload = payload;
        self
    }
}

/// The most characters of a [`CustomName`].
pub const MAX_CUSTOM_NAME: usize = 64;

/// The name of a custom event: an ASCII letter, then letters, digits, `_`, `-` or `.`,
/// at most [`MAX_CUSTOM_NAME`] characters, and not one of Mir's reasons (so that a
/// subscriber filtering on `customName` never confuses the two).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CustomName(String);

/// Why a custom event name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomNameError {
    #[error("a custom event needs a name (e.g. DeviceOfflineAlert)")]
    Empty,
    #[error("custom event name {name:?} is {len} characters long; at most {MAX_CUSTOM_NAME}")]
    TooLong { name: String, len: usize },
    #[error("custom event name {name:?} must start with an ASCII letter")]
    BadStart { name: String },
    #[error(
        "custom event name {name:?} has {character:?}; use ASCII letters, digits, '_', '-' or '.'"
    )]
    BadCharacter { name: String, character: char },
    #[error("custom event name {name:?} is Mir's reason {reason}; choose a name of your own", reason = reason.as_str())]
    Reserved { name: String, reason: EventReason },
}

impl CustomName {
    pub fn new(name: &str) -> Result<Self, CustomNameError> {
        let name = name.trim();
        let owned = || name.to_string();
        let Some(first) = name.chars().next() else {
            return Err(CustomNameError::Empty);
        };
        let len = name.chars().count();
        if len > MAX_CUSTOM_NAME {
            return Err(CustomNameError::TooLong { name: owned(), len });
        }
        if !first.is_ascii_alphabetic() {
            return Err(CustomNameError::BadStart { name: owned() });
        }
        if let Some(character) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(CustomNameError::BadCharacter {
                name: owned(),
                character,
            });
        }
        if let Some(reason) = EventReason::parse(name) {
            return Err(CustomNameError::Reserved {
                name: owned(),
                reason,
            });
        }
        Ok(Self(owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CustomName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CustomName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CustomName::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Which events to list; everything optional. Lists are newest first and paged
/// ([`super::PageRequest`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<EventReason>,
    /// Events at this time or later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Events before this time (exclusive, so that `since`/`until` windows tile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

impl EventFilter {
    pub fn matches(&self, e: &Event) -> bool {
        self.device_id.as_ref().is_none_or(|d| *d == e.device_id)
            && self.reason.is_none_or(|r| r == e.reason)
            && self.since.is_none_or(|s| e.time >= s)
            && self.until.is_none_or(|u| e.time < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_cause_gives_the_same_event_id() {
        let t = Utc::now();
        let a = Event::new(EventReason::DeviceOnline, "d", t, "session-1", "online");
        let b = Event::new(EventReason::DeviceOnline, "d", t, "session-1", "online");
        let c = Event::new(EventReason::DeviceOnline, "d", t, "session-2", "online");
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn reasons_parse_case_insensitively() {
        assert_eq!(
            EventReason::parse("deviceonline"),
            Some(EventReason::DeviceOnline)
        );
        assert_eq!(EventReason::parse("nope"), None);
        let unknown = EventReason::from_name("nope").expect_err("unknown");
        assert!(unknown
            .to_string()
            .starts_with("unknown reason \"nope\"; known: DeviceCreated, DeviceUpdated"));
    }

    #[test]
    fn custom_names_are_identifiers_that_are_not_mir_reasons() {
        assert_eq!(
            CustomName::new(" DeviceOfflineAlert ").map(|n| n.to_string()),
            Ok("DeviceOfflineAlert".into())
        );
        assert!(CustomName::new("acme.cold-room_2").is_ok());
        assert_eq!(CustomName::new("  "), Err(CustomNameError::Empty));
        assert_eq!(
            CustomName::new("2fast"),
            Err(CustomNameError::BadStart {
                name: "2fast".into()
            })
        );
        assert_eq!(
            CustomName::new("on fire"),
            Err(CustomNameError::BadCharacter {
                name: "on fire".into(),
                character: ' '
            })
        );
        assert_eq!(
            CustomName::new("deviceoffline"),
            Err(CustomNameError::Reserved {
                name: "deviceoffline".into(),
                reason: EventReason::DeviceOffline
            })
        );
        let long = "a".repeat(MAX_CUSTOM_NAME + 1);
        assert_eq!(
            CustomName::new(&long),
            Err(CustomNameError::TooLong {
                name: long.clone(),
                len: MAX_CUSTOM_NAME + 1
            })
        );
    }

    #[test]
    fn an_event_stored_before_custom_names_reads_back_without_one() {
        let legacy = r#"{"id":"1","time":"2026-01-01T00:00:00Z","type":"Normal",
            "reason":"DeviceOnline","deviceId":"d","message":"online"}"#;
        let e: Event = serde_json::from_str(legacy).expect("parse");
        assert_eq!(e.custom_name, None);
        let json = serde_json::to_value(&e).expect("json");
        assert!(json.get("customName").is_none());
    }

    #[test]
    fn a_filter_keeps_since_inclusive_and_until_exclusive() {
        let t = Utc::now();
        let e = Event::new(EventReason::DeviceOnline, "d", t, "c", "on");
        let f = |since, until| EventFilter {
            since,
            until,
            ..Default::default()
        };
        assert!(f(Some(t), None).matches(&e));
        assert!(!f(None, Some(t)).matches(&e));
        assert!(f(None, Some(t + chrono::Duration::nanoseconds(1))).matches(&e));
        assert!(!f(Some(t + chrono::Duration::nanoseconds(1)), None).matches(&e));
    }
}
