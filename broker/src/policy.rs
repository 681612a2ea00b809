//! The device policy (docs/architecture.md, Topics and rule events): what a device may
//! publish and subscribe to. Pure functions of the client id and the topic.

use mir_proto::topics::{parse_custom, DeviceTopic, Direction};

/// The device policy for PUBLISH: `mir/{own id}/{suffix}` of a device-to-cloud topic,
/// or one of its own custom routes, `mir/{own id}/x/{module}/{route}`.
pub(crate) fn may_publish(client_id: &str, topic: &str) -> bool {
    let Some(suffix) = own_rest(client_id, topic) else {
        return false;
    };
    let platform = DeviceTopic::ALL
        .iter()
        .any(|t| t.suffix() == suffix && t.direction() == Direction::DeviceToCloud);
    platform || parse_custom(topic).is_ok_and(|(id, _)| id.as_str() == client_id)
}

/// The device policy for SUBSCRIBE: a valid filter under `mir/{own id}/` (so no
/// wildcard above the device's own level: `#`, `mir/#`, `mir/+/...` and `$aws/#` are
/// refused).
pub(crate) fn may_subscribe(client_id: &str, filter: &str) -> bool {
    match own_rest(client_id, filter) {
        Some(rest) => !rest.is_empty() && crate::topic::check_filter(filter).is_ok(),
        None => false,
    }
}

/// What follows `mir/{client_id}/`.
fn own_rest<'a>(client_id: &str, topic: &'a str) -> Option<&'a str> {
    topic
        .strip_prefix("mir/")
        .and_then(|r| r.strip_prefix(client_id))
        .and_then(|r| r.strip_prefix('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_publish_only_their_own_device_to_cloud_topics() {
        assert!(may_publish("d1", "mir/d1/tlm"));
        assert!(may_publish("d1", "mir/d1/cfg/desired/get"));
        assert!(!may_publish("d1", "mir/d1/cmd/req"));
        assert!(!may_publish("d1", "mir/d2/tlm"));
        assert!(!may_publish("d1", "mir/d1x/tlm"));
        assert!(!may_publish("d1", "mir/d1/unknown"));
        assert!(!may_publish("d1", "other/d1/tlm"));
        assert!(!may_publish("d1", "$aws/events/presence/connected/d1"));
    }

    #[test]
    fn devices_publish_on_their_own_custom_routes_only() {
        assert!(may_publish("d1", "mir/d1/x/alerts/door"));
        assert!(!may_publish("d1", "mir/d2/x/alerts/door"));
        assert!(!may_publish("d1", "mir/d1/x/alerts"));
        assert!(!may_publish("d1", "mir/d1/x/alerts/door/open"));
        assert!(!may_publish("d1", "mir/d1/x/Alerts/door"));
    }

    #[test]
    fn filters_must_stay_under_the_own_prefix() {
        assert!(may_subscribe("d1", "mir/d1/cmd/req"));
        assert!(may_subscribe("d1", "mir/d1/#"));
        assert!(may_subscribe("d1", "mir/d1/+/desired"));
        for refused in [
            "#",
            "+",
            "mir/#",
            "mir/+/cmd/req",
            "$aws/#",
            "mir/d2/#",
            "mir/d1/",
            "mir/d1/#/x",
            "mir/d1/a+",
            "mir/d1x/#",
        ] {
            assert!(!may_subscribe("d1", refused), "{refused}");
        }
    }
}
