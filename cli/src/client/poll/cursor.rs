//! The event poller's decisions, without I/O: which page of `GET /v1/events` to ask
//! for, which of the returned events are new (oldest first), when it fell behind, and
//! when the device set of a label filter is due for a refresh.
//!
//! Layout: [`Cursor`] (the state), [`Batch`] and [`Gap`] (what one poll gives), then the
//! unit tests.
//!
//! - The first poll is a baseline: what it returns was recorded before the watch
//!   started; its ids are remembered, nothing is yielded.
//! - Each poll asks from [`MARGIN`] before the newest event time seen (at first, the
//!   start time), because an event can become visible after later ones; an id among the
//!   last [`RECENT_IDS`] judged is dropped.
//! - A poll that stopped at the page bound with its oldest event newer than the newest
//!   seen before it fell behind: the events in between may be missing ([`Gap`]).
//! - Namespace, custom name and labels are checked here (the events API filters only by
//!   device and reason); for a label filter, `labels` is filled from the device list of
//!   the last refresh (every [`DEVICE_REFRESH`]): an event of a device not in it is
//!   dropped. Without a label filter `labels` stays empty.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};

use mir_shared::domain::{Event, FeedEvent, FeedFilter, RecentIds, Targets, Twin};

use crate::client::EventQuery;

/// How far before the newest event seen each poll asks (events can become visible
/// late; the hub's replay margin).
pub const MARGIN: chrono::Duration = chrono::Duration::seconds(60);
/// How many judged ids are remembered to drop the ones polled again.
pub const RECENT_IDS: usize = 50_000;
/// Events asked for per page.
pub const PAGE_LIMIT: usize = 1_000;
/// How often the device set of a label filter is listed again.
pub const DEVICE_REFRESH: Duration = Duration::from_secs(30);

/// Device id -> labels.
type Labels = HashMap<String, BTreeMap<String, String>>;

/// Where a poller is.
#[derive(Debug)]
pub struct Cursor {
    filter: FeedFilter,
    seen: RecentIds,
    /// The newest event time seen (the start time before any).
    newest: DateTime<Utc>,
    /// The next batch is the baseline.
    baseline: bool,
    /// Device id -> labels, for a label filter: the last listing and when it was made.
    devices: Option<(Labels, Instant)>,
}

/// What one poll gave: the new events that pass the filter, oldest first, and whether
/// some may have been skipped.
#[derive(Debug, Default, PartialEq)]
pub struct Batch {
    pub events: Vec<FeedEvent>,
    pub skipped: Option<Gap>,
}

/// Events after `after` and before `before` may be missing: the poll stopped at its
/// page bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub after: DateTime<Utc>,
    pub before: DateTime<Utc>,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fell behind: events between {} and {} may be missing",
            self.after.to_rfc3339_opts(SecondsFormat::Millis, true),
            self.before.to_rfc3339_opts(SecondsFormat::Millis, true)
        )
    }
}

impl Cursor {
    /// A cursor for the events `filter` selects recorded after `now`.
    pub fn new(filter: FeedFilter, now: DateTime<Utc>) -> Self {
        Self {
            filter,
            seen: RecentIds::new(RECENT_IDS),
            newest: now,
            baseline: true,
            devices: None,
        }
    }

    /// The first page of the next poll (follow its `nextToken` for the others).
    pub fn query(&self) -> EventQuery {
        let store = self.filter.store_filter(None);
        EventQuery {
            device_id: store.device_id,
            reason: store.reason.map(|r| r.as_str().to_string()),
            since: Some((self.newest - MARGIN).to_rfc3339_opts(SecondsFormat::Millis, true)),
            until: None,
            limit: Some(PAGE_LIMIT),
            next_token: None,
        }
    }

    /// The devices to list when the label filter's device set is due (never listed, or
    /// listed [`DEVICE_REFRESH`] before `now`); `None` without a label filter.
    pub fn devices_due(&self, now: Instant) -> Option<Targets> {
        if self.filter.labels.is_empty() {
            return None;
        }
        let due = self
            .devices
            .as_ref()
            .is_none_or(|(_, at)| now.saturating_duration_since(*at) >= DEVICE_REFRESH);
        due.then(|| Targets {
            namespaces: self.filter.namespace.iter().cloned().collect(),
            labels: self.filter.labels.clone(),
            ..Targets::default()
        })
    }

    /// The devices the label filter selects, listed at `now`.
    pub fn set_devices(&mut self, twins: &[Twin], now: Instant) {
        let map = twins
            .iter()
            .map(|t| (t.spec.device_id.clone(), t.meta.labels.clone()))
            .collect();
        self.devices = Some((map, now));
    }

    /// Judges the events of one poll (any order); `truncated`: it stopped at the page
    /// bound with pages left.
    pub fn take(&mut self, mut events: Vec<Event>, truncated: bool) -> Batch {
        let baseline = std::mem::replace(&mut self.baseline, false);
        let before = self.newest;
        events.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
        let skipped = match events.first() {
            Some(oldest) if truncated && !baseline && oldest.time > before => Some(Gap {
                after: before,
                before: oldest.time,
            }),
            _ => None,
        };
        if let Some(last) = events.last() {
            self.newest = self.newest.max(last.time);
        }
        let mut out = Vec::new();
        for event in events {
            if !self.seen.insert(&event.id) || baseline {
                continue;
            }
            let labels = self
                .devices
                .as_ref()
                .and_then(|(map, _)| map.get(&event.device_id).cloned())
                .unwrap_or_default();
            let event = FeedEvent::new(event, labels);
            if self.filter.matches(&event) {
                out.push(event);
            }
        }
        Batch {
            events: out,
            skipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use mir_shared::domain::EventReason;

    fn at(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, s)
            .single()
            .expect("time")
    }

    fn event(id: &str, time: DateTime<Utc>, namespace: &str) -> Event {
        let mut e = Event::new(EventReason::DeviceOnline, "w1", time, id, id);
        e.id = id.to_string();
        e.namespace = namespace.to_string();
        e
    }

    fn ids(batch: &Batch) -> Vec<&str> {
        batch.events.iter().map(|e| e.id.as_str()).collect()
    }

    fn twin(id: &str, labels: &[(&str, &str)]) -> Twin {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        serde_json::from_value(serde_json::json!({
            "meta": {"name": id, "namespace": "lab", "labels": labels},
            "spec": {"deviceId": id}
        }))
        .expect("a twin")
    }

    #[test]
    fn the_first_poll_asks_a_minute_before_the_start_and_yields_nothing() {
        let mut c = Cursor::new(FeedFilter::default(), at(30));
        let q = c.query();
        assert_eq!(q.since.as_deref(), Some("2026-12-02T11:59:30.000Z"));
        assert_eq!(q.limit, Some(1_000));
        assert_eq!(q.next_token, None);
        let batch = c.take(vec![event("old", at(20), "default")], false);
        assert_eq!(batch, Batch::default());
        let again = c.take(vec![event("old", at(20), "default")], false);
        assert!(again.events.is_empty(), "a baseline id is never yielded");
    }

    #[test]
    fn new_events_come_oldest_first_once_and_the_next_poll_asks_a_minute_before_the_newest() {
        let mut c = Cursor::new(FeedFilter::default(), at(0));
        c.take(Vec::new(), false);
        let first = c.take(
            vec![event("b", at(12), "default"), event("a", at(11), "default")],
            false,
        );
        assert_eq!(ids(&first), ["a", "b"]);
        assert_eq!(
            c.query().since.as_deref(),
            Some("2026-12-02T11:59:12.000Z"),
            "a minute before b"
        );
        let overlapping = c.take(
            vec![
                event("c", at(13), "default"),
                event("b", at(12), "default"),
                event("late", at(10), "default"),
                event("a", at(11), "default"),
            ],
            false,
        );
        assert_eq!(ids(&overlapping), ["late", "c"]);
    }

    #[test]
    fn device_and_reason_go_to_the_api_and_a_custom_name_asks_for_custom_events() {
        let filter = FeedFilter {
            device_id: Some("w1".into()),
            custom_name: Some("Alert".into()),
            namespace: Some("lab".into()),
            ..FeedFilter::default()
        };
        let q = Cursor::new(filter, at(0)).query();
        assert_eq!(q.device_id.as_deref(), Some("w1"));
        assert_eq!(q.reason.as_deref(), Some("Custom"));
    }

    #[test]
    fn the_namespace_filter_applies_to_the_events_namespace() {
        let filter = FeedFilter {
            namespace: Some("lab".into()),
            ..FeedFilter::default()
        };
        let mut c = Cursor::new(filter, at(0));
        c.take(Vec::new(), false);
        let batch = c.take(
            vec![event("a", at(1), "default"), event("b", at(2), "lab")],
            false,
        );
        assert_eq!(ids(&batch), ["b"]);
    }

    #[test]
    fn a_truncated_poll_newer_than_what_was_seen_reports_the_gap() {
        let mut c = Cursor::new(FeedFilter::default(), at(0));
        c.take(Vec::new(), false);
        c.take(vec![event("a", at(5), "default")], false);
        let behind = c.take(
            vec![event("y", at(9), "default"), event("x", at(8), "default")],
            true,
        );
        assert_eq!(ids(&behind), ["x", "y"]);
        assert_eq!(
            behind.skipped,
            Some(Gap {
                after: at(5),
                before: at(8)
            })
        );
        assert_eq!(
            behind.skipped.map(|g| g.to_string()).as_deref(),
            Some("fell behind: events between 2026-12-02T12:00:05.000Z and 2026-12-02T12:00:08.000Z may be missing")
        );
        let overlapping = c.take(
            vec![event("z", at(10), "default"), event("y", at(9), "default")],
            true,
        );
        assert_eq!(ids(&overlapping), ["z"]);
        assert_eq!(
            overlapping.skipped, None,
            "it reached back to what it had seen"
        );
    }

    #[test]
    fn a_label_filter_lists_its_devices_every_30_s_fills_their_labels_and_drops_others() {
        let filter = FeedFilter {
            namespace: Some("lab".into()),
            labels: [("site".to_string(), "roof".to_string())].into(),
            ..FeedFilter::default()
        };
        let mut c = Cursor::new(filter, at(0));
        let t0 = Instant::now();
        let targets = c.devices_due(t0).expect("due before the first listing");
        assert_eq!(targets.namespaces, ["lab"]);
        assert_eq!(targets.labels.get("site").map(String::as_str), Some("roof"));
        c.set_devices(&[twin("w1", &[("site", "roof"), ("kind", "x")])], t0);
        assert_eq!(c.devices_due(t0 + Duration::from_secs(29)), None);
        assert!(c.devices_due(t0 + Duration::from_secs(30)).is_some());
        c.take(Vec::new(), false);
        let mut other = event("b", at(2), "lab");
        other.device_id = "p2".into();
        let batch = c.take(vec![event("a", at(1), "lab"), other], false);
        assert_eq!(ids(&batch), ["a"]);
        assert_eq!(
            batch.events[0].labels.get("kind").map(String::as_str),
            Some("x")
        );
    }

    #[test]
    fn without_a_label_filter_no_devices_are_listed_and_labels_stay_empty() {
        let mut c = Cursor::new(FeedFilter::default(), at(0));
        assert_eq!(c.devices_due(Instant::now()), None);
        c.take(Vec::new(), false);
        let batch = c.take(vec![event("a", at(1), "default")], false);
        assert!(batch.events[0].labels.is_empty());
    }
}
