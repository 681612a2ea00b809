//! Tests of the schema registry.
use super::*;
use mir_proto::examples::weather;
use serde_json::json;

fn schema() -> Schema {
    Schema::from_descriptor_set(weather::DESCRIPTOR_SET).expect("weather schema")
}

#[test]
fn mir_annotations_classify_messages() {
    let s = schema();
    assert_eq!(s.messages_of(MessageKind::Telemetry), ["schema.v1.Env"]);
    assert_eq!(
        s.messages_of(MessageKind::Command),
        ["schema.v1.ActivateHVACCmd"]
    );
    assert_eq!(
        s.messages_of(MessageKind::Config),
        ["schema.v1.DataRateProp"]
    );
    assert_eq!(
        s.package_names(),
        ["google.protobuf", "mir.device.v1", "schema.v1"]
    );
}

#[test]
fn json_round_trips_through_protobuf_with_proto3_names() {
    let s = schema();
    let d = s
        .message_of_kind("schema.v1.ActivateHVACCmd", MessageKind::Command)
        .expect("cmd");
    let bytes = s
        .json_to_proto(&d, &json!({"durationSec": 5}))
        .expect("encodes");
    assert_eq!(
        s.proto_to_json(&d, &bytes).expect("decodes"),
        json!({"durationSec": 5})
    );
    let bytes = s
        .json_to_proto(&d, &json!({"duration_sec": 7}))
        .expect("proto names too");
    assert_eq!(
        s.proto_to_json(&d, &bytes).expect("decodes"),
        json!({"durationSec": 7})
    );
}

#[test]
fn json_that_does_not_match_names_the_field() {
    let s = schema();
    let d = s.message("schema.v1.ActivateHVACCmd").expect("cmd");
    let err = s
        .json_to_proto(&d, &json!({"durationSec": "five"}))
        .expect_err("bad type");
    assert!(err.to_string().contains("durationSec"), "{err}");
    let err = s
        .json_to_proto(&d, &json!({"duration": 5}))
        .expect_err("unknown");
    assert!(
        err.to_string().contains("duration") && err.to_string().contains("durationSec"),
        "{err}"
    );
    let err = s
        .json_to_proto(&d, &json!({"durationSec": 1e12}))
        .expect_err("range");
    assert!(err.to_string().contains("durationSec"), "{err}");
    let err = s.json_to_proto(&d, &json!([1])).expect_err("not object");
    assert!(err.to_string().contains("object"), "{err}");
}

#[test]
fn unknown_names_list_the_known_messages_of_that_kind() {
    let s = schema();
    let err = s
        .message_of_kind("schema.v1.Nope", MessageKind::Command)
        .expect_err("unknown");
    assert!(
        err.to_string().contains("schema.v1.ActivateHVACCmd"),
        "{err}"
    );
    let err = s
        .message_of_kind("schema.v1.Env", MessageKind::Command)
        .expect_err("wrong kind");
    assert!(matches!(err, SchemaError::WrongKind { .. }));
}

#[test]
fn templates_show_every_field_like_mirs_j_flag() {
    let s = schema();
    let d = s.message("schema.v1.Env").expect("env");
    let t = s.template(&d);
    assert_eq!(t["temperature"], json!(0));
    assert_eq!(t["windSpeed"], json!(0.0));
    assert_eq!(t["raining"], json!(false));
    assert_eq!(t["station"], json!(""));
    let bytes = s.json_to_proto(&d, &t).expect("a template is valid input");
    assert!(bytes.is_empty());
}

#[test]
fn malformed_protobuf_is_an_error_not_a_panic() {
    let s = schema();
    let d = s.message("schema.v1.Env").expect("env");
    assert!(matches!(
        s.proto_to_json(&d, &[0xff, 0xff, 0xff]),
        Err(SchemaError::Decode { .. })
    ));
    assert!(matches!(
        Schema::from_descriptor_set(b"\x0a\xff garbage"),
        Err(SchemaError::InvalidDescriptor(_))
    ));
}

#[test]
fn a_map_entry_without_its_key_field_is_an_invalid_descriptor_not_a_panic() {
    use prost::Message as _;
    use prost_types::{
        field_descriptor_proto::{Label, Type},
        DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
        MessageOptions,
    };
    let field = |name: &str, number: i32, ty: Type, type_name: Option<&str>, label: Label| {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            label: Some(label as i32),
            r#type: Some(ty as i32),
            type_name: type_name.map(str::to_string),
            json_name: Some(name.into()),
            ..Default::default()
        }
    };
    // `map<string, int32> counts = 1;` whose entry's key field is numbered 3, not 1.
    let entry = DescriptorProto {
        name: Some("CountsEntry".into()),
        field: vec![
            field("key", 3, Type::String, None, Label::Optional),
            field("value", 2, Type::Int32, None, Label::Optional),
        ],
        options: Some(MessageOptions {
            map_entry: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let holder = DescriptorProto {
        name: Some("Holder".into()),
        field: vec![field(
            "counts",
            1,
            Type::Message,
            Some(".m.v1.Holder.CountsEntry"),
            Label::Repeated,
        )],
        nested_type: vec![entry],
        ..Default::default()
    };
    let set = FileDescriptorSet {
        file: vec![FileDescriptorProto {
            name: Some("m.proto".into()),
            package: Some("m.v1".into()),
            message_type: vec![holder],
            syntax: Some("proto3".into()),
            ..Default::default()
        }],
    };
    let Err(SchemaError::InvalidDescriptor(why)) =
        Schema::from_descriptor_set(&set.encode_to_vec())
    else {
        panic!("a broken map entry must be refused");
    };
    assert!(why.contains("CountsEntry"), "{why}");
}

#[test]
fn compressed_schemas_round_trip_and_bombs_are_refused() {
    let packed = compress(weather::DESCRIPTOR_SET);
    assert_eq!(
        decompress(&packed).expect("inflates"),
        weather::DESCRIPTOR_SET
    );
    let bomb = compress(&vec![0u8; MAX_SCHEMA_BYTES + 10]);
    assert_eq!(decompress(&bomb), Err(SchemaError::TooLarge));
    assert!(matches!(
        decompress(b"not zlib"),
        Err(SchemaError::Decompress(_))
    ));
}

const VIEWED_PROTO: &str = r#"syntax = "proto3";
package view.v1;
import "mir/device/v1/mir.proto";
import "google/protobuf/timestamp.proto";

enum Mode { MODE_UNSPECIFIED = 0; MODE_ECO = 1; MODE_OFF = -3; }
message Step { int32 seconds = 1; Mode mode = 2; }

message SetCmd {
  option (mir.device.v1.message_type) = MESSAGE_TYPE_TELECOMMAND;
  option (mir.device.v1.meta) = { tags: [{key: "team", value: "hvac"}] };
  Mode mode = 1;
  repeated Step steps = 2;
  map<string, double> limits = 3;
  optional string owner = 4 [(mir.device.v1.field_meta) = { tags: [{key: "unit", value: "none"}] }];
  oneof target { string room = 5; int32 floor = 6; }
  google.protobuf.Timestamp at = 7;
  uint64 serial_number = 8;
}
"#;

fn viewed() -> SchemaView {
    let set = crate::testing::compile_schema("view.proto", VIEWED_PROTO);
    Schema::from_descriptor_set(&set)
        .expect("view schema")
        .view()
}

fn field<'a>(m: &'a MessageView, name: &str) -> &'a FieldView {
    m.fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name} in {m:?}"))
}

#[test]
fn the_view_lists_the_devices_messages_without_the_library_ones() {
    let view = viewed();
    let names: Vec<&str> = view.messages.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["view.v1.SetCmd", "view.v1.Step"]);
    assert_eq!(
        view.packages,
        ["google.protobuf", "mir.device.v1", "view.v1"]
    );
    assert_eq!(view.messages[0].kind, MessageKind::Command);
    assert_eq!(view.messages[1].kind, MessageKind::Plain);
    assert_eq!(view.messages[0].tags["team"], "hvac");
}

#[test]
fn the_view_describes_enums_lists_maps_optionals_and_oneofs() {
    let view = viewed();
    let cmd = &view.messages[0];
    let mode = field(cmd, "mode");
    assert_eq!(mode.value.kind, "enum");
    assert_eq!(mode.cardinality, Cardinality::Singular);
    let values: Vec<(&str, i32)> = mode
        .value
        .enum_values
        .iter()
        .flatten()
        .map(|v| (v.name.as_str(), v.number))
        .collect();
    assert_eq!(
        values,
        [("MODE_OFF", -3), ("MODE_UNSPECIFIED", 0), ("MODE_ECO", 1)]
    );
    assert_eq!(
        cmd.template["mode"], "MODE_UNSPECIFIED",
        "the default, not the lowest"
    );

    let steps = field(cmd, "steps");
    assert_eq!(steps.cardinality, Cardinality::Repeated);
    assert_eq!(steps.value.message_type.as_deref(), Some("view.v1.Step"));

    let limits = field(cmd, "limits");
    assert_eq!(limits.cardinality, Cardinality::Map);
    assert_eq!(limits.map_key.as_deref(), Some("string"));
    assert_eq!(
        limits.map_value.as_ref().map(|v| v.kind.as_str()),
        Some("double")
    );

    let owner = field(cmd, "owner");
    assert_eq!(owner.cardinality, Cardinality::Optional);
    assert_eq!(owner.oneof, None, "proto3's synthetic oneof is not shown");
    assert_eq!(owner.tags["unit"], "none");

    assert_eq!(field(cmd, "room").oneof.as_deref(), Some("target"));
    assert_eq!(field(cmd, "floor").oneof.as_deref(), Some("target"));
    assert_eq!(
        field(cmd, "at").value.message_type.as_deref(),
        Some("google.protobuf.Timestamp")
    );
    let serial = field(cmd, "serial_number");
    assert_eq!(
        (serial.json_name.as_str(), serial.number),
        ("serialNumber", 8)
    );
    assert_eq!(cmd.template["serialNumber"], json!(0));
}

#[test]
fn the_view_marks_a_telemetry_messages_timestamp_field_and_serializes_camel_case() {
    let view = schema().view();
    let env = view
        .messages
        .iter()
        .find(|m| m.name == "schema.v1.Env")
        .expect("Env");
    assert_eq!(env.kind, MessageKind::Telemetry);
    assert_eq!(field(env, "ts").timestamp, Some(TimestampPrecision::Nano));
    assert_eq!(field(env, "temperature").timestamp, None);
    let json = serde_json::to_value(env).expect("json");
    assert_eq!(json["kind"], "telemetry");
    assert_eq!(json["tags"]["site"], "roof");
    assert_eq!(json["fields"][0]["type"], "int64");
    assert_eq!(json["fields"][0]["timestamp"], "nano");
    assert_eq!(json["fields"][4]["jsonName"], "windSpeed");
    assert_eq!(json["fields"][1]["tags"]["unit"], "celsius");
    assert!(json["fields"][2].get("enumValues").is_none(), "{json}");
}
