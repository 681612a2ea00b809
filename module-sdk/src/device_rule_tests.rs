//! Tests of [`super`]: the fixtures `module-sdk/fixtures/iot-rule-*.json` (the JSON of
//! the platform's SQL on `mir/+/hb` and `mir/+/hello`, weather device), compared with
//! what the hub builds from the same bytes; then each error, and bounded loops over
//! truncated, garbled and flipped inputs (an error or the hub's document, never a panic).

use base64::Engine;
use chrono::{TimeZone, Utc};
use prost::Message;

use mir_proto::wire::{Heartbeat, Hello};
use mir_shared::domain::{device_stream::DeviceMessageError, HeartbeatPoint, SchemaAnnouncement};
use mir_shared::rule_event::RuleEventError;
use mir_shared::schema::{self, Schema, SchemaError};

use super::{heartbeat_from_rule_event, schema_from_rule_event, DeviceRuleError};

const HEARTBEAT: &str = include_str!("../fixtures/iot-rule-heartbeat.json");
const HEARTBEAT_EMPTY: &str = include_str!("../fixtures/iot-rule-heartbeat-empty.json");
const HELLO: &str = include_str!("../fixtures/iot-rule-hello.json");
const HELLO_BAD_SCHEMA: &str = include_str!("../fixtures/iot-rule-hello-bad-schema.json");

/// The fixtures' device and receive time (`receivedAt` 1700000000123 ms).
const DEVICE: &str = "weather-1";
const RECEIVED_MS: i64 = 1_700_000_000_123;

fn payload_of(fixture: &str) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_str(fixture).expect("fixture JSON");
    let b64 = v["payload"].as_str().expect("payload");
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("fixture base64")
}

/// The rule event of `payload` from `device` (its own client), as IoT Core sends it.
fn rule_event(device: &str, client: &str, payload: &[u8]) -> String {
    serde_json::json!({
        "payload": base64::engine::general_purpose::STANDARD.encode(payload),
        "deviceId": device,
        "clientId": client,
        "receivedAt": RECEIVED_MS,
    })
    .to_string()
}

/// What the hub builds from these heartbeat bytes (hub/src/feed/devices.rs).
fn hub_heartbeat(bytes: &[u8]) -> Option<HeartbeatPoint> {
    let received = Utc.timestamp_millis_opt(RECEIVED_MS).single()?;
    let hb = Heartbeat::decode(bytes).ok()?;
    Some(HeartbeatPoint::new(DEVICE, received, &hb, bytes.len()))
}

/// What the hub builds from these hello bytes, or which step refused them.
fn hub_schema(bytes: &[u8]) -> Result<SchemaAnnouncement, &'static str> {
    let received = Utc
        .timestamp_millis_opt(RECEIVED_MS)
        .single()
        .ok_or("time")?;
    let hello = Hello::decode(bytes).map_err(|_| "malformed")?;
    let descriptors = schema::hello_schema_bytes(&hello).map_err(|_| "schema")?;
    let schema = Schema::from_descriptor_set(&descriptors).map_err(|_| "schema")?;
    Ok(SchemaAnnouncement::new(DEVICE, received, &hello, &schema))
}

#[test]
fn a_heartbeat_rule_event_is_the_point_the_hub_gives_for_the_same_bytes_with_the_send_time_id() {
    let p = heartbeat_from_rule_event(HEARTBEAT).expect("the heartbeat fixture");
    assert_eq!(Some(&p), hub_heartbeat(&payload_of(HEARTBEAT)).as_ref());
    assert_eq!(p.id, "weather-1/hb/1700000000100000000");
    assert_eq!(p.device_id, "weather-1");
    assert_eq!(p.time.timestamp_millis(), RECEIVED_MS);
    let status = p.status.expect("a heartbeat with fields has a status");
    assert_eq!(status.sent_at_ns, 1_700_000_000_100_000_000);
    assert_eq!(status.uptime_sec, 12);
    assert_eq!(status.queued, 3);
    assert_eq!(status.interval_sec, 30);
    assert_eq!(status.store_state, "STORE_STATE_DURABLE");
    assert_eq!(status.clock_state, "CLOCK_STATE_SYNCED");
}

#[test]
fn a_rule_event_has_no_name_namespace_or_labels() {
    let p = heartbeat_from_rule_event(HEARTBEAT).expect("heartbeat");
    assert_eq!((p.name.as_str(), p.namespace.as_str()), ("", ""));
    assert!(p.labels.is_empty(), "{:?}", p.labels);
    let a = schema_from_rule_event(HELLO).expect("hello");
    assert_eq!((a.name.as_str(), a.namespace.as_str()), ("", ""));
    assert!(a.labels.is_empty(), "{:?}", a.labels);
}

#[test]
fn an_empty_heartbeat_rule_event_has_no_status_and_the_receive_time_id_as_on_the_hub() {
    let p = heartbeat_from_rule_event(HEARTBEAT_EMPTY).expect("the empty heartbeat fixture");
    assert_eq!(p.status, None);
    assert_eq!(p.id, "weather-1/hb/1700000000123000000");
    assert_eq!(Some(p), hub_heartbeat(&[]));
}

#[test]
fn a_hello_rule_event_is_the_announcement_the_hub_gives_for_the_same_bytes() {
    let a = schema_from_rule_event(HELLO).expect("the hello fixture");
    assert_eq!(Ok(&a), hub_schema(&payload_of(HELLO)).as_ref());
    assert_eq!(a.id, "weather-1/hello/1700000000050000000");
    assert_eq!(a.device_id, "weather-1");
    assert_eq!(a.time.timestamp_millis(), RECEIVED_MS);
    assert_eq!(
        a.package_names,
        ["google.protobuf", "mir.device.v1", "schema.v1"]
    );
    assert_eq!(a.telemetry, ["schema.v1.Env"]);
    assert_eq!(a.commands, ["schema.v1.ActivateHVACCmd"]);
    assert_eq!(a.config, ["schema.v1.DataRateProp"]);
    assert_eq!(a.sdk_version, "0.4.0");
}

#[test]
fn an_uncompressed_schema_decodes_to_the_same_announcement() {
    let hello = Hello {
        schema: mir_proto::examples::weather::DESCRIPTOR_SET.to_vec().into(),
        sdk_version: "0.4.0".into(),
        sent_at_ns: 9,
        ..Default::default()
    }
    .encode_to_vec();
    let a = schema_from_rule_event(&rule_event(DEVICE, DEVICE, &hello)).expect("plain schema");
    assert_eq!(Ok(&a), hub_schema(&hello).as_ref());
    assert_eq!(a.id, "weather-1/hello/9");
    assert_eq!(a.telemetry, ["schema.v1.Env"]);
}

#[test]
fn a_hello_whose_schema_is_not_a_descriptor_set_is_a_schema_error() {
    let err = schema_from_rule_event(HELLO_BAD_SCHEMA).expect_err("not a descriptor set");
    assert!(
        matches!(
            err,
            DeviceRuleError::Message(DeviceMessageError::Schema(SchemaError::InvalidDescriptor(
                _
            )))
        ),
        "{err:?}"
    );
    let zlib_garbage = Hello {
        schema: b"not zlib".to_vec().into(),
        compression: mir_proto::wire::Compression::Zlib as i32,
        ..Default::default()
    }
    .encode_to_vec();
    let err =
        schema_from_rule_event(&rule_event(DEVICE, DEVICE, &zlib_garbage)).expect_err("not zlib");
    assert!(
        matches!(
            err,
            DeviceRuleError::Message(DeviceMessageError::Schema(SchemaError::Decompress(_)))
        ),
        "{err:?}"
    );
}

#[test]
fn text_that_is_not_a_rule_event_is_not_json() {
    for json in [
        "",
        "not json",
        "[]",
        r#"{"payload": "", "clientId": "w1"}"#,
        r#"{"payload": 3, "deviceId": "w1", "clientId": "w1", "receivedAt": 1}"#,
    ] {
        let err = heartbeat_from_rule_event(json).expect_err(json);
        assert!(
            matches!(err, DeviceRuleError::NotJson(_)),
            "{json}: {err:?}"
        );
        let err = schema_from_rule_event(json).expect_err(json);
        assert!(
            matches!(err, DeviceRuleError::NotJson(_)),
            "{json}: {err:?}"
        );
    }
}

#[test]
fn a_payload_that_is_not_base64_is_bad_base64() {
    let json =
        r#"{"payload": "!!not base64!!", "deviceId": "w1", "clientId": "w1", "receivedAt": 1}"#;
    let err = heartbeat_from_rule_event(json).expect_err("bad base64");
    assert!(
        matches!(err, DeviceRuleError::Rule(RuleEventError::BadBase64(_))),
        "{err:?}"
    );
    let err = schema_from_rule_event(json).expect_err("bad base64");
    assert!(
        matches!(err, DeviceRuleError::Rule(RuleEventError::BadBase64(_))),
        "{err:?}"
    );
}

#[test]
fn a_payload_over_the_device_limit_is_too_large() {
    let big = vec![0u8; mir_proto::MAX_PAYLOAD_BYTES + 1024];
    let err = heartbeat_from_rule_event(&rule_event(DEVICE, DEVICE, &big)).expect_err("big");
    assert!(
        matches!(err, DeviceRuleError::Rule(RuleEventError::TooLarge { limit, .. }) if limit == mir_proto::MAX_PAYLOAD_BYTES),
        "{err:?}"
    );
}

#[test]
fn an_invalid_device_id_in_the_topic_is_a_bad_device_id() {
    for id in ["", "a/b", "+", "#"] {
        let json = rule_event(id, id, &[]);
        let err = heartbeat_from_rule_event(&json).expect_err(id);
        assert!(
            matches!(err, DeviceRuleError::Rule(RuleEventError::BadDeviceId(_))),
            "{id:?}: {err:?}"
        );
        let err = schema_from_rule_event(&json).expect_err(id);
        assert!(
            matches!(err, DeviceRuleError::Rule(RuleEventError::BadDeviceId(_))),
            "{id:?}: {err:?}"
        );
    }
}

#[test]
fn a_message_of_another_client_on_the_topic_of_a_device_is_refused_as_the_platform_refuses_it() {
    let json = rule_event(DEVICE, "intruder", &payload_of(HEARTBEAT));
    let err = heartbeat_from_rule_event(&json).expect_err("another client");
    assert!(
        matches!(&err, DeviceRuleError::Rule(RuleEventError::ClientMismatch { client_id, device_id }) if client_id == "intruder" && device_id == DEVICE),
        "{err:?}"
    );
}

#[test]
fn bytes_that_are_not_protobuf_are_malformed_naming_the_message() {
    let garbage = [0xffu8; 12];
    let json = rule_event(DEVICE, DEVICE, &garbage);
    let err = heartbeat_from_rule_event(&json).expect_err("garbage");
    assert!(
        matches!(
            err,
            DeviceRuleError::Message(DeviceMessageError::Malformed {
                what: "heartbeat",
                ..
            })
        ),
        "{err:?}"
    );
    let err = schema_from_rule_event(&json).expect_err("garbage");
    assert!(
        matches!(
            err,
            DeviceRuleError::Message(DeviceMessageError::Malformed { what: "hello", .. })
        ),
        "{err:?}"
    );
    // A heartbeat's first field is a varint where the hello has its schema's bytes.
    let hb = rule_event(DEVICE, DEVICE, &payload_of(HEARTBEAT));
    let err = schema_from_rule_event(&hb).expect_err("a heartbeat is no hello");
    assert!(
        matches!(
            err,
            DeviceRuleError::Message(DeviceMessageError::Malformed { what: "hello", .. })
        ),
        "{err:?}"
    );
}

/// Our result for `bytes` against the hub's: its document, or an error of the step
/// that refused them.
fn assert_schema_as_on_the_hub(bytes: &[u8], case: &str) {
    let ours = schema_from_rule_event(&rule_event(DEVICE, DEVICE, bytes));
    match (hub_schema(bytes), ours) {
        (Ok(hub), Ok(ours)) => assert_eq!(ours, hub, "{case}"),
        (
            Err("malformed"),
            Err(DeviceRuleError::Message(DeviceMessageError::Malformed { what: "hello", .. })),
        ) => {}
        (Err("schema"), Err(DeviceRuleError::Message(DeviceMessageError::Schema(_)))) => {}
        (hub, ours) => panic!("{case}: hub {hub:?}, module {ours:?}"),
    }
}

#[test]
fn every_truncation_of_a_hello_gives_the_hubs_document_or_the_hubs_refusal_never_a_panic() {
    let bytes = payload_of(HELLO);
    let step = (bytes.len() / 200).max(1);
    let mut refused = 0;
    for len in (0..bytes.len()).step_by(step) {
        assert_schema_as_on_the_hub(&bytes[..len], &format!("first {len} bytes"));
        refused += usize::from(
            schema_from_rule_event(&rule_event(DEVICE, DEVICE, &bytes[..len])).is_err(),
        );
    }
    assert!(refused > 150, "most truncations cut the schema: {refused}");
}

#[test]
fn every_flipped_byte_of_a_hello_gives_the_hubs_document_or_the_hubs_refusal_never_a_panic() {
    let bytes = payload_of(HELLO);
    let step = (bytes.len() / 200).max(1);
    for at in (0..bytes.len()).step_by(step) {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut garbled = bytes.clone();
            garbled[at] ^= mask;
            assert_schema_as_on_the_hub(&garbled, &format!("byte {at} ^ {mask:#x}"));
        }
    }
}

#[test]
fn every_truncated_or_flipped_heartbeat_gives_the_hubs_point_or_is_malformed_never_a_panic() {
    let bytes = payload_of(HEARTBEAT);
    let mut cases: Vec<Vec<u8>> = (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
    for at in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut garbled = bytes.clone();
            garbled[at] ^= mask;
            cases.push(garbled);
        }
    }
    for case in cases {
        let ours = heartbeat_from_rule_event(&rule_event(DEVICE, DEVICE, &case));
        match (hub_heartbeat(&case), ours) {
            (Some(hub), Ok(ours)) => assert_eq!(ours, hub, "{case:?}"),
            (
                None,
                Err(DeviceRuleError::Message(DeviceMessageError::Malformed {
                    what: "heartbeat",
                    ..
                })),
            ) => {}
            (hub, ours) => panic!("{case:?}: hub {hub:?}, module {ours:?}"),
        }
    }
}

#[test]
fn every_truncation_of_the_rule_events_json_is_not_json_never_a_panic() {
    for fixture in [HEARTBEAT, HELLO] {
        let end = fixture.rfind('}').expect("an object");
        for len in (0..end).step_by((end / 300).max(1)) {
            let Some(text) = fixture.get(..len) else {
                continue;
            };
            let err = heartbeat_from_rule_event(text).expect_err("truncated JSON");
            assert!(matches!(err, DeviceRuleError::NotJson(_)), "{len}: {err:?}");
            let err = schema_from_rule_event(text).expect_err("truncated JSON");
            assert!(matches!(err, DeviceRuleError::NotJson(_)), "{len}: {err:?}");
        }
    }
}
