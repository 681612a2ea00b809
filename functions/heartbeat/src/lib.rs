//! `heartbeat`: a device is alive (rule `mir/+/hb`). Records `lastHeartbeat` and marks
//! the device online (DeviceOnline when it was offline), by the rules of
//! [`mir_shared::domain::presence`]: a heartbeat received before the latest connection's
//! disconnect (delivered late) does not bring the device back online. A heartbeat of a
//! deleted device changes nothing and never creates the device again.
//!
//! **Cost.** Most heartbeats are of an online device: they are one conditional write
//! ([`TwinStore::beat`](mir_shared::ports::TwinStore::beat)), no read, no transaction;
//! a duplicate, a late one, or one within half an interval of the stored one writes
//! nothing. Only a device coming online again (or unknown) takes the full
//! read-modify-write.
//!
//! Architecture: see docs/architecture.md in the repository (sections Routes, Delivery semantics).

use prost::Message;

use mir_proto::{topics::DeviceTopic, wire::Heartbeat};
use mir_shared::{
    domain::{
        presence::{self, Beat},
        Event, EventReason,
    },
    ports::BeatWrite,
    rule_event::RuleEvent,
    service::{self, AfterDelete, Change, HandlerError},
};

mir_shared::deps! {
    /// The ports `heartbeat` uses.
    pub struct Deps { twins, events, stale_after }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatOutcome {
    pub device_id: String,
    pub came_online: bool,
    /// The device was deleted: the heartbeat was ignored.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

pub async fn handle(deps: &Deps<'_>, event: &RuleEvent) -> Result<HeartbeatOutcome, HandlerError> {
    let id = event.device()?;
    let hb = Heartbeat::decode(event.payload_bytes()?.as_slice())
        .map_err(HandlerError::malformed("Heartbeat"))?;
    let at = event.received_at();
    let interval = (hb.interval_sec > 0).then_some(hb.interval_sec);
    let fallback = deps.stale_after;
    match deps
        .twins
        .beat(id.as_str(), &Beat::new(at, interval, fallback))
        .await?
    {
        BeatWrite::Written | BeatWrite::Fresh => {
            return Ok(HeartbeatOutcome {
                device_id: id.to_string(),
                came_online: false,
                deleted: false,
            })
        }
        BeatWrite::NotApplied => {}
    }
    let cause = event.cause(DeviceTopic::Heartbeat);
    let mut outcome = HeartbeatOutcome {
        device_id: id.to_string(),
        came_online: false,
        deleted: true,
    };
    let how = "heartbeat";
    let provisioned = service::provision(
        deps.twins,
        deps.events,
        &id,
        at,
        &cause,
        how,
        AfterDelete::StayDeleted,
    );
    if provisioned.await?.is_none() {
        return Ok(outcome);
    }
    let mut came_online = false;
    let updated = service::update_twin(deps.twins, id.as_str(), |twin| {
        let before = twin.status.clone();
        let change = presence::apply_heartbeat(&mut twin.status, at);
        came_online = change.came_online;
        if interval.is_some() {
            twin.status.heartbeat_interval_sec = interval;
        }
        presence::set_stale_at(&mut twin.status, fallback);
        Ok(if twin.status != before {
            Change::Changed
        } else {
            Change::Unchanged
        })
    })
    .await?;
    // None: deleted since it was read; the write did not re-create it.
    let Some(twin) = updated else {
        return Ok(outcome);
    };
    outcome.deleted = false;
    outcome.came_online = came_online;
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
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_shared::ports::TwinStore;
    use mir_shared::testing::{at_ms, rule_event, TestWorld};

    #[tokio::test]
    async fn a_heartbeat_marks_the_device_online_and_an_older_one_does_not_move_time_back() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let deps = Deps::try_from(&w.ports).expect("the test world has every port");
        let hb = Heartbeat {
            sent_at_ns: 1,
            uptime_sec: 2,
            queued: 0,
            ..Default::default()
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
    async fn a_heartbeat_of_a_deleted_device_does_not_create_it_again() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let deps = Deps::try_from(&w.ports).expect("the test world has every port");
        TwinStore::delete(&w.store, "w1", at_ms(5_000))
            .await
            .expect("deleted");
        let hb = Heartbeat::default().encode_to_vec();
        // Sent before the delete and delivered after it, and sent after it.
        for received in [4_000, 6_000] {
            let out = handle(&deps, &rule_event("w1", &hb, received))
                .await
                .expect("ignored, not failed");
            assert!(out.deleted && !out.came_online, "{out:?}");
        }
        assert!(TwinStore::get(&w.store, "w1")
            .await
            .expect("read")
            .is_none());
        assert!(w.reasons("w1").await.is_empty(), "no DeviceCreated");
    }

    #[tokio::test]
    async fn a_heartbeat_delivered_after_the_disconnect_it_preceded_leaves_the_device_offline() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let deps = Deps::try_from(&w.ports).expect("the test world has every port");
        let mut twin = w.twin_versioned("w1").await;
        let ev = |phase, ms| presence::Lifecycle {
            session_id: "s1",
            version: 1,
            at: at_ms(ms),
            phase,
            disconnect_reason: None,
        };
        presence::apply_lifecycle(
            &mut twin.value.status,
            &ev(presence::Phase::Connected, 1_000),
        );
        presence::apply_lifecycle(
            &mut twin.value.status,
            &ev(presence::Phase::Disconnected, 3_000),
        );
        TwinStore::update(&w.store, &twin.value, twin.version)
            .await
            .expect("stored");
        let hb = Heartbeat::default().encode_to_vec();
        let out = handle(&deps, &rule_event("w1", &hb, 2_000))
            .await
            .expect("ok");
        assert!(!out.came_online);
        assert!(!w.twin("w1").await.status.online);
        let out = handle(&deps, &rule_event("w1", &hb, 4_000))
            .await
            .expect("ok");
        assert!(
            out.came_online,
            "received after the disconnect: a newer connection"
        );
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
