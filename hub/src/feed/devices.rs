//! The device streams: each heartbeat (`mir/{id}/hb`) and each schema (`mir/{id}/hello`)
//! a device sends, with its device's name, namespace and labels, to the watchers of
//! `GET /v1/heartbeats/watch` and `GET /v1/schemas/watch` (server-sent events).
//!
//! - [`DeviceStreams`]: the two broadcast channels ([`super::FEED_CAPACITY`] documents
//!   each), in the hub's [`Core`](crate::core::Core): its rules emulation calls
//!   [`DeviceStreams::handled`] after the `heartbeat` or `hello` function handled a
//!   message (an invocation that failed publishes nothing, nor does one of a deleted
//!   device, whose message the function ignored), which publishes a
//!   [`HeartbeatPoint`] (the status fields the heartbeat carries) or a
//!   [`SchemaAnnouncement`] (package and message names of the schema the hello
//!   carries, as the function stored it);
//! - [`heartbeats`], [`schemas`]: the routes; query `deviceId`, `namespace`, `labels`
//!   ([`DeviceStreamFilter`]; anything else is a 400); each message `id: <document id>`,
//!   `data: <document JSON>`; the loop of [`super::live`]: no replay, a watcher behind
//!   the channel gets a `lagged` message and the stream ends, as does every stream when
//!   the hub shuts down.
//!
//! At least once: a message handled twice (chaos, a device sending it again) publishes
//! twice, with the same id; consumers drop an id they saw. Nothing is decoded, read or
//! sent while nobody watches.

use std::sync::Arc;

use axum::{
    extract::{Query, State},
    response::Response,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::broadcast;

use mir_proto::topics::DeviceTopic;
use mir_shared::{
    domain::{DeviceStreamFilter, HeartbeatPoint, SchemaAnnouncement},
    ports::TwinStore,
};

use super::{
    live::{live, LiveDocument},
    watch::{bad_request, sse_response},
    FEED_CAPACITY,
};
use crate::http::HttpState;

/// The heartbeats and schemas of one hub. Cloning shares the channels.
#[derive(Clone)]
pub struct DeviceStreams {
    heartbeats: broadcast::Sender<Arc<HeartbeatPoint>>,
    schemas: broadcast::Sender<Arc<SchemaAnnouncement>>,
}

impl Default for DeviceStreams {
    fn default() -> Self {
        Self::new(FEED_CAPACITY)
    }
}

/// A device message a function handled.
pub struct Handled<'a> {
    pub topic: DeviceTopic,
    pub device_id: &'a str,
    /// When the platform received it (the rule event's time).
    pub received_at: DateTime<Utc>,
    pub payload: &'a [u8],
    /// What the function answered.
    pub outcome: &'a Value,
}

/// The part of the `heartbeat` and `hello` outcomes the streams read.
#[derive(Debug, Default, Deserialize)]
struct Outcome {
    /// The device was deleted: the function ignored the message.
    #[serde(default)]
    deleted: bool,
}

/// Why a handled message could not be published (logged; the message was handled).
pub use mir_shared::domain::device_stream::DeviceMessageError as DeviceStreamError;

impl DeviceStreams {
    /// Channels of `capacity` documents each.
    pub fn new(capacity: usize) -> Self {
        Self {
            heartbeats: broadcast::channel(capacity.max(1)).0,
            schemas: broadcast::channel(capacity.max(1)).0,
        }
    }

    pub fn subscribe_heartbeats(&self) -> broadcast::Receiver<Arc<HeartbeatPoint>> {
        self.heartbeats.subscribe()
    }

    pub fn subscribe_schemas(&self) -> broadcast::Receiver<Arc<SchemaAnnouncement>> {
        self.schemas.subscribe()
    }

    /// Publishes a heartbeat or a hello the function handled, with the device's name,
    /// namespace and labels read from `twins` (see [`Publication`]).
    pub async fn handled(
        &self,
        twins: Option<&dyn TwinStore>,
        m: Handled<'_>,
    ) -> Result<Publication, DeviceStreamError> {
        let watchers = match m.topic {
            DeviceTopic::Heartbeat => self.heartbeats.receiver_count(),
            DeviceTopic::Hello => self.schemas.receiver_count(),
            _ => return Ok(Publication::Ignored),
        };
        if watchers == 0 {
            return Ok(Publication::Unwatched);
        }
        let deleted = Outcome::deserialize(m.outcome)
            .map(|o| o.deleted)
            .unwrap_or_default();
        if deleted {
            return Ok(Publication::Ignored);
        }
        let meta = || async { super::meta_of(twins, m.device_id).await.unwrap_or_default() };
        // A receiver gone since the count: nobody to tell.
        if m.topic == DeviceTopic::Heartbeat {
            let point = HeartbeatPoint::decode(m.device_id, m.received_at, m.payload)?;
            let _ = self
                .heartbeats
                .send(Arc::new(point.of_device(meta().await)));
        } else {
            let a = SchemaAnnouncement::decode(m.device_id, m.received_at, m.payload)?;
            let _ = self.schemas.send(Arc::new(a.of_device(meta().await)));
        }
        Ok(Publication::Sent)
    }
}

/// What [`DeviceStreams::handled`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publication {
    /// Sent to the watchers of its stream.
    Sent,
    /// Nobody watches its stream: not decoded, no twin read, nothing sent.
    Unwatched,
    /// Not a heartbeat or a hello, or the device was deleted (the function ignored it).
    Ignored,
}

impl LiveDocument for HeartbeatPoint {
    fn id(&self) -> &str {
        &self.id
    }
}

impl LiveDocument for SchemaAnnouncement {
    fn id(&self) -> &str {
        &self.id
    }
}

fn filter_of(params: &[(String, String)]) -> Result<DeviceStreamFilter, Response> {
    DeviceStreamFilter::from_query(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| bad_request(&e))
}

/// `GET /v1/heartbeats/watch`.
pub async fn heartbeats(
    State(state): State<HttpState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    match filter_of(&params) {
        Ok(f) => {
            let rx = state.core.device_streams.subscribe_heartbeats();
            sse_response(live(&state.feed, rx, move |p| f.matches(p), "heartbeats"))
        }
        Err(refused) => refused,
    }
}

/// `GET /v1/schemas/watch`.
pub async fn schemas(
    State(state): State<HttpState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    match filter_of(&params) {
        Ok(f) => {
            let rx = state.core.device_streams.subscribe_schemas();
            sse_response(live(&state.feed, rx, move |a| f.matches(a), "schemas"))
        }
        Err(refused) => refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_proto::wire::{heartbeat::StoreState, Heartbeat};
    use prost::Message;
    use serde_json::json;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000).expect("a time")
    }

    fn handled<'a>(topic: DeviceTopic, payload: &'a [u8], outcome: &'a Value) -> Handled<'a> {
        Handled {
            topic,
            device_id: "w1",
            received_at: at(),
            payload,
            outcome,
        }
    }

    #[tokio::test]
    async fn a_message_nobody_watches_is_not_decoded_and_nothing_is_sent() {
        let streams = DeviceStreams::new(4);
        let ok = json!({ "deviceId": "w1" });
        let garbage = [0xff, 0xff];
        for topic in [DeviceTopic::Heartbeat, DeviceTopic::Hello] {
            let published = streams.handled(None, handled(topic, &garbage, &ok)).await;
            assert_eq!(published.expect("not decoded"), Publication::Unwatched);
        }
        let _heartbeats = streams.subscribe_heartbeats();
        let published = streams
            .handled(None, handled(DeviceTopic::Heartbeat, &garbage, &ok))
            .await;
        assert!(
            matches!(
                published,
                Err(DeviceStreamError::Malformed {
                    what: "heartbeat",
                    ..
                })
            ),
            "watched: decoded, {published:?}"
        );
        let published = streams
            .handled(None, handled(DeviceTopic::Hello, &garbage, &ok))
            .await;
        assert_eq!(
            published.expect("nobody watches schemas"),
            Publication::Unwatched
        );
    }

    #[tokio::test]
    async fn a_deleted_devices_message_and_other_topics_are_ignored() {
        let streams = DeviceStreams::new(4);
        let mut heartbeats = streams.subscribe_heartbeats();
        let _schemas = streams.subscribe_schemas();
        let hb = Heartbeat::default().encode_to_vec();
        // The functions' own outcomes, as the registry serializes them.
        let heartbeat = serde_json::to_value(mir_fn_heartbeat::HeartbeatOutcome {
            device_id: "w1".into(),
            came_online: false,
            deleted: true,
        })
        .expect("json");
        let hello = serde_json::to_value(mir_fn_hello::HelloOutcome {
            device_id: "w1".into(),
            created: false,
            schema_changed: false,
            package_names: vec![],
            deleted: true,
            desired_sent: vec![],
        })
        .expect("json");
        for (topic, outcome) in [
            (DeviceTopic::Heartbeat, &heartbeat),
            (DeviceTopic::Hello, &hello),
            (DeviceTopic::Telemetry, &json!({})),
        ] {
            let published = streams.handled(None, handled(topic, &hb, outcome)).await;
            assert_eq!(
                published.expect("ignored"),
                Publication::Ignored,
                "{topic:?}"
            );
        }
        assert!(heartbeats.try_recv().is_err(), "nothing sent");
    }

    #[tokio::test]
    async fn a_watcher_of_the_default_streams_lags_once_it_is_feed_capacity_behind() {
        let streams = DeviceStreams::default();
        let mut heartbeats = streams.subscribe_heartbeats();
        let outcome = json!({ "deviceId": "w1" });
        for i in 0..=FEED_CAPACITY {
            let hb = Heartbeat {
                sent_at_ns: i64::try_from(i).expect("small") + 1,
                ..Default::default()
            }
            .encode_to_vec();
            let published = streams
                .handled(None, handled(DeviceTopic::Heartbeat, &hb, &outcome))
                .await;
            assert_eq!(published.expect("sent"), Publication::Sent);
        }
        assert!(matches!(
            heartbeats.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(1))
        ));
    }

    #[tokio::test]
    async fn a_handled_heartbeat_reaches_a_watcher_with_its_status() {
        let streams = DeviceStreams::new(4);
        let mut heartbeats = streams.subscribe_heartbeats();
        let hb = Heartbeat {
            sent_at_ns: 42,
            uptime_sec: 9,
            store_state: StoreState::Durable as i32,
            ..Default::default()
        }
        .encode_to_vec();
        let outcome = json!({ "deviceId": "w1", "cameOnline": true });
        let published = streams
            .handled(None, handled(DeviceTopic::Heartbeat, &hb, &outcome))
            .await;
        assert_eq!(published.expect("sent"), Publication::Sent);
        let p = heartbeats.try_recv().expect("a heartbeat");
        assert_eq!(p.id, "w1/hb/42");
        assert_eq!(p.time, at());
        let status = p.status.as_ref().expect("a status");
        assert_eq!(status.uptime_sec, 9);
        assert_eq!(status.store_state, "STORE_STATE_DURABLE");
        assert_eq!(p.name, "", "no twins: no name");
    }
}
