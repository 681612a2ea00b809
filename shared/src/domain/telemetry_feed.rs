//! The telemetry stream's types: every decoded telemetry point the platform stores,
//! as the hub's `GET /v1/telemetry/watch` sends it and modules read it.
//!
//! - [`TelemetryPoint`]: one point: device id, name, namespace, labels, the message's
//!   full name, time, the SDK's sequence number and the values as the device's schema
//!   decodes them (the JSON of one row of `GET /v1/telemetry/query`);
//! - [`TelemetryFilter`]: device, message, namespace, labels, and its query string
//!   (`deviceId`, `message`, `namespace`, `labels=k=v,k2=v2`);
//! - [`TELEMETRY_WATCH_PATH`].
//!
//! Delivery is at least once, as for events: a point's [`TelemetryPoint::id`] is the
//! same each time it comes (device, message, time, sequence number).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    targets::{labels_query, parse_labels, query_value},
    DomainError,
};
use crate::telemetry::{FieldValue, TelemetryRecord};

/// The hub's server-sent telemetry route.
pub const TELEMETRY_WATCH_PATH: &str = "/v1/telemetry/watch";

/// One decoded telemetry point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryPoint {
    /// `<deviceId>/<message>/<time ns>/<seq>`: the same for a point delivered twice.
    pub id: String,
    pub device_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The telemetry message's full name (e.g. `mir.examples.weather.v1.Weather`).
    pub message: String,
    pub time: DateTime<Utc>,
    /// The SDK's per-device sequence number (0 when unknown).
    #[serde(default)]
    pub seq: u64,
    /// Field name (nested fields flattened with dots) -> value.
    pub values: BTreeMap<String, FieldValue>,
    /// Set, to the size of the point's document, when the values were left out because
    /// the document was over the bus's entry limit (the stored point keeps them:
    /// `GET /v1/telemetry/query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_bytes: Option<usize>,
}

impl TelemetryPoint {
    pub fn new(record: &TelemetryRecord, labels: BTreeMap<String, String>) -> Self {
        Self {
            id: format!(
                "{}/{}/{}/{}",
                record.device_id, record.measure, record.time_ns, record.seq
            ),
            device_id: record.device_id.clone(),
            name: record.name.clone(),
            namespace: record.namespace.clone(),
            labels,
            message: record.measure.to_string(),
            time: DateTime::from_timestamp_nanos(record.time_ns),
            seq: record.seq,
            values: record
                .values
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            truncated_bytes: None,
        }
    }
}

/// Which points a watcher wants; everything optional, all must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryFilter {
    pub device_id: Option<String>,
    /// The message's full name.
    pub message: Option<String>,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl TelemetryFilter {
    pub fn matches(&self, p: &TelemetryPoint) -> bool {
        self.device_id.as_ref().is_none_or(|d| *d == p.device_id)
            && self.message.as_ref().is_none_or(|m| *m == p.message)
            && self.namespace.as_ref().is_none_or(|n| *n == p.namespace)
            && self.labels.iter().all(|(k, v)| p.labels.get(k) == Some(v))
    }

    /// The query string of [`TELEMETRY_WATCH_PATH`].
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        let pairs = [
            ("deviceId", &self.device_id),
            ("message", &self.message),
            ("namespace", &self.namespace),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                q.push((k, v.clone()));
            }
        }
        if let Some(labels) = labels_query(&self.labels) {
            q.push(("labels", labels));
        }
        q
    }

    /// The inverse of [`to_query`](Self::to_query); unknown parameters are ignored.
    pub fn from_query<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, DomainError> {
        let mut f = TelemetryFilter::default();
        for (k, v) in params {
            match k {
                "deviceId" => f.device_id = query_value(v),
                "message" => f.message = query_value(v),
                "namespace" => f.namespace = query_value(v),
                "labels" | "label" => parse_labels(v, &mut f.labels)?,
                _ => {}
            }
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn record() -> TelemetryRecord {
        TelemetryRecord {
            device_id: "w1".into(),
            name: "weather".into(),
            namespace: "lab".into(),
            measure: Arc::from("mir.examples.weather.v1.Weather"),
            time_ns: 1_700_000_000_123_000_000,
            seq: 7,
            tags: vec![],
            values: vec![
                (Arc::from("temperature"), FieldValue::Double(21.5)),
                (Arc::from("station.id"), FieldValue::Int(3)),
            ],
        }
    }

    #[test]
    fn a_point_carries_the_decoded_values_as_the_query_rows_do() {
        let p = TelemetryPoint::new(&record(), BTreeMap::from([("site".into(), "roof".into())]));
        assert_eq!(
            p.id,
            "w1/mir.examples.weather.v1.Weather/1700000000123000000/7"
        );
        let json = serde_json::to_value(&p).expect("json");
        assert_eq!(json["deviceId"], "w1");
        assert_eq!(json["message"], "mir.examples.weather.v1.Weather");
        assert_eq!(json["values"]["temperature"], 21.5);
        assert_eq!(json["values"]["station.id"], 3);
        assert_eq!(json["labels"]["site"], "roof");
        assert_eq!(json["time"], "2023-11-14T22:13:20.123Z");
        let back: TelemetryPoint = serde_json::from_value(json).expect("parse");
        assert_eq!(back, p);
    }

    #[test]
    fn a_telemetry_filter_round_trips_through_its_query_and_matches_every_part() {
        let f = TelemetryFilter::from_query([
            ("deviceId", "w1"),
            ("message", "mir.examples.weather.v1.Weather"),
            ("namespace", "lab"),
            ("labels", "site=roof"),
        ])
        .expect("parse");
        let q = f.to_query();
        let back =
            TelemetryFilter::from_query(q.iter().map(|(k, v)| (*k, v.as_str()))).expect("back");
        assert_eq!(back, f);
        let p = TelemetryPoint::new(&record(), BTreeMap::from([("site".into(), "roof".into())]));
        assert!(f.matches(&p));
        let other = TelemetryFilter {
            message: Some("x.Y".into()),
            ..f.clone()
        };
        assert!(!other.matches(&p));
        assert!(TelemetryFilter::from_query([("labels", "novalue")]).is_err());
    }
}
