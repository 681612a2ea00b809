//! Presence: whether a device is online, from AWS IoT lifecycle events and heartbeats
//! that arrive late, duplicated and in any order. Pure rules over the twin's `status`;
//! the `presence` and `heartbeat` handlers apply them in a conditional read-modify-write
//! (`service::update_twin`), so concurrent events never interleave.
//!
//! **Versions.** Each new connection of a client id gets a higher `versionNumber`; the
//! connected and disconnected events of one connection carry its version and its
//! `sessionIdentifier`. The twin keeps the latest connection seen ([`SessionStatus`]).
//! An event applies only when it is newer than that connection ([`is_newer`]):
//!
//! - a higher version is newer; a lower one is an older connection's event, ignored
//!   (the `DUPLICATE_CLIENTID` disconnect of the connection a reconnect replaced);
//! - within one connection, its disconnect follows its connect; a connect after the
//!   disconnect of the same connection, and any duplicate, change nothing;
//! - AWS resets a client's version to 0 after about an hour without a connection: an
//!   event more than [`VERSION_RESET_GAP_MS`] away in time from the stored one is
//!   ordered by its timestamp instead; so is one with the same version and another
//!   session (events without versions).
//!
//! **Heartbeats.** A heartbeat proves the device was connected when the broker received
//! it. It marks the device online unless it was received at or before the disconnect of
//! the latest connection (a heartbeat published before the disconnect and delivered
//! after it does not bring the device back). Conversely a disconnect leaves the device
//! online when a heartbeat was received after it: the device spoke on a newer
//! connection whose connected event is still on its way.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::twin::Status;

/// How far apart in time two lifecycle events of a client must be for their timestamps,
/// not their versions, to order them (AWS resets the version after about an hour
/// without a connection; events of concurrent connections are milliseconds apart).
pub const VERSION_RESET_GAP_MS: i64 = 15 * 60 * 1000;

/// The latest connection of the device the lifecycle events told about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionStatus {
    /// Its `sessionIdentifier`.
    #[serde(default)]
    pub id: String,
    /// Its `versionNumber`.
    #[serde(default)]
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_at: Option<DateTime<Utc>>,
    /// Set once its disconnected event arrived: the connection has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnected_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_reason: Option<String>,
}

impl SessionStatus {
    /// The time of the latest event of this connection that was applied.
    fn latest(&self) -> Option<DateTime<Utc>> {
        self.disconnected_at.or(self.connected_at)
    }
}

/// Which lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connected,
    Disconnected,
}

/// One lifecycle event, as the presence rules read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle<'a> {
    pub session_id: &'a str,
    pub version: u64,
    /// The event's `timestamp` (the broker's time).
    pub at: DateTime<Utc>,
    pub phase: Phase,
    pub disconnect_reason: Option<&'a str>,
}

/// What an event did to the status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PresenceChange {
    /// The status changed and must be written.
    pub changed: bool,
    pub came_online: bool,
    pub went_offline: bool,
}

/// Whether `ev` is newer than the stored connection (see the module docs).
pub fn is_newer(stored: &SessionStatus, ev: &Lifecycle<'_>) -> bool {
    let stored_at = stored.latest();
    if let Some(t) = stored_at {
        let gap = (ev.at - t).num_milliseconds();
        if gap.abs() > VERSION_RESET_GAP_MS {
            return gap > 0;
        }
    }
    if ev.version != stored.version {
        return ev.version > stored.version;
    }
    if ev.session_id != stored.id {
        return stored_at.is_none_or(|t| ev.at > t);
    }
    ev.phase == Phase::Disconnected && stored.disconnected_at.is_none()
}

/// Applies a lifecycle event to `status`: a newer connect stores its connection and
/// marks the device online; a newer disconnect ends it and marks the device offline
/// (unless a heartbeat came after it); anything older, or a duplicate, changes nothing.
pub fn apply_lifecycle(status: &mut Status, ev: &Lifecycle<'_>) -> PresenceChange {
    if status.session.as_ref().is_some_and(|s| !is_newer(s, ev)) {
        return PresenceChange::default();
    }
    let mut change = PresenceChange {
        changed: true,
        ..PresenceChange::default()
    };
    match ev.phase {
        Phase::Connected => {
            status.session = Some(SessionStatus {
                id: ev.session_id.to_string(),
                version: ev.version,
                connected_at: Some(ev.at),
                ..SessionStatus::default()
            });
            if status.last_heartbeat.is_none_or(|t| t < ev.at) {
                status.last_heartbeat = Some(ev.at);
            }
            change.came_online = !status.online;
            status.online = true;
        }
        Phase::Disconnected => {
            let same = |s: &&mut SessionStatus| s.id == ev.session_id && s.version == ev.version;
            let session = match status.session.as_mut().filter(same) {
                Some(s) => s,
                None => status.session.insert(SessionStatus {
                    id: ev.session_id.to_string(),
                    version: ev.version,
                    ..SessionStatus::default()
                }),
            };
            session.disconnected_at = Some(ev.at);
            session.disconnect_reason = ev.disconnect_reason.map(str::to_string);
            let spoke_since = status.last_heartbeat.is_some_and(|t| t > ev.at);
            if status.online && !spoke_since {
                status.online = false;
                change.went_offline = true;
            }
        }
    }
    change
}

/// Applies a heartbeat received at `at`: `lastHeartbeat` when newer, and online unless
/// the latest connection's disconnect came at or after it.
pub fn apply_heartbeat(status: &mut Status, at: DateTime<Utc>) -> PresenceChange {
    let mut change = PresenceChange::default();
    if status.last_heartbeat.is_none_or(|t| t < at) {
        status.last_heartbeat = Some(at);
        change.changed = true;
    }
    let ended_after = status
        .session
        .as_ref()
        .and_then(|s| s.disconnected_at)
        .is_some_and(|d| at <= d);
    if !status.online && !ended_after {
        status.online = true;
        change.changed = true;
        change.came_online = true;
    }
    change
}

/// Heartbeats a device may miss before it counts as gone.
pub const MISSED_HEARTBEATS: i32 = 3;

/// How long after its last sign of life a device counts as gone: three of the heartbeat
/// intervals it reported (in `Hello` or its heartbeats), else `fallback`.
pub fn stale_after(interval_sec: Option<u32>, fallback: Duration) -> Duration {
    match interval_sec.filter(|s| *s > 0) {
        Some(s) => Duration::seconds(i64::from(s)) * MISSED_HEARTBEATS,
        None => fallback,
    }
}

/// Sets `status.stale_at`: the last heartbeat plus [`stale_after`] while the device is
/// online, none while it is offline (so the sweep never reads offline devices).
pub fn set_stale_at(status: &mut Status, fallback: Duration) {
    status.stale_at = match (status.online, status.last_heartbeat) {
        (true, Some(hb)) => Some(hb + stale_after(status.heartbeat_interval_sec, fallback)),
        (true, None) | (false, _) => None,
    };
}

/// Whether the sweep marks the device offline at `now`: online and past its
/// `stale_at` (a twin written before `stale_at` existed counts from its last heartbeat).
pub fn is_stale(status: &Status, now: DateTime<Utc>, fallback: Duration) -> bool {
    let due = status.stale_at.or_else(|| {
        status
            .last_heartbeat
            .map(|hb| hb + stale_after(status.heartbeat_interval_sec, fallback))
    });
    status.online && due.is_none_or(|t| t < now)
}

/// A heartbeat as the store's one-write path takes it ([`crate::ports::TwinStore::beat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// When the broker received it.
    pub at: DateTime<Utc>,
    /// Written only if the stored heartbeat is older than this: half a heartbeat
    /// interval (a sixth of the staleness) before `at`, so each regular heartbeat is
    /// written, and a duplicate, a late one or one of a device beating faster than it
    /// said costs no write.
    pub refresh_before: DateTime<Utc>,
    /// The device's new `stale_at`.
    pub stale_at: DateTime<Utc>,
    /// The interval the heartbeat carried, if any.
    pub interval_sec: Option<u32>,
}

impl Beat {
    pub fn new(at: DateTime<Utc>, interval_sec: Option<u32>, fallback: Duration) -> Self {
        let interval_sec = interval_sec.filter(|s| *s > 0);
        let stale = stale_after(interval_sec, fallback);
        Self {
            at,
            refresh_before: at - stale / (2 * MISSED_HEARTBEATS),
            stale_at: at + stale,
            interval_sec,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).single().expect("a time")
    }

    /// (session, version, ms, phase)
    type Ev = (&'static str, u64, i64, Phase);

    fn lc(e: &Ev) -> Lifecycle<'static> {
        Lifecycle {
            session_id: e.0,
            version: e.1,
            at: at(e.2),
            phase: e.3,
            disconnect_reason: (e.3 == Phase::Disconnected).then_some("DUPLICATE_CLIENTID"),
        }
    }

    fn run(events: &[Ev]) -> Status {
        let mut st = Status::default();
        for e in events {
            apply_lifecycle(&mut st, &lc(e));
        }
        st
    }

    use Phase::{Connected as C, Disconnected as D};

    #[test]
    fn an_older_sessions_duplicate_clientid_disconnect_after_the_new_connect_leaves_the_device_online(
    ) {
        // The reconnect's connect is stamped 1 ms before the replaced connection's
        // disconnect, and delivered first.
        let st = run(&[("a", 1, 1_000, C), ("b", 2, 5_000, C), ("a", 1, 5_001, D)]);
        assert!(st.online);
        let s = st.session.expect("a session");
        assert_eq!(
            (s.id.as_str(), s.version, s.disconnected_at),
            ("b", 2, None)
        );
    }

    #[test]
    fn duplicates_change_nothing_the_second_time() {
        let mut st = Status::default();
        for e in [("a", 1, 1_000, C), ("a", 1, 2_000, D)] {
            assert!(apply_lifecycle(&mut st, &lc(&e)).changed);
            let before = st.clone();
            assert_eq!(apply_lifecycle(&mut st, &lc(&e)), PresenceChange::default());
            assert_eq!(st, before);
        }
        assert!(!st.online);
    }

    #[test]
    fn a_connect_delivered_after_its_own_disconnect_does_not_bring_the_device_back() {
        let st = run(&[("a", 7, 2_000, D), ("a", 7, 1_000, C)]);
        assert!(!st.online);
        assert_eq!(
            st.session.and_then(|s| s.disconnect_reason),
            Some("DUPLICATE_CLIENTID".into())
        );
    }

    #[test]
    fn a_version_reset_after_an_hour_offline_is_ordered_by_time() {
        let hour = 60 * 60 * 1000;
        let st = run(&[
            ("a", 9, 1_000, C),
            ("a", 9, 2_000, D),
            ("b", 0, 2_000 + hour, C),
        ]);
        assert!(st.online, "the reset connection is the newer one");
        // And a late event of the pre-reset connection is older, whatever its version.
        let st = run(&[("b", 0, 2_000 + hour, C), ("a", 9, 2_000, D)]);
        assert!(st.online);
    }

    #[test]
    fn events_without_versions_are_ordered_by_time() {
        let st = run(&[("b", 0, 3_000, C), ("a", 0, 2_000, D)]);
        assert!(st.online);
        let st = run(&[("a", 0, 1_000, C), ("a", 0, 2_000, D), ("b", 0, 1_500, C)]);
        assert!(!st.online, "b connected before a's disconnect");
    }

    #[test]
    fn any_order_and_duplication_of_a_reconnect_storm_ends_on_the_last_connection() {
        let mut rng = StdRng::seed_from_u64(11);
        const SESSIONS: [&str; 20] = [
            "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12", "s13",
            "s14", "s15", "s16", "s17", "s18", "s19",
        ];
        for round in 0..500 {
            let last_ends = round % 2 == 1;
            let mut events: Vec<Ev> = Vec::new();
            for (i, s) in SESSIONS.iter().enumerate() {
                let v = 100 + i as u64;
                // Connections 1 ms apart; each replaced one's disconnect lands just after
                // the next connect (or just before: clocks of different hosts).
                let t = 1_000 + 10 * i as i64;
                events.push((s, v, t, C));
                if i + 1 < SESSIONS.len() {
                    events.push((s, v, t + 10 + rng.random_range(-2..=2), D));
                } else if last_ends {
                    events.push((s, v, t + 50, D));
                }
            }
            let dups: Vec<Ev> = (0..10)
                .map(|_| events[rng.random_range(0..events.len())])
                .collect();
            events.extend(dups);
            events.shuffle(&mut rng);
            let st = run(&events);
            assert_eq!(st.online, !last_ends, "round {round}: {events:?}");
            let s = st.session.expect("a session");
            assert_eq!(s.id, "s19", "round {round}");
            assert_eq!(s.disconnected_at.is_some(), last_ends);
        }
    }

    #[test]
    fn a_heartbeat_sent_before_the_disconnect_and_delivered_after_it_does_not_resurrect() {
        let mut st = run(&[("a", 1, 1_000, C), ("a", 1, 5_000, D)]);
        let late = apply_heartbeat(&mut st, at(4_000));
        assert!(!st.online && !late.came_online);
        assert_eq!(st.last_heartbeat, Some(at(4_000)));
        // One received after the disconnect came on a newer connection: online.
        assert!(apply_heartbeat(&mut st, at(6_000)).came_online);
        assert!(st.online);
    }

    #[test]
    fn a_disconnect_older_than_the_last_heartbeat_leaves_the_device_online() {
        let mut st = run(&[("a", 1, 1_000, C)]);
        apply_heartbeat(&mut st, at(9_000));
        // a's disconnect at 5 s; the heartbeat at 9 s came on a connection whose
        // connected event has not arrived yet.
        let change = apply_lifecycle(&mut st, &lc(&("a", 1, 5_000, D)));
        assert!(change.changed && !change.went_offline);
        assert!(st.online);
        assert!(apply_lifecycle(&mut st, &lc(&("b", 2, 8_000, C))).changed);
        assert!(st.online);
    }
}
