//! The event feed on an Amazon EventBridge bus ([`FeedPublisher`]).
//!
//! Each [`FeedEvent`] is one entry: `source` [`EVENTBRIDGE_SOURCE`], `detail-type` the
//! event's reason, `detail` the event document (the JSON that `GET /v1/events/watch`
//! sends locally), `time` the event's time. Each decoded [`TelemetryPoint`] (the
//! telemetry feed) is one entry too: `detail-type` [`TELEMETRY_DETAIL_TYPE`], `detail`
//! the point (the JSON of `GET /v1/telemetry/watch`), `time` the point's. `PutEvents` takes up to
//! [`MAX_ENTRIES_PER_CALL`] entries and [`MAX_CALL_BYTES`] per call, so events go out in
//! order in chunks within both. Entries the bus failed for now (throttling, an internal
//! error) are sent again, up to [`ATTEMPTS`] times; an entry it refuses for good is
//! [`FeedError::Refused`]. An event whose document alone is over the limit goes out
//! with its payload replaced by `{"truncated": true, "bytes": <size>}`, and a point over
//! it without its values and with `truncatedBytes`: the stores keep both whole.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_eventbridge::{
    primitives::DateTime as AwsDateTime, types::PutEventsRequestEntry, Client,
};
use serde_json::json;

use super::aws::{backoff, is_retryable_sdk, DisplayErrorChain};
use crate::domain::{
    feed::{EVENTBRIDGE_SOURCE, TELEMETRY_DETAIL_TYPE},
    FeedEvent, TelemetryPoint,
};
use crate::ports::{FeedError, FeedPublisher};

pub use aws_sdk_eventbridge;

/// Entries in one `PutEvents` call (EventBridge's limit).
pub const MAX_ENTRIES_PER_CALL: usize = 10;

/// Bytes of all entries in one `PutEvents` call (EventBridge's limit, 256 KB).
pub const MAX_CALL_BYTES: usize = 256 * 1024;

/// Sends of one chunk before its failed entries make the publish fail.
pub const ATTEMPTS: u32 = 4;

/// Entry error codes that a later attempt can get through.
const RETRYABLE_ENTRY_CODES: &[&str] = &["ThrottlingException", "InternalFailure"];

/// The feed on the bus named (or with the ARN) `bus`.
#[derive(Debug, Clone)]
pub struct EventBridgeFeed {
    client: Client,
    bus: String,
}

impl EventBridgeFeed {
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    fn entry(&self, e: &Entry) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(EVENTBRIDGE_SOURCE)
            .detail_type(&e.detail_type)
            .detail(&e.detail)
            .time(AwsDateTime::from_millis(e.time_ms))
            .build()
    }

    /// Sends one chunk until every entry is in, retrying the entries that failed for
    /// now. `published` is how many events went out before this chunk.
    async fn send(&self, chunk: &[Entry], published: usize) -> Result<(), FeedError> {
        let mut pending: Vec<&Entry> = chunk.iter().collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let entries = pending.iter().map(|e| self.entry(e)).collect();
            let out = match self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if is_retryable_sdk(&e) && attempt < ATTEMPTS => {
                    tokio::time::sleep(pause(attempt)).await;
                    continue;
                }
                Err(e) => {
                    let message = format!("PutEvents: {}", DisplayErrorChain(&e));
                    return Err(FeedError::Unavailable {
                        published,
                        message,
                        source: Some(Box::new(e)),
                    });
                }
            };
            if out.failed_entry_count() == 0 {
                return Ok(());
            }
            let mut again = Vec::new();
            for (entry, result) in pending.iter().zip(out.entries()) {
                match result.error_code() {
                    None => {}
                    Some(code) if RETRYABLE_ENTRY_CODES.contains(&code) => again.push(*entry),
                    Some(code) => {
                        return Err(FeedError::Refused {
                            id: entry.id.clone(),
                            code: code.to_string(),
                        })
                    }
                }
            }
            if again.is_empty() {
                // The count said failures but no entry named one: send them all again.
                again = pending.clone();
            }
            if attempt >= ATTEMPTS {
                return Err(FeedError::Unavailable {
                    published,
                    message: format!(
                        "PutEvents: {} entries still failing after {ATTEMPTS} attempts",
                        again.len()
                    ),
                    source: None,
                });
            }
            pending = again;
            tokio::time::sleep(pause(attempt)).await;
        }
    }
}

fn pause(attempt: u32) -> Duration {
    backoff(attempt, Duration::from_millis(50), Duration::from_secs(1))
}

/// One event as an entry's parts, with its size as EventBridge counts it.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    id: String,
    detail_type: String,
    detail: String,
    time_ms: i64,
}

/// EventBridge counts an entry as the UTF-8 bytes of its source, detail-type and
/// detail, plus 14 for the time.
fn entry_size(detail_type: &str, detail: &str) -> usize {
    EVENTBRIDGE_SOURCE.len() + detail_type.len() + detail.len() + 14
}

impl Entry {
    fn of(event: &FeedEvent) -> Entry {
        let detail_type = event.reason.as_str().to_string();
        let mut detail = json_text(event);
        if entry_size(&detail_type, &detail) > MAX_CALL_BYTES {
            let mut small = event.clone();
            small.payload = json!({ "truncated": true, "bytes": detail.len() });
            detail = json_text(&small);
        }
        Entry {
            id: event.id.clone(),
            detail_type,
            detail,
            time_ms: event.time.timestamp_millis(),
        }
    }

    fn of_point(point: &TelemetryPoint) -> Entry {
        let detail_type = TELEMETRY_DETAIL_TYPE.to_string();
        let mut detail = json_text(point);
        if entry_size(&detail_type, &detail) > MAX_CALL_BYTES {
            let mut small = point.clone();
            small.values.clear();
            small.truncated_bytes = Some(detail.len());
            detail = json_text(&small);
        }
        Entry {
            id: point.id.clone(),
            detail_type,
            detail,
            time_ms: point.time.timestamp_millis(),
        }
    }

    fn size(&self) -> usize {
        entry_size(&self.detail_type, &self.detail)
    }
}

/// A document's JSON (feed events and points always serialize: string keys only).
fn json_text(doc: &impl serde::Serialize) -> String {
    serde_json::to_string(doc).unwrap_or_else(|_| String::from("{}"))
}

/// The entries in order, in chunks of at most [`MAX_ENTRIES_PER_CALL`] and
/// [`MAX_CALL_BYTES`].
fn chunks(entries: Vec<Entry>) -> Vec<Vec<Entry>> {
    let mut out: Vec<Vec<Entry>> = Vec::new();
    let mut bytes = 0;
    for e in entries {
        let size = e.size();
        let full = out
            .last()
            .is_none_or(|c| c.len() >= MAX_ENTRIES_PER_CALL || bytes + size > MAX_CALL_BYTES);
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(last) = out.last_mut() {
            last.push(e);
        }
    }
    out
}

#[async_trait]
impl FeedPublisher for EventBridgeFeed {
    async fn publish(&self, events: &[FeedEvent]) -> Result<(), FeedError> {
        self.send_all(events.iter().map(Entry::of).collect()).await
    }

    async fn publish_telemetry(&self, points: &[TelemetryPoint]) -> Result<(), FeedError> {
        self.send_all(points.iter().map(Entry::of_point).collect())
            .await
    }
}

impl EventBridgeFeed {
    async fn send_all(&self, entries: Vec<Entry>) -> Result<(), FeedError> {
        let mut published = 0;
        for chunk in chunks(entries) {
            self.send(&chunk, published).await?;
            published += chunk.len();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventReason, EventType};
    use chrono::{TimeZone, Utc};

    fn event(id: &str, payload_bytes: usize) -> FeedEvent {
        FeedEvent {
            id: id.into(),
            time: Utc
                .timestamp_opt(1_790_000_000, 0)
                .single()
                .unwrap_or_default(),
            event_type: EventType::Normal,
            reason: EventReason::DeviceOnline,
            device_id: "d1".into(),
            name: "d1".into(),
            namespace: "default".into(),
            labels: Default::default(),
            message: "online".into(),
            payload: json!({ "blob": "x".repeat(payload_bytes) }),
            actor: None,
            custom_name: None,
        }
    }

    #[test]
    fn events_go_out_in_order_in_chunks_of_ten_entries_at_most() {
        let entries: Vec<Entry> = (0..23)
            .map(|i| Entry::of(&event(&i.to_string(), 0)))
            .collect();
        let sizes: Vec<usize> = chunks(entries.clone()).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 10, 3]);
        let flat: Vec<Entry> = chunks(entries.clone()).into_iter().flatten().collect();
        assert_eq!(flat, entries);
    }

    #[test]
    fn a_chunk_never_holds_more_than_256_kb_of_entries() {
        let entries: Vec<Entry> = (0..6)
            .map(|i| Entry::of(&event(&i.to_string(), 100 * 1024)))
            .collect();
        let chunks = chunks(entries);
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 2]
        );
        for c in &chunks {
            assert!(c.iter().map(Entry::size).sum::<usize>() <= MAX_CALL_BYTES);
        }
    }

    #[test]
    fn an_event_too_large_for_the_bus_goes_out_with_its_payload_truncated() {
        let big = event("big", 300 * 1024);
        let entry = Entry::of(&big);
        assert!(entry.size() <= MAX_CALL_BYTES);
        let doc: FeedEvent = serde_json::from_str(&entry.detail).expect("a feed event");
        assert_eq!(doc.payload["truncated"], json!(true));
        assert!(doc.payload["bytes"].as_u64().unwrap_or(0) > 300 * 1024);
        assert_eq!(
            (doc.id, doc.reason),
            ("big".to_string(), EventReason::DeviceOnline)
        );
    }

    fn point(values: usize, bytes_each: usize) -> TelemetryPoint {
        let record = crate::telemetry::TelemetryRecord {
            device_id: "d1".into(),
            name: "d1".into(),
            namespace: "default".into(),
            measure: "schema.v1.Env".into(),
            time_ns: 1_790_000_000_123_000_000,
            seq: 7,
            tags: Vec::new(),
            values: (0..values)
                .map(|i| {
                    (
                        format!("f{i}").into(),
                        crate::telemetry::FieldValue::Text("x".repeat(bytes_each)),
                    )
                })
                .collect(),
        };
        TelemetryPoint::new(&record, [("site".to_string(), "north".to_string())].into())
    }

    #[test]
    fn a_telemetry_point_is_a_telemetry_entry_with_the_point_as_detail() {
        let p = point(2, 4);
        let entry = Entry::of_point(&p);
        assert_eq!(entry.detail_type, "Telemetry");
        assert_eq!(entry.id, "d1/schema.v1.Env/1790000000123000000/7");
        assert_eq!(entry.time_ms, 1_790_000_000_123);
        let doc: TelemetryPoint = serde_json::from_str(&entry.detail).expect("a point");
        assert_eq!(doc, p);
        assert!(!entry.detail.contains("truncatedBytes"), "{}", entry.detail);
    }

    #[test]
    fn a_point_too_large_for_the_bus_goes_out_without_its_values() {
        let entry = Entry::of_point(&point(3, 100 * 1024));
        assert!(entry.size() <= MAX_CALL_BYTES);
        let doc: TelemetryPoint = serde_json::from_str(&entry.detail).expect("a point");
        assert!(doc.values.is_empty());
        assert!(doc.truncated_bytes.unwrap_or(0) > 300 * 1024);
        assert_eq!(doc.labels["site"], "north");
    }

    #[test]
    fn the_entry_is_the_reason_as_detail_type_and_the_event_as_detail() {
        let e = event("e1", 3);
        let entry = Entry::of(&e);
        assert_eq!(entry.detail_type, "DeviceOnline");
        assert_eq!(entry.time_ms, 1_790_000_000_000);
        let doc: FeedEvent = serde_json::from_str(&entry.detail).expect("a feed event");
        assert_eq!(doc, e);
    }
}
