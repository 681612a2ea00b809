//! `presence`: online/offline from AWS IoT lifecycle events, and a scheduled sweep that
//! marks devices offline when their heartbeat is stale.
//!
//! Lifecycle events arrive late, duplicated and in any order: the twin keeps the latest
//! connection seen (`status.session`: `sessionIdentifier`, `versionNumber`) and an event
//! applies only when it is newer, by the rules of [`mir_shared::domain::presence`]; so
//! the `DUPLICATE_CLIENTID` disconnect of the connection a reconnect replaced never
//! marks the device offline. Each event is one conditional read-modify-write of the
//! twin, retried on conflict. An unknown device is auto-provisioned; a deleted one is
//! not (its events change nothing).
//!
//! Architecture: see docs/architecture.md in the repository (sections Routes, Delivery semantics).

use chrono::{DateTime, Duration, Utc};

use mir_shared::{
    domain::{
        page,
        presence::{self, Lifecycle, Phase},
        Event, EventReason,
    },
    rule_event::{LifecycleEvent, PresenceInput},
    service::{self, AfterDelete, Change, HandlerError},
};

mir_shared::deps! {
    /// The ports `presence` uses.
    pub struct Deps { twins, events, clock, stale_after }
}

/// Default for [`Deps::stale_after`], the staleness of a device that did not report its
/// heartbeat interval: three missed 30 s heartbeats.
pub fn default_stale_after() -> Duration {
    Duration::seconds(90)
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceOutcome {
    /// Devices whose online state changed.
    pub changed: Vec<String>,
    /// Devices whose events were ignored because they were deleted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
}

impl PresenceOutcome {
    fn of(id: &str, changed: bool, deleted: bool) -> Self {
        let one = |yes: bool| if yes { vec![id.to_string()] } else { vec![] };
        PresenceOutcome {
            changed: one(changed),
            deleted: one(deleted),
        }
    }
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
    let phase = match ev.event_type.as_str() {
        "connected" => Phase::Connected,
        "disconnected" => Phase::Disconnected,
        other => return Err(HandlerError::UnknownLifecycle(other.to_string())),
    };
    let observed = Lifecycle {
        session_id: &ev.session_identifier,
        version: ev.version_number,
        at,
        phase,
        disconnect_reason: ev.disconnect_reason.as_deref(),
    };
    let cause = format!(
        "{}|{}|{}|{}",
        ev.event_type, ev.session_identifier, ev.version_number, ev.timestamp
    );
    let how = "connect";
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
        return Ok(PresenceOutcome::of(id.as_str(), false, true));
    }
    let mut change = presence::PresenceChange::default();
    let updated = service::update_twin(deps.twins, id.as_str(), |twin| {
        change = presence::apply_lifecycle(&mut twin.status, &observed);
        presence::set_stale_at(&mut twin.status, deps.stale_after);
        Ok(if change.changed {
            Change::Changed
        } else {
            Change::Unchanged
        })
    })
    .await?;
    // None: deleted since it was read; the write did not re-create it.
    let Some(twin) = updated else {
        return Ok(PresenceOutcome::of(id.as_str(), false, true));
    };
    let flipped = change.came_online || change.went_offline;
    let mut events = Vec::new();
    if change.came_online {
        let msg = "device connected";
        events.push(Event::new(
            EventReason::DeviceOnline,
            id.as_str(),
            at,
            &cause,
            msg,
        ));
    } else if change.went_offline {
        let reason = ev.disconnect_reason.as_deref().unwrap_or("unknown reason");
        let msg = format!("device disconnected ({reason})");
        events.push(Event::new(
            EventReason::DeviceOffline,
            id.as_str(),
            at,
            &cause,
            msg,
        ));
    }
    let events: Vec<Event> = events
        .into_iter()
        .map(|e| e.for_twin(&twin.value))
        .collect();
    deps.events.append(&events).await?;
    Ok(PresenceOutcome::of(id.as_str(), flipped, false))
}

/// Marks offline every online device past its `stale_at` (three missed heartbeats of
/// the interval it reported, else `stale_after`). Reads only online devices past
/// theirs ([`TwinStore::stale`](mir_shared::ports::TwinStore::stale)), a page at a time.
pub async fn sweep(deps: &Deps<'_>, now: DateTime<Utc>) -> Result<PresenceOutcome, HandlerError> {
    let fallback = deps.stale_after;
    let stale: Vec<String> =
        page::collect_all(|p| async move { deps.twins.stale(now, &p).await }).await?;
    let mut changed = Vec::new();
    let mut events = Vec::new();
    for id in stale {
        let mut went_offline = false;
        let twin = service::update_twin(deps.twins, &id, |twin| {
            went_offline = false;
            if !presence::is_stale(&twin.status, now, fallback) {
                return Ok(Change::Unchanged);
            }
            twin.status.online = false;
            presence::set_stale_at(&mut twin.status, fallback);
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
    Ok(PresenceOutcome {
        changed,
        deleted: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_shared::ports::TwinStore;
    use mir_shared::testing::{at_ms, TestWorld};

    /// A lifecycle event of `w1`'s connection `session` (`versionNumber` `version`).
    fn event(kind: &str, session: &str, version: u64, ms: i64, reason: &str) -> PresenceInput {
        serde_json::from_value(serde_json::json!({
            "clientId": "w1", "timestamp": ms, "eventType": kind,
            "sessionIdentifier": session, "principalIdentifier": "p", "versionNumber": version,
            "disconnectReason": reason
        }))
        .expect("lifecycle fixture")
    }

    /// Events of the AWS shape without versions (`versionNumber` 0), one session each.
    fn lifecycle_json(kind: &str, ms: i64) -> PresenceInput {
        event(kind, &format!("s-{ms}"), 0, ms, "CONNECTION_LOST")
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
    async fn an_older_sessions_duplicate_clientid_disconnect_after_the_new_connect_leaves_the_device_online(
    ) {
        let w = TestWorld::new();
        let d = deps(&w);
        handle(&d, &event("connected", "a", 1, 1_000, ""))
            .await
            .expect("ok");
        // The reconnect: AWS stamps the replaced connection's disconnect 2 ms after the
        // new connect and delivers it last.
        handle(&d, &event("connected", "b", 2, 5_000, ""))
            .await
            .expect("ok");
        let out = handle(
            &d,
            &event("disconnected", "a", 1, 5_002, "DUPLICATE_CLIENTID"),
        )
        .await
        .expect("ok");
        assert!(out.changed.is_empty(), "{out:?}");
        let twin = w.twin("w1").await;
        assert!(twin.status.online);
        let session = twin.status.session.expect("the latest connection");
        assert_eq!((session.id.as_str(), session.version), ("b", 2));
        let mut reasons = w.reasons("w1").await;
        reasons.sort();
        assert_eq!(
            reasons,
            ["DeviceCreated", "DeviceOnline"],
            "one online, no offline"
        );
    }

    #[tokio::test]
    async fn the_same_events_in_every_order_and_twice_end_online_on_the_newest_connection() {
        let events = [
            event("connected", "a", 1, 1_000, ""),
            event("disconnected", "a", 1, 2_001, "DUPLICATE_CLIENTID"),
            event("connected", "b", 2, 2_000, ""),
            event("disconnected", "b", 2, 3_000, "DUPLICATE_CLIENTID"),
            event("connected", "c", 3, 3_001, ""),
        ];
        // Every rotation, forwards and backwards, each event delivered twice.
        for start in 0..events.len() {
            for backwards in [false, true] {
                let w = TestWorld::new();
                let d = deps(&w);
                let mut order: Vec<&PresenceInput> = events
                    .iter()
                    .cycle()
                    .skip(start)
                    .take(events.len())
                    .collect();
                if backwards {
                    order.reverse();
                }
                for ev in order.iter().chain(order.iter()) {
                    handle(&d, ev).await.expect("ok");
                }
                let twin = w.twin("w1").await;
                assert!(twin.status.online, "start {start}, backwards {backwards}");
                assert_eq!(twin.status.session.map(|s| s.version), Some(3));
            }
        }
    }

    #[tokio::test]
    async fn a_duplicated_disconnect_records_one_offline_event() {
        let w = TestWorld::new();
        let d = deps(&w);
        handle(&d, &event("connected", "a", 1, 1_000, ""))
            .await
            .expect("ok");
        let off = event("disconnected", "a", 1, 2_000, "CLIENT_INITIATED_DISCONNECT");
        assert_eq!(handle(&d, &off).await.expect("ok").changed, ["w1"]);
        let version = w.twin_versioned("w1").await.version;
        assert!(handle(&d, &off).await.expect("ok").changed.is_empty());
        assert_eq!(
            w.twin_versioned("w1").await.version,
            version,
            "not written again"
        );
        // Its connect delivered once more, late: still offline.
        handle(&d, &event("connected", "a", 1, 1_000, ""))
            .await
            .expect("ok");
        assert!(!w.twin("w1").await.status.online);
        let mut reasons = w.reasons("w1").await;
        reasons.sort();
        assert_eq!(reasons, ["DeviceCreated", "DeviceOffline", "DeviceOnline"]);
    }

    #[tokio::test]
    async fn lifecycle_events_of_a_deleted_device_do_not_create_it_again() {
        let w = TestWorld::new();
        let d = deps(&w);
        handle(&d, &event("connected", "a", 1, 1_000, ""))
            .await
            .expect("ok");
        TwinStore::delete(&w.store, "w1", at_ms(2_000))
            .await
            .expect("deleted");
        for ev in [
            event("disconnected", "a", 1, 3_000, "CONNECTION_LOST"),
            event("connected", "b", 2, 4_000, ""),
        ] {
            let out = handle(&d, &ev).await.expect("ignored, not failed");
            assert_eq!(out.deleted, ["w1"]);
        }
        assert!(TwinStore::get(&w.store, "w1")
            .await
            .expect("read")
            .is_none());
    }

    #[tokio::test]
    async fn an_unknown_lifecycle_event_type_is_refused_by_name() {
        let w = TestWorld::new();
        let err = handle(&deps(&w), &event("subscribed", "a", 1, 1_000, ""))
            .await
            .expect_err("not a presence event");
        assert!(
            matches!(&err, HandlerError::UnknownLifecycle(t) if t == "subscribed"),
            "{err}"
        );
        assert!(!err.is_retryable());
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
