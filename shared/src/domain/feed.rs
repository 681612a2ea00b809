//! The event feed's types, shared by the hub that publishes it, the CLI that watches it
//! (`mir evt watch`) and modules (`mir-module-sdk`; the EventBridge `detail` is the same
//! document).
//!
//! - [`FeedEvent`]: one published event: the [`Event`] as stored plus its device's labels;
//! - [`FeedFilter`]: which events a watcher wants (device, reason, namespace, labels, a
//!   custom event's name), its query string (`deviceId`, `reason`, `namespace`,
//!   `labels=k=v,k2=v2`, `customName`);
//! - [`RecentIds`]: a bounded set of the ids seen last, to drop the duplicates that
//!   at-least-once delivery allows;
//! - [`WATCH_PATH`], [`LAGGED`]: the hub's server-sent events route and the name of the
//!   message that says a watcher missed events.
//!
//! Delivery is at least once: the same event (same `id`) may come twice, across a
//! reconnect or a replay; consumers deduplicate by `id`.

use std::collections::{BTreeMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    event::{Event, EventFilter, EventReason, EventType},
    targets::{labels_query, parse_labels, query_value},
    DomainError,
};

/// The hub's server-sent events route (not in routes.json: API Gateway cannot stream).
pub const WATCH_PATH: &str = "/v1/events/watch";

/// The `source` of every event the platform puts on its EventBridge bus; the
/// `detail-type` is the event's reason and the `detail` the [`FeedEvent`] document.
pub const EVENTBRIDGE_SOURCE: &str = "mir";

/// The `detail-type` of a decoded telemetry point on the bus (the telemetry feed, off
/// unless the deployment turns it on); its `detail` is the
/// [`TelemetryPoint`](super::TelemetryPoint) document.
pub const TELEMETRY_DETAIL_TYPE: &str = "Telemetry";

/// The SSE event name that tells a watcher it missed `data` events (a number) and that
/// the stream ends: reconnect with `Last-Event-ID`.
pub const LAGGED: &str = "lagged";

/// One event of the feed: the stored event and its device's labels at publishing time
/// (none for a device that no longer exists); an event recorded without the device's
/// name carries the twin's name and namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedEvent {
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
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub message: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// A custom event's name ([`EventReason::Custom`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_name: Option<String>,
}

impl FeedEvent {
    pub fn new(event: Event, labels: BTreeMap<String, String>) -> Self {
        Self {
            id: event.id,
            time: event.time,
            event_type: event.event_type,
            reason: event.reason,
            device_id: event.device_id,
            name: event.name,
            namespace: event.namespace,
            labels,
            message: event.message,
            payload: event.payload,
            actor: event.actor,
            custom_name: event.custom_name,
        }
    }

    /// The event as `GET /v1/events` lists it (without labels or expiry).
    pub fn to_event(&self) -> Event {
        Event {
            id: self.id.clone(),
            time: self.time,
            event_type: self.event_type,
            reason: self.reason,
            device_id: self.device_id.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            message: self.message.clone(),
            payload: self.payload.clone(),
            actor: self.actor.clone(),
            custom_name: self.custom_name.clone(),
            expires_at: None,
        }
    }
}

/// Which events a watcher wants; everything optional, all must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedFilter {
    pub device_id: Option<String>,
    pub reason: Option<EventReason>,
    pub namespace: Option<String>,
    /// The device carries every one of these labels.
    pub labels: BTreeMap<String, String>,
    /// Custom events of this name only (implies the reason `Custom`).
    pub custom_name: Option<String>,
}

impl FeedFilter {
    pub fn matches(&self, e: &FeedEvent) -> bool {
        self.device_id.as_ref().is_none_or(|d| *d == e.device_id)
            && self.reason.is_none_or(|r| r == e.reason)
            && self.namespace.as_ref().is_none_or(|n| *n == e.namespace)
            && self.labels.iter().all(|(k, v)| e.labels.get(k) == Some(v))
            && self.custom_name.as_ref().is_none_or(|n| {
                e.reason == EventReason::Custom && e.custom_name.as_ref() == Some(n)
            })
    }

    /// The part of the filter the event store answers (device and reason), for
    /// replaying events `since` a time.
    pub fn store_filter(&self, since: Option<DateTime<Utc>>) -> EventFilter {
        EventFilter {
            device_id: self.device_id.clone(),
            reason: self
                .reason
                .or(self.custom_name.as_ref().map(|_| EventReason::Custom)),
            since,
            until: None,
        }
    }

    /// The query string of [`WATCH_PATH`].
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(d) = &self.device_id {
            q.push(("deviceId", d.clone()));
        }
        if let Some(r) = self.reason {
            q.push(("reason", r.as_str().to_string()));
        }
        if let Some(n) = &self.namespace {
            q.push(("namespace", n.clone()));
        }
        if let Some(labels) = labels_query(&self.labels) {
            q.push(("labels", labels));
        }
        if let Some(n) = &self.custom_name {
            q.push(("customName", n.clone()));
        }
        q
    }

    /// The inverse of [`to_query`](Self::to_query); unknown parameters are ignored.
    pub fn from_query<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, DomainError> {
        let mut f = FeedFilter::default();
        for (k, v) in params {
            match k {
                "deviceId" => f.device_id = query_value(v),
                "namespace" => f.namespace = query_value(v),
                "reason" => {
                    f.reason = Some(
                        EventReason::from_name(v.trim())
                            .map_err(|e| DomainError::Invalid(e.to_string()))?,
                    )
                }
                "labels" | "label" => parse_labels(v, &mut f.labels)?,
                "customName" => f.custom_name = query_value(v),
                _ => {}
            }
        }
        Ok(f)
    }
}

/// The ids seen last, at most `capacity` of them: [`insert`](Self::insert) says whether
/// an id is new. An id older than the last `capacity` counts as new again.
#[derive(Debug, Clone)]
pub struct RecentIds {
    capacity: usize,
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            seen: HashSet::new(),
        }
    }

    /// True when `id` was not among the recent ids (it is now).
    pub fn insert(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(id.to_string());
        self.seen.insert(id.to_string());
        true
    }

    pub fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn feed_event() -> FeedEvent {
        let t = Utc
            .with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
            .single()
            .expect("time");
        let mut e = Event::new(EventReason::DeviceOnline, "w1", t, "s1", "device online");
        e.name = "weather".into();
        e.namespace = "lab".into();
        e.expires_at = Some(1);
        FeedEvent::new(e, BTreeMap::from([("site".into(), "roof".into())]))
    }

    #[test]
    fn a_feed_event_is_the_stored_event_in_camel_case_with_labels_and_no_expiry() {
        let e = feed_event();
        let json = serde_json::to_value(&e).expect("json");
        assert_eq!(json["deviceId"], "w1");
        assert_eq!(json["type"], "Normal");
        assert_eq!(json["reason"], "DeviceOnline");
        assert_eq!(json["labels"]["site"], "roof");
        assert_eq!(json["namespace"], "lab");
        assert!(json.get("expiresAt").is_none());
        assert!(json.get("actor").is_none());
        let back: FeedEvent = serde_json::from_value(json).expect("parse");
        assert_eq!(back, e);
        assert_eq!(back.to_event().id, e.id);
    }

    #[test]
    fn a_filter_round_trips_through_its_query_and_matches_every_part() {
        let f = FeedFilter::from_query([
            ("deviceId", "w1"),
            ("reason", "deviceonline"),
            ("namespace", "lab"),
            ("labels", "site=roof"),
            ("other", "x"),
        ])
        .expect("parse");
        assert_eq!(f.reason, Some(EventReason::DeviceOnline));
        let custom = FeedFilter::from_query([("customName", "DeviceOfflineAlert")]).expect("parse");
        let q = custom.to_query();
        let back = FeedFilter::from_query(q.iter().map(|(k, v)| (*k, v.as_str()))).expect("back");
        assert_eq!(back, custom);
        assert_eq!(custom.store_filter(None).reason, Some(EventReason::Custom));
        let q = f.to_query();
        let back = FeedFilter::from_query(q.iter().map(|(k, v)| (*k, v.as_str()))).expect("back");
        assert_eq!(back, f);
        let e = feed_event();
        assert!(f.matches(&e));
        for other in [
            FeedFilter {
                device_id: Some("w2".into()),
                ..f.clone()
            },
            FeedFilter {
                reason: Some(EventReason::DeviceOffline),
                ..f.clone()
            },
            FeedFilter {
                namespace: Some("default".into()),
                ..f.clone()
            },
            FeedFilter {
                labels: BTreeMap::from([("site".into(), "cellar".into())]),
                ..f.clone()
            },
        ] {
            assert!(!other.matches(&e), "{other:?}");
        }
        let err = FeedFilter::from_query([("reason", "Exploded")]).expect_err("unknown");
        assert!(err.to_string().contains("DeviceOnline"), "{err}");
        assert!(FeedFilter::from_query([("labels", "novalue")]).is_err());
    }

    #[test]
    fn a_custom_name_filter_takes_only_custom_events_of_that_name() {
        let f = FeedFilter {
            custom_name: Some("DeviceOfflineAlert".into()),
            ..FeedFilter::default()
        };
        let mut e = feed_event();
        assert!(!f.matches(&e), "not a custom event");
        e.reason = EventReason::Custom;
        e.custom_name = Some("DeviceOfflineAlert".into());
        assert!(f.matches(&e));
        e.custom_name = Some("Other".into());
        assert!(!f.matches(&e));
        let json = serde_json::to_value(&e).expect("json");
        assert_eq!(json["reason"], "Custom");
        assert_eq!(json["customName"], "Other");
    }

    #[test]
    fn recent_ids_drop_a_repeat_and_forget_the_oldest_past_capacity() {
        let mut ids = RecentIds::new(2);
        assert!(ids.insert("a"));
        assert!(!ids.insert("a"));
        assert!(ids.insert("b"));
        assert!(ids.insert("c"));
        assert!(!ids.contains("a"));
        assert!(ids.contains("b") && ids.contains("c"));
        assert!(ids.insert("a"));
    }
}
