//! Payloads for valid schemas (the weather example and the every-kind schema of
//! `fixtures`): any bytes give JSON or `SchemaError::Decode` and a telemetry record or
//! `MapError::Decode`, never a panic; decoded JSON survives protobuf; any JSON gives
//! bytes or `SchemaError::InvalidJson`; and a JSON object the schema accepts, generated
//! from the message's descriptor, decodes back to the same JSON (proto3 JSON: 64-bit
//! integers as strings, enums by name, defaults filled in).

use std::sync::LazyLock;

use base64::Engine;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

use mir_shared::schema::{MessageKind, Schema, SchemaError};
use mir_shared::telemetry::MapError;

use crate::fixtures::{
    context, protobuf_bytes, schema_and_message, ALL_KINDS, EVERY_KIND, WEATHER,
};
use crate::{config, json, CI_CASES};

/// Field names (proto and JSON) and enum value names of the valid schemas.
static WORDS: LazyLock<&'static [&'static str]> = LazyLock::new(|| {
    let mut words = Vec::new();
    for schema in [&*WEATHER, &*EVERY_KIND] {
        for kind in ALL_KINDS {
            for name in schema.messages_of(kind) {
                let Ok(desc) = schema.message(&name) else {
                    continue;
                };
                for f in desc.fields() {
                    words.push(f.name().to_string());
                    words.push(f.json_name().to_string());
                    if let Kind::Enum(e) = f.kind() {
                        words.extend(e.values().map(|v| v.name().to_string()));
                    }
                }
            }
        }
    }
    words.extend(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "1970-01-01T00:00:00Z",
            "1.5s",
            "AAEC",
        ]
        .map(String::from),
    );
    words.sort();
    words.dedup();
    let words: Vec<&'static str> = words.into_iter().map(|w| &*w.leak()).collect();
    words.leak()
});

fn is_well_known(name: &str) -> bool {
    name.starts_with("google.protobuf.")
}

/// Decodes `bytes` as `name`; decoded JSON of a Mir message survives protobuf.
fn decodes_to_json_that_survives(
    schema: &Schema,
    name: &str,
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    let desc = schema.message(name);
    prop_assert!(desc.is_ok());
    let Ok(desc) = desc else { return Ok(()) };
    match schema.proto_to_json(&desc, bytes) {
        Ok(json) if !is_well_known(name) => {
            let again = schema.json_to_proto(&desc, &json);
            prop_assert!(again.is_ok(), "{name}: {json} is refused: {again:?}");
            if let Ok(again) = again {
                prop_assert_eq!(schema.proto_to_json(&desc, &again), Ok(json));
            }
        }
        Ok(_) => {}
        Err(e) => prop_assert!(matches!(e, SchemaError::Decode { .. }), "{e:?}"),
    }
    if schema.kind_of(&desc) == MessageKind::Telemetry {
        let plan = schema.telemetry_plan(name);
        prop_assert!(plan.is_ok());
        if let Ok(plan) = plan {
            match plan.map(bytes, &context(), 7, 3) {
                Ok(record) => {
                    prop_assert_eq!(&*record.measure, name);
                    prop_assert_eq!(record.seq, 3);
                    let fields = plan.field_names();
                    for (path, _) in &record.values {
                        let top = path.split('.').next().unwrap_or_default();
                        prop_assert!(fields.iter().any(|f| f == top), "{path} not in {fields:?}");
                    }
                }
                Err(e) => prop_assert!(matches!(e, MapError::Decode { .. }), "{e:?}"),
            }
        }
    }
    Ok(())
}

// ---- JSON the schema accepts, with the JSON it must decode back to ----

/// (what is sent, what must come back) for one value of `kind`.
type Pair = (Value, Value);

fn same(v: Value) -> Pair {
    (v.clone(), v)
}

/// A JSON integer, sometimes written as a string (proto3 JSON accepts both).
fn integer<T: Into<Value> + ToString + std::fmt::Debug + Clone + 'static>(
    n: impl Strategy<Value = T> + 'static,
    stringify: bool,
) -> BoxedStrategy<Pair> {
    (n, any::<bool>())
        .prop_map(move |(n, as_string)| {
            let sent = if as_string {
                Value::String(n.to_string())
            } else {
                n.clone().into()
            };
            let back = if stringify {
                Value::String(n.to_string())
            } else {
                n.into()
            };
            (sent, back)
        })
        .boxed()
}

fn float_pair(f: f64) -> Pair {
    if f.is_nan() {
        same("NaN".into())
    } else if f.is_infinite() {
        same(if f > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        same(f.into())
    }
}

fn scalar(kind: &Kind, depth: usize) -> BoxedStrategy<Pair> {
    match kind {
        Kind::Double => any::<f64>().prop_map(float_pair).boxed(),
        Kind::Float => any::<f32>().prop_map(|f| float_pair(f.into())).boxed(),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => integer(any::<i32>(), false),
        Kind::Uint32 | Kind::Fixed32 => integer(any::<u32>(), false),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => integer(any::<i64>(), true),
        Kind::Uint64 | Kind::Fixed64 => integer(any::<u64>(), true),
        Kind::Bool => any::<bool>().prop_map(|b| same(b.into())).boxed(),
        Kind::String => any::<String>().prop_map(|s| same(s.into())).boxed(),
        Kind::Bytes => (vec(any::<u8>(), 0..24), any::<bool>())
            .prop_map(|(b, url_safe)| {
                let back = base64::engine::general_purpose::STANDARD.encode(&b);
                let sent = if url_safe {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&b)
                } else {
                    back.clone()
                };
                (sent.into(), back.into())
            })
            .boxed(),
        Kind::Enum(e) => {
            let known: Vec<(String, i32)> = e
                .values()
                .map(|v| (v.name().to_string(), v.number()))
                .collect();
            let numbers: Vec<i32> = known.iter().map(|(_, n)| *n).collect();
            prop_oneof![
                3 => proptest::sample::select(known).prop_flat_map(|(name, number)| {
                    prop_oneof![Just((Value::from(name.clone()), Value::from(name.clone()))),
                        Just((Value::from(number), Value::from(name)))]
                }),
                1 => any::<i32>()
                    .prop_filter("an unknown number", move |n| !numbers.contains(n))
                    .prop_map(|n| same(n.into())),
            ]
            .boxed()
        }
        Kind::Message(m) => message(m, depth + 1),
    }
}

/// What a message with no field set decodes to.
fn defaults(desc: &MessageDescriptor) -> Map<String, Value> {
    desc.fields()
        .filter(|f| !f.supports_presence())
        .map(|f| (f.json_name().to_string(), default_of(&f)))
        .collect()
}

fn default_of(f: &FieldDescriptor) -> Value {
    if f.is_list() {
        return Value::Array(Vec::new());
    }
    if f.is_map() {
        return Value::Object(Map::new());
    }
    match f.kind() {
        Kind::Double | Kind::Float => 0.0.into(),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => "0".into(),
        Kind::Bool => false.into(),
        Kind::String | Kind::Bytes => "".into(),
        Kind::Enum(e) => e.get_value(0).map_or(0.into(), |v| v.name().into()),
        _ => 0.into(),
    }
}

fn map_key(kind: &Kind) -> BoxedStrategy<String> {
    match kind {
        Kind::Bool => any::<bool>().prop_map(|b| b.to_string()).boxed(),
        Kind::String => any::<String>().boxed(),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            any::<i32>().prop_map(|n| n.to_string()).boxed()
        }
        Kind::Uint32 | Kind::Fixed32 => any::<u32>().prop_map(|n| n.to_string()).boxed(),
        Kind::Uint64 | Kind::Fixed64 => any::<u64>().prop_map(|n| n.to_string()).boxed(),
        _ => any::<i64>().prop_map(|n| n.to_string()).boxed(),
    }
}

/// One field's (name sent, value sent, value back), by its JSON or its proto name.
fn field_value(f: &FieldDescriptor, depth: usize) -> BoxedStrategy<(String, Value, Value)> {
    let value: BoxedStrategy<Pair> = if f.is_map() {
        let Kind::Message(entry) = f.kind() else {
            unreachable!("a map is a message")
        };
        let key = map_key(&entry.map_entry_key_field().kind());
        let val = scalar(&entry.map_entry_value_field().kind(), depth);
        btree_map(key, val, 0..4)
            .prop_map(|m| {
                let sent = m.iter().map(|(k, (s, _))| (k.clone(), s.clone())).collect();
                let back = m.into_iter().map(|(k, (_, b))| (k, b)).collect();
                (Value::Object(sent), Value::Object(back))
            })
            .boxed()
    } else if f.is_list() {
        vec(scalar(&f.kind(), depth), 0..4)
            .prop_map(|items| {
                let (sent, back) = items.into_iter().unzip();
                (Value::Array(sent), Value::Array(back))
            })
            .boxed()
    } else {
        scalar(&f.kind(), depth)
    };
    let names = (f.json_name().to_string(), f.name().to_string());
    (value, any::<bool>())
        .prop_map(move |((sent, back), by_json_name)| {
            let name = if by_json_name {
                names.0.clone()
            } else {
                names.1.clone()
            };
            (name, sent, back)
        })
        .boxed()
}

/// A JSON object for `desc`: any subset of its fields (at most one of each oneof),
/// none of the well-known types, nesting bounded.
fn message(desc: &MessageDescriptor, depth: usize) -> BoxedStrategy<Pair> {
    let base = defaults(desc);
    let fields: Vec<FieldDescriptor> = desc
        .fields()
        .filter(|f| depth < 3 || !f.supports_presence())
        .filter(|f| !matches!(f.kind(), Kind::Message(m) if is_well_known(m.full_name()) && !f.is_map()))
        .filter(|f| !(depth >= 3 && matches!(f.kind(), Kind::Message(_))))
        .collect();
    let picks: Vec<BoxedStrategy<Option<(String, Value, Value)>>> = fields
        .iter()
        .map(|f| proptest::option::of(field_value(f, depth)).boxed())
        .collect();
    let oneofs: Vec<Vec<String>> = desc
        .oneofs()
        .filter(|o| !o.is_synthetic())
        .map(|o| o.fields().map(|f| f.json_name().to_string()).collect())
        .collect();
    let json_names: Vec<(String, String)> = fields
        .iter()
        .map(|f| (f.name().to_string(), f.json_name().to_string()))
        .collect();
    picks
        .prop_map(move |picked| {
            let (mut sent, mut back) = (Map::new(), base.clone());
            let mut taken: Vec<&Vec<String>> = Vec::new();
            for (name, s, b) in picked.into_iter().flatten() {
                let json_name = json_names
                    .iter()
                    .find(|(p, j)| *p == name || *j == name)
                    .map_or(name.clone(), |(_, j)| j.clone());
                if let Some(group) = oneofs.iter().find(|g| g.contains(&json_name)) {
                    if taken.contains(&group) {
                        continue;
                    }
                    taken.push(group);
                }
                sent.insert(name, s);
                back.insert(json_name, b);
            }
            (Value::Object(sent), Value::Object(back))
        })
        .boxed()
}

fn schema_message_and_json() -> impl Strategy<Value = (&'static Schema, String, Value, Value)> {
    prop_oneof![Just(&*WEATHER), Just(&*EVERY_KIND)]
        .prop_flat_map(|schema| {
            let names: Vec<String> = ALL_KINDS
                .into_iter()
                .flat_map(|kind| schema.messages_of(kind))
                .filter(|name| !is_well_known(name))
                .collect();
            (Just(schema), proptest::sample::select(names))
        })
        .prop_flat_map(|(schema, name)| {
            let desc = schema.message(&name).expect("a listed message");
            (Just(schema), Just(name), message(&desc, 0))
        })
        .prop_map(|(schema, name, (sent, back))| (schema, name, sent, back))
}

proptest! {
    #![proptest_config(config(CI_CASES))]

    #[test]
    fn arbitrary_payloads_decode_to_json_or_a_decode_error(
        (schema, name) in schema_and_message(),
        bytes in vec(any::<u8>(), 0..128),
    ) {
        decodes_to_json_that_survives(schema, &name, &bytes)?;
    }

    #[test]
    fn protobuf_shaped_payloads_decode_to_json_or_a_decode_error(
        (schema, name) in schema_and_message(),
        bytes in protobuf_bytes(),
    ) {
        decodes_to_json_that_survives(schema, &name, &bytes)?;
    }

    #[test]
    fn arbitrary_json_encodes_or_names_what_is_invalid(
        (schema, name) in schema_and_message(),
        payload in prop_oneof![json::object_with(*WORDS), json::value_with(*WORDS)],
    ) {
        let desc = schema.message(&name).expect("a listed message");
        match schema.json_to_proto(&desc, &payload) {
            Ok(bytes) => {
                let back = schema.proto_to_json(&desc, &bytes);
                prop_assert!(back.is_ok(), "{name}: {payload} encodes but does not decode: {back:?}");
            }
            Err(e) => prop_assert!(matches!(e, SchemaError::InvalidJson { .. }), "{e:?}"),
        }
    }

    #[test]
    fn json_the_schema_accepts_decodes_back_to_the_same_json(
        (schema, name, sent, back) in schema_message_and_json(),
    ) {
        let desc = schema.message(&name).expect("a listed message");
        let bytes = schema.json_to_proto(&desc, &sent);
        prop_assert!(bytes.is_ok(), "{name}: {sent} is refused: {bytes:?}");
        if let Ok(bytes) = bytes {
            prop_assert_eq!(schema.proto_to_json(&desc, &bytes), Ok(back));
        }
    }
}
