//! Telemetry mapping: a decoded telemetry message becomes one multi-measure record.
//!
//! - time: the field annotated with `mir.device.v1.timestamp` at its precision, else the
//!   item's `sent_at_ns` (device clock when the SDK accepted it), else receive time;
//! - dimensions: deviceId, name, namespace, the message's meta tags, and field tags as
//!   `{field}.{key}`;
//! - measure name: the message full name; measures: every other field, nested fields
//!   flattened with dots.
//!
//! The work per message type (field paths, tags, timestamp field) is done once in a
//! [`TelemetryPlan`], cached by the [`Schema`].

use std::sync::Arc;

use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value as PValue,
};
use serde::{Deserialize, Serialize};

use crate::schema::Schema;

/// One measure value, typed like Timestream's multi-measure values. Integers keep
/// their exact value: every `int32`, `int64`, `uint32` and `sint`/`fixed` value is an
/// `Int`; a `uint64` above `i64::MAX` is a `Uint` (Timestream has no unsigned BIGINT,
/// so that sink stores it as VARCHAR decimal text). See docs/architecture.md, "How
/// telemetry values are stored".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Bool(bool),
    Int(i64),
    /// A `uint64` value above `i64::MAX` (smaller ones are `Int`).
    Uint(u64),
    Double(f64),
    Text(String),
}

impl FieldValue {
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Bool(_) => "BOOLEAN",
            FieldValue::Int(_) => "BIGINT",
            FieldValue::Uint(_) => "VARCHAR",
            FieldValue::Double(_) => "DOUBLE",
            FieldValue::Text(_) => "VARCHAR",
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            FieldValue::Bool(b) => (*b).into(),
            FieldValue::Int(i) => (*i).into(),
            FieldValue::Uint(u) => (*u).into(),
            FieldValue::Double(d) => serde_json::Number::from_f64(*d)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            FieldValue::Text(s) => s.clone().into(),
        }
    }
}

/// One telemetry point, ready for a sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryRecord {
    pub device_id: String,
    pub name: String,
    pub namespace: String,
    /// Message full name (Timestream measure name).
    pub measure: Arc<str>,
    /// Nanoseconds since Unix epoch.
    pub time_ns: i64,
    /// Per-device sequence number from the SDK (0 when unknown).
    pub seq: u64,
    /// Tags beyond deviceId/name/namespace.
    pub tags: Vec<(Arc<str>, Arc<str>)>,
    pub values: Vec<(Arc<str>, FieldValue)>,
}

/// Who sent the message and when it arrived.
#[derive(Debug, Clone)]
pub struct RecordContext<'a> {
    pub device_id: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub received_at_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("malformed protobuf for {message}: {error}")]
    Decode { message: String, error: String },
}

#[derive(Debug, Clone, Copy)]
enum TimeUnit {
    Sec,
    Micro,
    Milli,
    Nano,
    /// A message with `seconds` and `nanos`.
    Fraction,
}

#[derive(Debug)]
struct PlanField {
    path: Arc<str>,
    field: FieldDescriptor,
    nested: Option<Vec<PlanField>>,
}

/// How to map one telemetry message type; built once per schema and message.
#[derive(Debug)]
pub struct TelemetryPlan {
    measure: Arc<str>,
    desc: MessageDescriptor,
    timestamp: Option<(FieldDescriptor, TimeUnit)>,
    tags: Vec<(Arc<str>, Arc<str>)>,
    fields: Vec<PlanField>,
}

const MAX_NESTING: usize = 8;

impl TelemetryPlan {
    pub(crate) fn new(schema: &Schema, desc: MessageDescriptor) -> Self {
        let mut tags: Vec<(Arc<str>, Arc<str>)> = schema
            .message_tags(&desc)
            .into_iter()
            .map(|(k, v)| (Arc::from(k), Arc::from(v)))
            .collect();
        let mut timestamp = None;
        let mut fields = Vec::new();
        for field in desc.fields() {
            if timestamp.is_none() {
                if let Some(unit) = timestamp_unit(schema, &field) {
                    timestamp = Some((field, unit));
                    continue;
                }
            }
            for (k, v) in schema.field_tags(&field) {
                tags.push((Arc::from(format!("{}.{k}", field.name())), Arc::from(v)));
            }
            fields.push(plan_field(field, "", 0));
        }
        Self {
            measure: Arc::from(desc.full_name()),
            desc,
            timestamp,
            tags,
            fields,
        }
    }

    pub fn measure(&self) -> &Arc<str> {
        &self.measure
    }

    /// The message's fields as stored (top level, without the timestamp field).
    pub fn field_names(&self) -> Vec<String> {
        self.fields.iter().map(|f| f.path.to_string()).collect()
    }

    /// Decodes `payload` and maps it. `fallback_time_ns` is used when the message has
    /// no annotated timestamp (or it is zero).
    pub fn map(
        &self,
        payload: &[u8],
        ctx: &RecordContext<'_>,
        fallback_time_ns: i64,
        seq: u64,
    ) -> Result<TelemetryRecord, MapError> {
        let msg =
            DynamicMessage::decode(self.desc.clone(), payload).map_err(|e| MapError::Decode {
                message: self.measure.to_string(),
                error: e.to_string(),
            })?;
        let mut values = Vec::with_capacity(self.fields.len());
        collect(&msg, &self.fields, &mut values);
        let time_ns = self
            .timestamp
            .as_ref()
            .and_then(|(f, unit)| time_of(&msg.get_field(f), *unit))
            .filter(|t| *t != 0)
            .unwrap_or(fallback_time_ns);
        Ok(TelemetryRecord {
            device_id: ctx.device_id.to_string(),
            name: ctx.name.to_string(),
            namespace: ctx.namespace.to_string(),
            measure: self.measure.clone(),
            time_ns,
            seq,
            tags: self.tags.clone(),
            values,
        })
    }
}

fn timestamp_unit(schema: &Schema, field: &FieldDescriptor) -> Option<TimeUnit> {
    let annotated = schema.timestamp_annotation(field)?;
    if field.is_list() || field.is_map() {
        return None;
    }
    match field.kind() {
        Kind::Message(_) => Some(TimeUnit::Fraction),
        Kind::Int64
        | Kind::Sint64
        | Kind::Sfixed64
        | Kind::Uint64
        | Kind::Fixed64
        | Kind::Int32
        | Kind::Uint32
        | Kind::Sint32
        | Kind::Fixed32
        | Kind::Sfixed32 => Some(match annotated {
            1 => TimeUnit::Sec,
            2 => TimeUnit::Micro,
            3 => TimeUnit::Milli,
            _ => TimeUnit::Nano,
        }),
        _ => None,
    }
}

fn plan_field(field: FieldDescriptor, prefix: &str, depth: usize) -> PlanField {
    let path: Arc<str> = Arc::from(format!("{prefix}{}", field.name()));
    let nested = match field.kind() {
        Kind::Message(m)
            if !field.is_list()
                && !field.is_map()
                && depth < MAX_NESTING
                && !is_time_message(&m) =>
        {
            let child_prefix = format!("{path}.");
            Some(
                m.fields()
                    .map(|f| plan_field(f, &child_prefix, depth + 1))
                    .collect(),
            )
        }
        _ => None,
    };
    PlanField {
        path,
        field,
        nested,
    }
}

fn is_time_message(m: &MessageDescriptor) -> bool {
    matches!(
        m.full_name(),
        "google.protobuf.Timestamp" | "mir.device.v1.Timestamp"
    )
}

fn collect(msg: &DynamicMessage, fields: &[PlanField], out: &mut Vec<(Arc<str>, FieldValue)>) {
    for pf in fields {
        let value = msg.get_field(&pf.field);
        match (&pf.nested, value.as_ref()) {
            (Some(children), PValue::Message(child)) => collect(child, children, out),
            (_, v) => {
                if let Some(fv) = scalar(v, &pf.field) {
                    out.push((pf.path.clone(), fv));
                }
            }
        }
    }
}

fn scalar(v: &PValue, field: &FieldDescriptor) -> Option<FieldValue> {
    Some(match v {
        PValue::Bool(b) => FieldValue::Bool(*b),
        PValue::I32(i) => FieldValue::Int((*i).into()),
        PValue::I64(i) => FieldValue::Int(*i),
        PValue::U32(u) => FieldValue::Int((*u).into()),
        PValue::U64(u) => match i64::try_from(*u) {
            Ok(i) => FieldValue::Int(i),
            Err(_) => FieldValue::Uint(*u),
        },
        PValue::F32(f) => FieldValue::Double((*f).into()),
        PValue::F64(f) => FieldValue::Double(*f),
        PValue::String(s) => FieldValue::Text(s.clone()),
        PValue::Bytes(b) => {
            use base64::Engine;
            FieldValue::Text(base64::engine::general_purpose::STANDARD.encode(b))
        }
        PValue::EnumNumber(n) => match field.kind() {
            Kind::Enum(e) => FieldValue::Text(
                e.get_value(*n)
                    .map(|v| v.name().to_string())
                    .unwrap_or_else(|| n.to_string()),
            ),
            _ => FieldValue::Int((*n).into()),
        },
        PValue::Message(m) if is_time_message(&m.descriptor()) => {
            FieldValue::Int(time_of(v, TimeUnit::Fraction)?)
        }
        PValue::Message(m) => FieldValue::Text(crate::schema::message_to_json(m).ok()?.to_string()),
        PValue::List(_) | PValue::Map(_) => {
            // Lists and maps are kept whole, as JSON text.
            let json = list_or_map_json(v, field)?;
            FieldValue::Text(json)
        }
    })
}

fn list_or_map_json(v: &PValue, field: &FieldDescriptor) -> Option<String> {
    let parent = field.parent_message();
    let mut holder = DynamicMessage::new(parent.clone());
    holder.try_set_field(field, v.clone()).ok()?;
    let json = crate::schema::message_to_json(&holder).ok()?;
    Some(json.get(field.json_name())?.to_string())
}

fn time_of(v: &PValue, unit: TimeUnit) -> Option<i64> {
    let n: i64 = match v {
        PValue::I64(i) => *i,
        PValue::I32(i) => (*i).into(),
        PValue::U64(u) => i64::try_from(*u).ok()?,
        PValue::U32(u) => (*u).into(),
        PValue::Message(m) => {
            let secs = m.get_field_by_name("seconds")?.as_i64()?;
            let nanos = i64::from(m.get_field_by_name("nanos")?.as_i32()?);
            return secs.checked_mul(1_000_000_000)?.checked_add(nanos);
        }
        _ => return None,
    };
    match unit {
        TimeUnit::Sec => n.checked_mul(1_000_000_000),
        TimeUnit::Milli => n.checked_mul(1_000_000),
        TimeUnit::Micro => n.checked_mul(1_000),
        TimeUnit::Nano | TimeUnit::Fraction => Some(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_proto::examples::weather;
    use prost::Message;

    fn ctx() -> RecordContext<'static> {
        RecordContext {
            device_id: "w1",
            name: "w1",
            namespace: "default",
            received_at_ns: 99,
        }
    }

    #[test]
    fn a_weather_reading_becomes_one_record_with_its_own_time_and_tags() {
        let schema = Schema::from_descriptor_set(weather::DESCRIPTOR_SET).expect("schema");
        let plan = schema.telemetry_plan("schema.v1.Env").expect("plan");
        let env = weather::Env {
            ts: 1_700_000_000_123_456_789,
            temperature: 21,
            pressure: 1013,
            humidity: 40,
            wind_speed: 3.5,
            raining: true,
            station: "roof".into(),
        };
        let rec = plan.map(&env.encode_to_vec(), &ctx(), 5, 7).expect("maps");
        assert_eq!(rec.time_ns, 1_700_000_000_123_456_789);
        assert_eq!(&*rec.measure, "schema.v1.Env");
        assert_eq!(rec.seq, 7);
        let names: Vec<&str> = rec.values.iter().map(|(k, _)| &**k).collect();
        assert_eq!(
            names,
            [
                "temperature",
                "pressure",
                "humidity",
                "wind_speed",
                "raining",
                "station"
            ]
        );
        assert_eq!(rec.values[0].1, FieldValue::Int(21));
        assert_eq!(rec.values[3].1, FieldValue::Double(3.5));
        let tags: Vec<(String, String)> = rec
            .tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(tags.contains(&("site".into(), "roof".into())));
        assert!(tags.contains(&("temperature.unit".into(), "celsius".into())));
    }

    #[test]
    fn a_zero_timestamp_falls_back_to_the_given_time() {
        let schema = Schema::from_descriptor_set(weather::DESCRIPTOR_SET).expect("schema");
        let plan = schema.telemetry_plan("schema.v1.Env").expect("plan");
        let rec = plan
            .map(&weather::Env::default().encode_to_vec(), &ctx(), 42, 0)
            .expect("maps");
        assert_eq!(rec.time_ns, 42);
    }

    #[test]
    fn malformed_bytes_are_a_decode_error() {
        let schema = Schema::from_descriptor_set(weather::DESCRIPTOR_SET).expect("schema");
        let plan = schema.telemetry_plan("schema.v1.Env").expect("plan");
        assert!(matches!(
            plan.map(&[0x08], &ctx(), 1, 0),
            Err(MapError::Decode { .. })
        ));
    }
}
