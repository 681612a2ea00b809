//! Telemetry mapping on a schema compiled at test time: every timestamp precision of
//! Mir's annotation, nested messages flattened with dots, enums, lists and tags, and
//! 64-bit integers kept exact.

use mir_shared::{
    schema::Schema,
    telemetry::{FieldValue, RecordContext},
};
use serde_json::json;

const SCHEMA: &str = r#"
syntax = "proto3";
package precision.v1;
import "mir/device/v1/mir.proto";
import "google/protobuf/timestamp.proto";

message Sec    { option (mir.device.v1.message_type) = MESSAGE_TYPE_TELEMETRY; int64 ts = 1 [(mir.device.v1.timestamp) = TIMESTAMP_TYPE_SEC];   double v = 2; }
message Milli  { option (mir.device.v1.message_type) = MESSAGE_TYPE_TELEMETRY; int64 ts = 1 [(mir.device.v1.timestamp) = TIMESTAMP_TYPE_MILLI]; double v = 2; }
message Micro  { option (mir.device.v1.message_type) = MESSAGE_TYPE_TELEMETRY; int64 ts = 1 [(mir.device.v1.timestamp) = TIMESTAMP_TYPE_MICRO]; double v = 2; }
message Nano   { option (mir.device.v1.message_type) = MESSAGE_TYPE_TELEMETRY; int64 ts = 1 [(mir.device.v1.timestamp) = TIMESTAMP_TYPE_NANO];  double v = 2; }
message Frac   { option (mir.device.v1.message_type) = MESSAGE_TYPE_TELEMETRY; mir.device.v1.Timestamp ts = 1 [(mir.device.v1.timestamp) = TIMESTAMP_TYPE_FRACTION]; double v = 2; }
message Google { option (mir.device.v1.message_type) = MESSAGE_TYPE_TELEMETRY; google.protobuf.Timestamp ts = 1 [(mir.device.v1.timestamp) = TIMESTAMP_TYPE_NANO]; double v = 2; }
message NoTime { option (mir.device.v1.message_type) = MESSAGE_TYPE_TELEMETRY; double v = 1; }

enum Mode { MODE_UNSPECIFIED = 0; MODE_ECO = 1; }
message Position { double lat = 1; double lon = 2; Inner inner = 3; }
message Inner { int32 depth = 1; }
message Nested {
  option (mir.device.v1.message_type) = MESSAGE_TYPE_TELEMETRY;
  option (mir.device.v1.meta) = { tags: [{key: "fleet", value: "north"}] };
  int64 ts = 1 [(mir.device.v1.timestamp) = TIMESTAMP_TYPE_MILLI];
  Position pos = 2;
  Mode mode = 3;
  repeated int32 samples = 4;
  uint64 big = 5;
  float ratio = 6 [(mir.device.v1.field_meta) = { tags: [{key: "unit", value: "percent"}] }];
}
"#;

fn schema() -> Schema {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("mir/device/v1")).expect("mkdir");
    std::fs::write(
        dir.path().join("mir/device/v1/mir.proto"),
        mir_proto::MIR_DEVICE_PROTO,
    )
    .expect("write");
    std::fs::write(dir.path().join("precision.proto"), SCHEMA).expect("write");
    let mut compiler = protox::Compiler::new([dir.path()]).expect("compiler");
    compiler.include_imports(true);
    compiler.open_file("precision.proto").expect("compiles");
    Schema::from_descriptor_set(&compiler.encode_file_descriptor_set()).expect("schema")
}

const CTX: RecordContext<'static> = RecordContext {
    device_id: "d",
    name: "d",
    namespace: "default",
    received_at_ns: 7,
};

fn time_of(schema: &Schema, name: &str, payload: serde_json::Value) -> i64 {
    let desc = schema.message(name).expect("message");
    let bytes = schema.json_to_proto(&desc, &payload).expect("encodes");
    schema
        .telemetry_plan(name)
        .expect("plan")
        .map(&bytes, &CTX, 99, 0)
        .expect("maps")
        .time_ns
}

#[test]
fn every_timestamp_precision_becomes_nanoseconds() {
    let s = schema();
    assert_eq!(
        time_of(&s, "precision.v1.Sec", json!({"ts": 1_700_000_000})),
        1_700_000_000_000_000_000
    );
    assert_eq!(
        time_of(
            &s,
            "precision.v1.Milli",
            json!({"ts": 1_700_000_000_123i64})
        ),
        1_700_000_000_123_000_000
    );
    assert_eq!(
        time_of(
            &s,
            "precision.v1.Micro",
            json!({"ts": 1_700_000_000_123_456i64})
        ),
        1_700_000_000_123_456_000
    );
    assert_eq!(
        time_of(
            &s,
            "precision.v1.Nano",
            json!({"ts": "1700000000123456789"})
        ),
        1_700_000_000_123_456_789
    );
    assert_eq!(
        time_of(
            &s,
            "precision.v1.Frac",
            json!({"ts": {"seconds": 1_700_000_000, "nanos": 5}})
        ),
        1_700_000_000_000_000_005
    );
    assert_eq!(
        time_of(
            &s,
            "precision.v1.Google",
            json!({"ts": "2023-11-14T22:13:20.000000005Z"})
        ),
        1_700_000_000_000_000_005
    );
}

#[test]
fn a_message_without_timestamp_uses_the_fallback_time_and_keeps_its_fields() {
    let s = schema();
    assert_eq!(time_of(&s, "precision.v1.NoTime", json!({"v": 1.5})), 99);
    let desc = s.message("precision.v1.Sec").expect("msg");
    let bytes = s
        .json_to_proto(&desc, &json!({"ts": 0, "v": 2.0}))
        .expect("encodes");
    let rec = s
        .telemetry_plan("precision.v1.Sec")
        .expect("plan")
        .map(&bytes, &CTX, 99, 0)
        .expect("maps");
    assert_eq!(rec.time_ns, 99, "a zero timestamp is treated as absent");
    assert_eq!(rec.values, vec![("v".into(), FieldValue::Double(2.0))]);
}

#[test]
fn nested_fields_are_flattened_with_dots_and_tags_become_dimensions() {
    let s = schema();
    let desc = s.message("precision.v1.Nested").expect("msg");
    let payload = json!({"ts": 1000, "pos": {"lat": 45.5, "lon": -73.5, "inner": {"depth": 3}}, "mode": "MODE_ECO", "samples": [1, 2, 3], "big": "18446744073709551615", "ratio": 0.5});
    let bytes = s.json_to_proto(&desc, &payload).expect("encodes");
    let rec = s
        .telemetry_plan("precision.v1.Nested")
        .expect("plan")
        .map(&bytes, &CTX, 0, 4)
        .expect("maps");
    let values: Vec<(String, FieldValue)> = rec
        .values
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    assert_eq!(
        values,
        vec![
            ("pos.lat".to_string(), FieldValue::Double(45.5)),
            ("pos.lon".to_string(), FieldValue::Double(-73.5)),
            ("pos.inner.depth".to_string(), FieldValue::Int(3)),
            ("mode".to_string(), FieldValue::Text("MODE_ECO".into())),
            ("samples".to_string(), FieldValue::Text("[1,2,3]".into())),
            ("big".to_string(), FieldValue::Uint(u64::MAX)),
            ("ratio".to_string(), FieldValue::Double(0.5)),
        ]
    );
    let tags: Vec<(String, String)> = rec
        .tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        tags,
        vec![
            ("fleet".to_string(), "north".to_string()),
            ("ratio.unit".to_string(), "percent".to_string())
        ]
    );
    assert_eq!(rec.time_ns, 1_000_000_000);
}

#[test]
fn sixty_four_bit_integers_keep_their_exact_value() {
    let s = schema();
    let desc = s.message("precision.v1.Nested").expect("msg");
    for (big, want) in [
        ("9223372036854775808", FieldValue::Uint(1 << 63)),
        ("9223372036854775807", FieldValue::Int(i64::MAX)),
        ("18446744073709551615", FieldValue::Uint(u64::MAX)),
    ] {
        let bytes = s
            .json_to_proto(&desc, &json!({"ts": 1000, "big": big}))
            .expect("encodes");
        let rec = s
            .telemetry_plan("precision.v1.Nested")
            .expect("plan")
            .map(&bytes, &CTX, 0, 1)
            .expect("maps");
        let value = rec
            .values
            .iter()
            .find(|(k, _)| &**k == "big")
            .map(|(_, v)| v.clone());
        assert_eq!(value, Some(want.clone()));
        assert_eq!(want.to_json().to_string(), big, "JSON keeps every digit");
    }
}
