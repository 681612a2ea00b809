//! The device streams' types: each heartbeat a device sends (`mir/{id}/hb`) and each
//! schema it announces (`mir/{id}/hello`), as the hub's `GET /v1/heartbeats/watch` and
//! `GET /v1/schemas/watch` send them and modules read them.
//!
//! - [`HeartbeatPoint`]: one heartbeat: device id, name, namespace, labels, the time the
//!   platform received it (the twin's `status.lastHeartbeat`) and, when the heartbeat
//!   carries any, the device's [`HeartbeatStatus`] (uptime, queue, store, clock, link);
//! - [`SchemaAnnouncement`]: one hello: device id, name, namespace, labels, the time the
//!   platform received it (the twin's `status.schema.lastSchemaFetch`), the schema's
//!   package names and its telemetry, command and configuration message names;
//! - [`DeviceStreamFilter`]: device, namespace, labels, and its query string
//!   (`deviceId`, `namespace`, `labels=k=v,k2=v2`; any other parameter is refused,
//!   [`DeviceStreamFilterError`]);
//! - [`HEARTBEATS_WATCH_PATH`], [`SCHEMAS_WATCH_PATH`];
//! - [`HeartbeatPoint::decode`] and [`SchemaAnnouncement::decode`]: the document of a
//!   device's message bytes, the one decoding the hub and the module SDK (IoT rule
//!   events on AWS) share ([`DeviceMessageError`]).
//!
//! Delivery is at least once, as for events: a document's `id` derives from the device
//! and the time the device put in its message (`sent_at_ns`), so the same message
//! delivered twice has the same id; consumers drop an id they saw. A device that sends
//! 0 there gets the receive time instead, which is the same only for a redelivered
//! invocation of one received message.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use mir_proto::wire::{Heartbeat, Hello};

use super::{
    targets::{labels_query, parse_labels, query_value},
    twin::Meta,
    DomainError,
};
use crate::schema::{self, MessageKind, Schema, SchemaError};

/// The hub's server-sent heartbeat route.
pub const HEARTBEATS_WATCH_PATH: &str = "/v1/heartbeats/watch";

/// The hub's server-sent schema route.
pub const SCHEMAS_WATCH_PATH: &str = "/v1/schemas/watch";

/// One heartbeat of a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatPoint {
    /// `<deviceId>/hb/<sent_at_ns>` (the receive time in ns when the device sent 0).
    pub id: String,
    pub device_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When the platform received it.
    pub time: DateTime<Utc>,
    /// The device's status as the heartbeat carries it; none for an empty heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<HeartbeatStatus>,
}

/// The status fields of a heartbeat (`mir.wire.v1.Heartbeat`), enums by their protobuf
/// names (`STORE_STATE_DURABLE`); a field the device's SDK does not fill is 0 or
/// `..._UNSPECIFIED`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeartbeatStatus {
    /// The device's clock when it sent the heartbeat, ns since the Unix epoch.
    pub sent_at_ns: i64,
    pub uptime_sec: u64,
    /// Telemetry messages not yet acknowledged by the broker.
    pub queued: u64,
    /// Seconds until the next heartbeat (0: not said).
    pub interval_sec: u32,
    pub quarantined_records: u64,
    pub queued_bytes: u64,
    pub store_state: String,
    pub clock_state: String,
    pub link_issue: String,
    pub dropped_after_connect_in_a_row: u32,
    pub store_errors: u64,
    pub dropped_messages: u64,
    pub corrupt_records: u64,
}

impl HeartbeatStatus {
    pub fn of(hb: &Heartbeat) -> Self {
        Self {
            sent_at_ns: hb.sent_at_ns,
            uptime_sec: hb.uptime_sec,
            queued: hb.queued,
            interval_sec: hb.interval_sec,
            quarantined_records: hb.quarantined_records,
            queued_bytes: hb.queued_bytes,
            store_state: hb.store_state().as_str_name().to_string(),
            clock_state: hb.clock_state().as_str_name().to_string(),
            link_issue: hb.link_issue().as_str_name().to_string(),
            dropped_after_connect_in_a_row: hb.dropped_after_connect_in_a_row,
            store_errors: hb.store_errors,
            dropped_messages: hb.dropped_messages,
            corrupt_records: hb.corrupt_records,
        }
    }
}

/// The id of a device message: the device's send time, else the receive time.
fn message_id(device_id: &str, topic: &str, sent_at_ns: i64, received: DateTime<Utc>) -> String {
    let t = if sent_at_ns != 0 {
        sent_at_ns
    } else {
        received.timestamp_nanos_opt().unwrap_or(i64::MAX)
    };
    format!("{device_id}/{topic}/{t}")
}

/// Why a device's message is not a device stream document.
#[derive(Debug, thiserror::Error)]
pub enum DeviceMessageError {
    /// The bytes are not a protobuf `mir.wire.v1.Heartbeat` / `Hello`.
    #[error("malformed {what} protobuf: {source}")]
    Malformed {
        what: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    /// The hello's schema is not a usable `FileDescriptorSet`.
    #[error("the hello's schema does not decode: {0}")]
    Schema(#[from] SchemaError),
}

impl HeartbeatPoint {
    /// The point of the heartbeat bytes `payload` of `device_id` received at `time`.
    pub fn decode(
        device_id: &str,
        time: DateTime<Utc>,
        payload: &[u8],
    ) -> Result<Self, DeviceMessageError> {
        use prost::Message;
        let hb = Heartbeat::decode(payload).map_err(|source| DeviceMessageError::Malformed {
            what: "heartbeat",
            source,
        })?;
        Ok(Self::new(device_id, time, &hb, payload.len()))
    }

    /// The heartbeat `hb` of `device_id` received at `time`; `payload_len` is the size
    /// of the message the device sent (0: an empty heartbeat, which carries no status).
    /// Without name, namespace and labels: see [`HeartbeatPoint::of_device`].
    pub fn new(device_id: &str, time: DateTime<Utc>, hb: &Heartbeat, payload_len: usize) -> Self {
        Self {
            id: message_id(device_id, "hb", hb.sent_at_ns, time),
            device_id: device_id.to_string(),
            name: String::new(),
            namespace: String::new(),
            labels: BTreeMap::new(),
            time,
            status: (payload_len > 0).then(|| HeartbeatStatus::of(hb)),
        }
    }

    /// With the device's name, namespace and labels.
    pub fn of_device(mut self, meta: Meta) -> Self {
        self.name = meta.name;
        self.namespace = meta.namespace;
        self.labels = meta.labels;
        self
    }
}

/// One schema a device announced (its `Hello`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaAnnouncement {
    /// `<deviceId>/hello/<sent_at_ns>` (the receive time in ns when the device sent 0).
    pub id: String,
    pub device_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When the platform received it.
    pub time: DateTime<Utc>,
    /// The packages of the schema's files, sorted (the twin's `status.schema.packageNames`).
    pub package_names: Vec<String>,
    /// Full names of the telemetry messages, sorted.
    #[serde(default)]
    pub telemetry: Vec<String>,
    /// Full names of the command messages, sorted.
    #[serde(default)]
    pub commands: Vec<String>,
    /// Full names of the configuration (desired property) messages, sorted.
    #[serde(default)]
    pub config: Vec<String>,
    /// The device SDK's version, as the hello says it.
    #[serde(default)]
    pub sdk_version: String,
}

impl SchemaAnnouncement {
    /// The announcement of the hello bytes `payload` of `device_id` received at `time`
    /// (its schema decoded).
    pub fn decode(
        device_id: &str,
        time: DateTime<Utc>,
        payload: &[u8],
    ) -> Result<Self, DeviceMessageError> {
        use prost::Message;
        let hello = Hello::decode(payload).map_err(|source| DeviceMessageError::Malformed {
            what: "hello",
            source,
        })?;
        let schema = Schema::from_descriptor_set(&schema::hello_schema_bytes(&hello)?)?;
        Ok(Self::new(device_id, time, &hello, &schema))
    }

    /// The hello of `device_id` received at `time`, whose schema is `schema`. Without
    /// name, namespace and labels: see [`SchemaAnnouncement::of_device`].
    pub fn new(device_id: &str, time: DateTime<Utc>, hello: &Hello, schema: &Schema) -> Self {
        Self {
            id: message_id(device_id, "hello", hello.sent_at_ns, time),
            device_id: device_id.to_string(),
            name: String::new(),
            namespace: String::new(),
            labels: BTreeMap::new(),
            time,
            package_names: schema.package_names(),
            telemetry: schema.messages_of(MessageKind::Telemetry),
            commands: schema.messages_of(MessageKind::Command),
            config: schema.messages_of(MessageKind::Config),
            sdk_version: hello.sdk_version.clone(),
        }
    }

    /// With the device's name, namespace and labels.
    pub fn of_device(mut self, meta: Meta) -> Self {
        self.name = meta.name;
        self.namespace = meta.namespace;
        self.labels = meta.labels;
        self
    }
}

/// A document of a device stream: what [`DeviceStreamFilter`] looks at.
pub trait DeviceDocument {
    fn device_id(&self) -> &str;
    fn namespace(&self) -> &str;
    fn labels(&self) -> &BTreeMap<String, String>;
}

impl DeviceDocument for HeartbeatPoint {
    fn device_id(&self) -> &str {
        &self.device_id
    }
    fn namespace(&self) -> &str {
        &self.namespace
    }
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

impl DeviceDocument for SchemaAnnouncement {
    fn device_id(&self) -> &str {
        &self.device_id
    }
    fn namespace(&self) -> &str {
        &self.namespace
    }
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

/// Which heartbeats or schemas a watcher wants; everything optional, all must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceStreamFilter {
    pub device_id: Option<String>,
    pub namespace: Option<String>,
    /// Every one must be among the device's labels.
    pub labels: BTreeMap<String, String>,
}

/// Why a device stream's query is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceStreamFilterError {
    #[error("unknown query parameter {0:?} (deviceId, namespace, labels)")]
    Unknown(String),
    #[error(transparent)]
    Labels(#[from] DomainError),
}

impl DeviceStreamFilter {
    pub fn matches(&self, d: &impl DeviceDocument) -> bool {
        self.device_id.as_ref().is_none_or(|id| id == d.device_id())
            && self.namespace.as_ref().is_none_or(|n| n == d.namespace())
            && self
                .labels
                .iter()
                .all(|(k, v)| d.labels().get(k) == Some(v))
    }

    /// The query string of [`HEARTBEATS_WATCH_PATH`] and [`SCHEMAS_WATCH_PATH`].
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        for (k, v) in [
            ("deviceId", &self.device_id),
            ("namespace", &self.namespace),
        ] {
            if let Some(v) = v {
                q.push((k, v.clone()));
            }
        }
        if let Some(labels) = labels_query(&self.labels) {
            q.push(("labels", labels));
        }
        q
    }

    /// The inverse of [`to_query`](Self::to_query); a parameter it does not know, or a
    /// label that is not `key=value`, is an error.
    pub fn from_query<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, DeviceStreamFilterError> {
        let mut f = DeviceStreamFilter::default();
        for (k, v) in params {
            match k {
                "deviceId" => f.device_id = query_value(v),
                "namespace" => f.namespace = query_value(v),
                "labels" | "label" => parse_labels(v, &mut f.labels)?,
                other => return Err(DeviceStreamFilterError::Unknown(other.to_string())),
            }
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_proto::wire::heartbeat::{ClockState, StoreState};
    use prost::Message;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_123).expect("a time")
    }

    fn meta() -> Meta {
        Meta {
            name: "weather".into(),
            namespace: "lab".into(),
            labels: BTreeMap::from([("site".into(), "roof".into())]),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn a_heartbeat_point_carries_the_decoded_status_and_the_devices_labels() {
        let hb = Heartbeat {
            sent_at_ns: 1_700_000_000_000_000_042,
            uptime_sec: 12,
            queued: 3,
            interval_sec: 30,
            store_state: StoreState::MemoryOnly as i32,
            clock_state: ClockState::Synced as i32,
            dropped_messages: 2,
            ..Default::default()
        };
        let len = hb.encode_to_vec().len();
        let p = HeartbeatPoint::new("w1", at(), &hb, len).of_device(meta());
        assert_eq!(p.id, "w1/hb/1700000000000000042");
        let json = serde_json::to_value(&p).expect("json");
        assert_eq!(json["deviceId"], "w1");
        assert_eq!(json["name"], "weather");
        assert_eq!(json["namespace"], "lab");
        assert_eq!(json["labels"]["site"], "roof");
        assert_eq!(json["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(json["status"]["uptimeSec"], 12);
        assert_eq!(json["status"]["queued"], 3);
        assert_eq!(json["status"]["intervalSec"], 30);
        assert_eq!(json["status"]["storeState"], "STORE_STATE_MEMORY_ONLY");
        assert_eq!(json["status"]["clockState"], "CLOCK_STATE_SYNCED");
        assert_eq!(json["status"]["linkIssue"], "LINK_ISSUE_NONE");
        assert_eq!(json["status"]["droppedMessages"], 2);
        let back: HeartbeatPoint = serde_json::from_value(json).expect("parse");
        assert_eq!(back, p);
    }

    #[test]
    fn an_empty_heartbeat_has_no_status_and_its_id_takes_the_receive_time() {
        let p = HeartbeatPoint::new("w1", at(), &Heartbeat::default(), 0);
        assert_eq!(p.status, None);
        assert_eq!(p.id, "w1/hb/1700000000123000000");
        let json = serde_json::to_value(&p).expect("json");
        assert!(json.get("status").is_none(), "{json}");
        let again = HeartbeatPoint::new("w1", at(), &Heartbeat::default(), 0);
        assert_eq!(again.id, p.id, "the same message, the same id");
    }

    #[test]
    fn a_schema_announcement_names_the_packages_and_the_messages_of_each_kind() {
        let hello = Hello {
            sdk_version: "1.2.3".into(),
            sent_at_ns: 77,
            ..Default::default()
        };
        let schema = Schema::from_descriptor_set(mir_proto::examples::weather::DESCRIPTOR_SET)
            .expect("the weather schema");
        let a = SchemaAnnouncement::new("w1", at(), &hello, &schema).of_device(meta());
        assert_eq!(a.id, "w1/hello/77");
        assert_eq!(
            a.package_names,
            ["google.protobuf", "mir.device.v1", "schema.v1"]
        );
        assert_eq!(a.telemetry, ["schema.v1.Env"]);
        assert_eq!(a.commands, ["schema.v1.ActivateHVACCmd"]);
        assert_eq!(a.config, ["schema.v1.DataRateProp"]);
        let json = serde_json::to_value(&a).expect("json");
        assert_eq!(json["deviceId"], "w1");
        assert_eq!(json["packageNames"][2], "schema.v1");
        assert_eq!(json["sdkVersion"], "1.2.3");
        assert_eq!(json["labels"]["site"], "roof");
        let back: SchemaAnnouncement = serde_json::from_value(json).expect("parse");
        assert_eq!(back, a);
    }

    #[test]
    fn a_device_stream_filter_round_trips_through_its_query_and_matches_every_part() {
        let f = DeviceStreamFilter::from_query([
            ("deviceId", "w1"),
            ("namespace", "lab"),
            ("labels", "site=roof"),
        ])
        .expect("parse");
        let q = f.to_query();
        let back =
            DeviceStreamFilter::from_query(q.iter().map(|(k, v)| (*k, v.as_str()))).expect("back");
        assert_eq!(back, f);
        let p = HeartbeatPoint::new("w1", at(), &Heartbeat::default(), 0).of_device(meta());
        assert!(f.matches(&p));
        for other in [
            DeviceStreamFilter {
                device_id: Some("w2".into()),
                ..f.clone()
            },
            DeviceStreamFilter {
                namespace: Some("default".into()),
                ..f.clone()
            },
            DeviceStreamFilter {
                labels: BTreeMap::from([("site".into(), "cellar".into())]),
                ..f.clone()
            },
        ] {
            assert!(!other.matches(&p), "{other:?}");
        }
        assert!(DeviceStreamFilter::default().matches(&p));
    }

    #[test]
    fn a_device_stream_query_with_an_unknown_parameter_or_a_bad_label_is_refused() {
        assert_eq!(
            DeviceStreamFilter::from_query([("message", "schema.v1.Env")]),
            Err(DeviceStreamFilterError::Unknown("message".into()))
        );
        let err = DeviceStreamFilter::from_query([("labels", "novalue")]).expect_err("bad");
        assert!(
            matches!(
                err,
                DeviceStreamFilterError::Labels(DomainError::Invalid(_))
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "label \"novalue\" must be key=value",
            "the cause, as the 400 says it"
        );
    }
}
