//! The valid schemas the properties start from (the weather example of mir-proto's
//! `examples` feature, the blob schema of `mir_shared::testing`, and a schema with a
//! field of every kind), and `exercise`, which calls every read of a schema that a
//! handler makes and checks that each answers a value or a typed error.

use std::sync::LazyLock;

use mir_proto::examples::weather;
use mir_shared::schema::{MessageKind, Schema, SchemaError};
use mir_shared::telemetry::RecordContext;
use mir_shared::testing::{compile_schema, BLOB_PROTO};
use proptest::prelude::*;

/// Every field kind of proto3: scalars, an enum, nested and recursive messages, lists,
/// maps, a oneof, `optional`, well-known types, and Mir's annotations.
pub const EVERY_KIND_PROTO: &str = r#"syntax = "proto3";
package kinds.v1;
import "mir/device/v1/mir.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/wrappers.proto";

enum Mode { MODE_UNSPECIFIED = 0; MODE_ECO = 1; MODE_BOOST = 7; MODE_OFF = -3; }

message Inner { int32 depth = 1; string note = 2; Mode mode = 3; }
message Node { string label = 1; Node child = 2; repeated Node leaves = 3; }

message Sample {
  option (mir.device.v1.message_type) = MESSAGE_TYPE_TELEMETRY;
  option (mir.device.v1.meta) = { tags: [{key: "site", value: "lab"}] };
  int64 ts = 1 [(mir.device.v1.timestamp) = TIMESTAMP_TYPE_MILLI];
  double f_double = 2;
  float f_float = 3 [(mir.device.v1.field_meta) = { tags: [{key: "unit", value: "V"}] }];
  int32 f_int32 = 4;
  int64 f_int64 = 5;
  uint32 f_uint32 = 6;
  uint64 f_uint64 = 7;
  sint32 f_sint32 = 8;
  sint64 f_sint64 = 9;
  fixed32 f_fixed32 = 10;
  fixed64 f_fixed64 = 11;
  sfixed32 f_sfixed32 = 12;
  sfixed64 f_sfixed64 = 13;
  bool f_bool = 14;
  string f_string = 15;
  bytes f_bytes = 16;
  Mode mode = 17;
  Inner inner = 18;
  repeated int32 samples = 19;
  repeated string words = 20;
  repeated Inner inners = 21;
  map<string, int32> counts = 22;
  map<int64, Inner> by_id = 23;
  map<bool, string> flags = 24;
  oneof choice { string choice_text = 25; int32 choice_number = 26; Inner choice_inner = 27; }
  optional int32 maybe = 28;
  Node tree = 29;
  google.protobuf.Timestamp at = 30;
  google.protobuf.Duration took = 31;
  google.protobuf.Struct extra = 32;
  google.protobuf.Int64Value wrapped = 33;
  repeated Mode modes = 34;
}

message Fraction {
  option (mir.device.v1.message_type) = MESSAGE_TYPE_TELEMETRY;
  mir.device.v1.Timestamp ts = 1 [(mir.device.v1.timestamp) = TIMESTAMP_TYPE_FRACTION];
  uint64 big = 2;
}

message SetCmd {
  option (mir.device.v1.message_type) = MESSAGE_TYPE_TELECOMMAND;
  Mode mode = 1;
  repeated Inner steps = 2;
}

message LimitsProp {
  option (mir.device.v1.message_type) = MESSAGE_TYPE_TELECONFIG;
  map<string, double> limits = 1;
  optional string owner = 2;
}
"#;

pub static EVERY_KIND_SET: LazyLock<Vec<u8>> =
    LazyLock::new(|| compile_schema("kinds.proto", EVERY_KIND_PROTO));
pub static BLOB_SET: LazyLock<Vec<u8>> = LazyLock::new(|| compile_schema("blob.proto", BLOB_PROTO));

pub static WEATHER: LazyLock<Schema> = LazyLock::new(|| {
    Schema::from_descriptor_set(weather::DESCRIPTOR_SET).expect("the weather schema")
});
pub static EVERY_KIND: LazyLock<Schema> =
    LazyLock::new(|| Schema::from_descriptor_set(&EVERY_KIND_SET).expect("the kinds schema"));

/// The real descriptor sets, for damaging.
pub fn descriptor_sets() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(weather::DESCRIPTOR_SET.to_vec()),
        Just(mir_proto::MIR_DESCRIPTOR_SET.to_vec()),
        Just(BLOB_SET.clone()),
        Just(EVERY_KIND_SET.clone()),
    ]
}

/// (schema, message full name) of every message of the valid schemas.
pub fn schema_and_message() -> impl Strategy<Value = (&'static Schema, String)> {
    prop_oneof![Just(&*WEATHER), Just(&*EVERY_KIND)].prop_flat_map(|schema| {
        let names = schema.messages_of(MessageKind::Plain).into_iter().chain(
            [
                MessageKind::Telemetry,
                MessageKind::Command,
                MessageKind::Config,
            ]
            .into_iter()
            .flat_map(|k| schema.messages_of(k)),
        );
        let names: Vec<String> = names.collect();
        (Just(schema), proptest::sample::select(names))
    })
}

pub const ALL_KINDS: [MessageKind; 4] = [
    MessageKind::Telemetry,
    MessageKind::Command,
    MessageKind::Config,
    MessageKind::Plain,
];

/// Every read of `schema` a handler makes, with `payload` as the message bytes: each
/// answers a value or the typed error of its kind.
pub fn exercise(schema: &Schema, payload: &[u8]) -> Result<(), TestCaseError> {
    let _ = schema.package_names();
    let view = schema.view();
    prop_assert!(serde_json::to_value(&view).is_ok(), "{view:?}");
    let _ = format!("{schema:?}");
    for kind in ALL_KINDS {
        for name in schema.messages_of(kind) {
            let desc = schema.message(&name);
            prop_assert!(desc.is_ok(), "{name} is listed but not found: {desc:?}");
            let Ok(desc) = desc else { continue };
            prop_assert_eq!(schema.kind_of(&desc), kind);
            prop_assert!(schema.message_of_kind(&name, kind).is_ok());
            let template = schema.template(&desc);
            if let Err(e) = schema.json_to_proto(&desc, &template) {
                prop_assert!(matches!(e, SchemaError::InvalidJson { .. }), "{e:?}");
            }
            match schema.proto_to_json(&desc, payload) {
                Ok(json) if !name.starts_with("google.protobuf.") => {
                    prop_assert!(json.is_object(), "{name}: {json}")
                }
                Ok(_) => {}
                Err(e) => prop_assert!(matches!(e, SchemaError::Decode { .. }), "{e:?}"),
            }
            if kind == MessageKind::Telemetry {
                let plan = schema.telemetry_plan(&name);
                prop_assert!(plan.is_ok(), "{plan:?}");
                if let Ok(plan) = plan {
                    let _ = plan.field_names();
                    let _ = plan.map(payload, &context(), 1, 0);
                }
            }
        }
    }
    Ok(())
}

pub fn context() -> RecordContext<'static> {
    RecordContext {
        device_id: "fuzz",
        name: "fuzz",
        namespace: "default",
        received_at_ns: 1,
    }
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Protobuf-shaped bytes: fields numbered around the schemas' (0..=40), of any wire
/// type, with bodies of that type's shape, lengths honest or not, and nested messages.
pub fn protobuf_bytes() -> BoxedStrategy<Vec<u8>> {
    let field = |body: BoxedStrategy<Vec<u8>>| {
        (0u64..41, 0u64..8, any::<u64>(), body, any::<bool>()).prop_map(
            |(number, wire_type, n, body, honest)| {
                let mut out = Vec::new();
                varint((number << 3) | wire_type, &mut out);
                match wire_type {
                    0 => varint(n, &mut out),
                    1 => out.extend_from_slice(&n.to_le_bytes()),
                    2 => {
                        varint(if honest { body.len() as u64 } else { n % 64 }, &mut out);
                        out.extend_from_slice(&body);
                    }
                    5 => out.extend_from_slice(&n.to_le_bytes()[..4]),
                    _ => out.extend_from_slice(&body),
                }
                out
            },
        )
    };
    let leaf = proptest::collection::vec(any::<u8>(), 0..16).boxed();
    let flat = proptest::collection::vec(field(leaf), 0..6).prop_map(|f| f.concat());
    flat.prop_recursive(2, 24, 6, move |inner| {
        proptest::collection::vec(field(inner), 0..6).prop_map(|f| f.concat())
    })
    .boxed()
}
