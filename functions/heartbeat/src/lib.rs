//! `heartbeat`: a device is alive (rule `mir/+/hb`). Records `lastHeartbeat` and marks
//! the device online (DeviceOnline when it was offline).
//!
//! Architecture: see docs/architecture.md in the repository (sections Routes, Delivery semantics).

use prost::Message;

use mir_proto::{topics::DeviceTopic, wire::Heartbeat};
use mir_shared::{
    domain::{Event, EventReason},
    rule_event::RuleEvent,
    service::{self, Change, HandlerError},
};

mir_shared::deps! {
    /// The ports `heartbeat` uses.
    pub struct Deps { twins, events }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatOutcome {
    pub device_id: String,
    pub came_online: bool,
}

pub async fn handle(deps: &Deps<'_>, event: &RuleEvent) -> Result<HeartbeatOutcome, HandlerError> {
    let id = event.device()?;
    Heartbeat::decode(event.payload_bytes()?.as_slice())
        .map_err(HandlerError::malformed("Heartbeat"))?;
    let at = event.received_at();
    let cause = event.cause(DeviceTopic::Heartbeat);
    service::provision(deps.twins, deps.events, &id, at, &cause, "heartbeat").await?;
    let mut came_online = false;
    let twin = service::update_twin(deps.twins, id.as_str(), |twin| {
        came_online = false;
        let newer = twin.status.last_heartbeat.is_none_or(|t| t < at);
        if !newer && twin.status.online {
            return Ok(Change::Unchanged);
        }
        if newer {
            twin.status.last_heartbeat = Some(at);
        }
        if !twin.status.online {
            twin.status.online = true;
            came_online = true;
        }
        Ok(Change::Changed)
    })
    .await?
    .ok_or_else(|| HandlerError::UnknownDevice(id.to_string()))?;
    let mut events = Vec::new();
    if came_online {
        events.push(
            Event::new(
                EventReason::DeviceOnline,
                id.as_str(),
                at,
                &cause,
                "device online (heartbeat)",
            )
            .for_twin(&twin.value),
        );
    }
    deps.events.append(&events).await?;
    Ok(HeartbeatOutcome {
        device_id: id.to_string(),
        came_online,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_shared::testing::{rule_event, TestWorld};

    #[tokio::test]
    async fn a_heartbeat_marks_the_device_online_and_an_older_one_does_not_move_time_back() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let deps = Deps::try_from(&w.ports).expect("the test world has every port");
        let hb = Heartbeat {
            sent_at_ns: 1,
            uptime_sec: 2,
            queued: 0,
        }
        .encode_to_vec();
        let out = handle(&deps, &rule_event("w1", &hb, 2_000))
            .await
            .expect("ok");
        assert!(out.came_online);
        let out = handle(&deps, &rule_event("w1", &hb, 1_000))
            .await
            .expect("ok");
        assert!(!out.came_online);
        let twin = w.twin("w1").await;
        assert!(twin.status.online);
        assert_eq!(
            twin.status.last_heartbeat.map(|t| t.timestamp_millis()),
            Some(2_000)
        );
        assert_eq!(w.reasons("w1").await, ["DeviceOnline"]);
    }

    #[tokio::test]
    async fn garbage_instead_of_a_heartbeat_is_refused() {
        let w = TestWorld::new();
        let deps = Deps::try_from(&w.ports).expect("the test world has every port");
        let err = handle(&deps, &rule_event("w1", &[0xff, 0xff], 1))
            .await
            .expect_err("bad");
        assert!(matches!(err, HandlerError::Malformed { .. }));
    }
}
