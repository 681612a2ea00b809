//! `presence`: online/offline from AWS IoT lifecycle events, and a scheduled sweep that
//! marks devices offline when their heartbeat is stale.
//!
//! Lifecycle events can arrive late or out of order: a disconnect older than the last
//! heartbeat is ignored, since the device has spoken since.
//!
//! Architecture: see docs/architecture.md in the repository (sections Routes, Delivery semantics).

use chrono::{DateTime, Duration, Utc};

use mir_shared::{
    domain::{Event, EventReason, Targets},
    rule_event::{LifecycleEvent, PresenceInput},
    service::{self, Change, HandlerError},
};

mir_shared::deps! {
    /// The ports `presence` uses.
    pub struct Deps { twins, events, clock, stale_after }
}

/// Default for [`Deps::stale_after`]: three missed 30 s heartbeats.
pub fn default_stale_after() -> Duration {
    Duration::seconds(90)
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceOutcome {
    /// Devices whose online state changed.
    pub changed: Vec<String>,
}

pub async fn handle(
    deps: &Deps<'_>,
    input: &PresenceInput,
) -> Result<PresenceOutcome, HandlerError> {
    match input {
        PresenceInput::Lifecycle(ev) => lifecycle(deps, ev).await,
        PresenceInput::Schedule(s) => sweep(deps, s.time.max(deps.clock.now())).await,
    }
}

async fn lifecycle(deps: &Deps<'_>, ev: &LifecycleEvent) -> Result<PresenceOutcome, HandlerError> {
    let id = mir_proto::DeviceId::new(ev.client_id.clone())
        .map_err(mir_shared::rule_event::RuleEventError::from)?;
    let at = ev.time();
    let connected = match ev.event_type.as_str() {
        "connected" => true,
        "disconnected" => false,
        other => return Err(HandlerError::UnknownLifecycle(other.to_string())),
    };
    let cause = format!(
        "{}|{}|{}",
        ev.event_type, ev.session_identifier, ev.timestamp
    );
    service::provision(deps.twins, deps.events, &id, at, &cause, "connect").await?;
    let mut changed = false;
    let twin = service::update_twin(deps.twins, id.as_str(), |twin| {
        changed = false;
        let st = &mut twin.status;
        if connected {
            let newer = st.last_heartbeat.is_none_or(|t| t < at);
            if st.online && !newer {
                return Ok(Change::Unchanged);
            }
            changed = !st.online;
            st.online = true;
            if newer {
                st.last_heartbeat = Some(at);
            }
            Ok(Change::Changed)
        } else {
            // Ignore a disconnect older than the device's latest sign of life.
            if !st.online || st.last_heartbeat.is_some_and(|t| t > at) {
                return Ok(Change::Unchanged);
            }
            st.online = false;
            changed = true;
            Ok(Change::Changed)
        }
    })
    .await?
    .ok_or_else(|| HandlerError::UnknownDevice(id.to_string()))?;
    let mut events = Vec::new();
    if changed {
        let (reason, msg) = if connected {
            (EventReason::DeviceOnline, "device connected".to_string())
        } else {
            (
                EventReason::DeviceOffline,
                format!(
                    "device disconnected ({})",
                    ev.disconnect_reason.as_deref().unwrap_or("unknown reason")
                ),
            )
        };
        events.push(Event::new(reason, id.as_str(), at, &cause, msg).for_twin(&twin.value));
    }
    deps.events.append(&events).await?;
    Ok(PresenceOutcome {
        changed: if changed {
            vec![id.to_string()]
        } else {
            vec![]
        },
    })
}

/// Marks offline every online device whose last heartbeat is older than `stale_after`.
pub async fn sweep(deps: &Deps<'_>, now: DateTime<Utc>) -> Result<PresenceOutcome, HandlerError> {
    let cutoff = now - deps.stale_after;
    let stale: Vec<String> = deps
        .twins
        .list(&Targets::all())
        .await?
        .into_iter()
        .filter(|t| {
            t.value.status.online && t.value.status.last_heartbeat.is_none_or(|h| h < cutoff)
        })
        .map(|t| t.value.spec.device_id)
        .collect();
    let mut changed = Vec::new();
    let mut events = Vec::new();
    for id in stale {
        let mut went_offline = false;
        let twin = service::update_twin(deps.twins, &id, |twin| {
            went_offline = false;
            if !twin.status.online || twin.status.last_heartbeat.is_some_and(|h| h >= cutoff) {
                return Ok(Change::Unchanged);
            }
            twin.status.online = false;
            went_offline = true;
            Ok(Change::Changed)
        })
        .await?;
        if let (true, Some(twin)) = (went_offline, twin) {
            let last = twin
                .value
                .status
                .last_heartbeat
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "never".into());
            events.push(
                Event::new(
                    EventReason::DeviceOffline,
                    &id,
                    now,
                    &format!("sweep|{last}"),
                    format!("no heartbeat since {last}"),
                )
                .for_twin(&twin.value),
            );
            changed.push(id);
        }
    }
    deps.events.append(&events).await?;
    Ok(PresenceOutcome { changed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_shared::testing::{at_ms, TestWorld};

    fn lifecycle_json(kind: &str, ms: i64) -> PresenceInput {
        serde_json::from_value(serde_json::json!({
            "clientId": "w1", "timestamp": ms, "eventType": kind,
            "sessionIdentifier": format!("s-{ms}"), "principalIdentifier": "p", "versionNumber": 0,
            "disconnectReason": "CONNECTION_LOST"
        }))
        .expect("lifecycle fixture")
    }

    fn deps(w: &TestWorld) -> Deps<'_> {
        Deps::try_from(&w.ports).expect("the test world has every port")
    }

    #[tokio::test]
    async fn connect_then_disconnect_records_online_and_offline() {
        let w = TestWorld::new();
        handle(&deps(&w), &lifecycle_json("connected", 1_000))
            .await
            .expect("ok");
        assert!(w.twin("w1").await.status.online);
        handle(&deps(&w), &lifecycle_json("disconnected", 2_000))
            .await
            .expect("ok");
        assert!(!w.twin("w1").await.status.online);
        assert_eq!(
            w.reasons("w1").await,
            ["DeviceOffline", "DeviceOnline", "DeviceCreated"]
        );
    }

    #[tokio::test]
    async fn a_late_disconnect_from_an_old_session_is_ignored() {
        let w = TestWorld::new();
        handle(&deps(&w), &lifecycle_json("connected", 5_000))
            .await
            .expect("ok");
        let out = handle(&deps(&w), &lifecycle_json("disconnected", 3_000))
            .await
            .expect("ok");
        assert!(out.changed.is_empty());
        assert!(w.twin("w1").await.status.online);
    }

    #[tokio::test]
    async fn the_sweep_marks_silent_devices_offline_once() {
        let w = TestWorld::new();
        handle(&deps(&w), &lifecycle_json("connected", 1_000))
            .await
            .expect("ok");
        let out = sweep(&deps(&w), at_ms(1_000 + 60_000)).await.expect("ok");
        assert!(out.changed.is_empty(), "not stale yet");
        let out = sweep(&deps(&w), at_ms(1_000 + 91_000)).await.expect("ok");
        assert_eq!(out.changed, ["w1"]);
        let out = sweep(&deps(&w), at_ms(1_000 + 92_000)).await.expect("ok");
        assert!(out.changed.is_empty());
        assert!(!w.twin("w1").await.status.online);
    }
}
