//! The `mir.wire.v1` envelopes (`proto/mir/wire/v1/envelopes.proto`): any bytes decode
//! to a value or a `prost::DecodeError`, never a panic, and whatever decodes encodes
//! back to the same value; any value survives encode -> decode.
//!
//! Three byte sources per envelope: plain random bytes, random protobuf-shaped fields
//! (valid tags of every wire type, field numbers around the real ones, some broken), and
//! a real encoding with bytes flipped, cut or inserted.

use proptest::collection::vec;
use proptest::prelude::*;

use mir_proto::wire::{
    CommandRequest, CommandResponse, DesiredProperties, Heartbeat, Hello, PropertyValue,
    ReportedProperties, TelemetryBatch, TelemetryItem,
};
use prost::bytes::Bytes;
use prost::Message;

use crate::{config, CI_CASES};

fn bytes_field() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

/// Any i32: enum fields are open in proto3, unknown numbers included.
fn enum_field() -> impl Strategy<Value = i32> {
    prop_oneof![0..6i32, any::<i32>()]
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        bytes_field(),
        enum_field(),
        any::<String>(),
        any::<i64>(),
        any::<u32>(),
    )
        .prop_map(
            |(schema, compression, sdk_version, sent_at_ns, heartbeat_interval_sec)| Hello {
                schema,
                compression,
                sdk_version,
                sent_at_ns,
                heartbeat_interval_sec,
            },
        )
}

fn heartbeat() -> impl Strategy<Value = Heartbeat> {
    (
        (any::<i64>(), any::<u64>(), any::<u64>(), any::<u32>()),
        // The SDK's status; enums as any i32 (an unknown value must round-trip too).
        (
            any::<u64>(),
            any::<u64>(),
            any::<i32>(),
            any::<i32>(),
            any::<i32>(),
        ),
        (any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>()),
    )
        .prop_map(
            |(
                (sent_at_ns, uptime_sec, queued, interval_sec),
                (quarantined_records, queued_bytes, store_state, clock_state, link_issue),
                (dropped_after_connect_in_a_row, store_errors, dropped_messages, corrupt_records),
            )| Heartbeat {
                sent_at_ns,
                uptime_sec,
                queued,
                interval_sec,
                quarantined_records,
                queued_bytes,
                store_state,
                clock_state,
                link_issue,
                dropped_after_connect_in_a_row,
                store_errors,
                dropped_messages,
                corrupt_records,
            },
        )
}

fn telemetry_item() -> impl Strategy<Value = TelemetryItem> {
    (
        any::<String>(),
        bytes_field(),
        any::<u64>(),
        any::<i64>(),
        any::<bool>(),
    )
        .prop_map(
            |(name, payload, seq, sent_at_ns, clock_unsynced)| TelemetryItem {
                name,
                payload,
                seq,
                sent_at_ns,
                clock_unsynced,
            },
        )
}

fn telemetry_batch() -> impl Strategy<Value = TelemetryBatch> {
    vec(telemetry_item(), 0..6).prop_map(|items| TelemetryBatch { items })
}

fn command_request() -> impl Strategy<Value = CommandRequest> {
    (
        any::<String>(),
        any::<String>(),
        bytes_field(),
        any::<i64>(),
    )
        .prop_map(|(id, name, payload, deadline_unix_ms)| CommandRequest {
            id,
            name,
            payload,
            deadline_unix_ms,
        })
}

fn command_response() -> impl Strategy<Value = CommandResponse> {
    (
        any::<String>(),
        enum_field(),
        any::<String>(),
        bytes_field(),
        any::<String>(),
    )
        .prop_map(|(id, status, name, payload, error)| CommandResponse {
            id,
            status,
            name,
            payload,
            error,
        })
}

fn property_value() -> impl Strategy<Value = PropertyValue> {
    (any::<String>(), bytes_field(), any::<i64>(), any::<u64>()).prop_map(
        |(name, payload, updated_at_ns, version)| PropertyValue {
            name,
            payload,
            updated_at_ns,
            version,
        },
    )
}

fn desired_properties() -> impl Strategy<Value = DesiredProperties> {
    (vec(property_value(), 0..6), any::<bool>()).prop_map(|(properties, complete)| {
        DesiredProperties {
            properties,
            complete,
        }
    })
}

fn reported_properties() -> impl Strategy<Value = ReportedProperties> {
    vec(property_value(), 0..6).prop_map(|properties| ReportedProperties { properties })
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// One protobuf field: a tag (numbers 0..=9 around the real ones, any wire type, the
/// group and reserved ones included) and a body shaped like that wire type, or not.
fn raw_field() -> impl Strategy<Value = Vec<u8>> {
    (
        0u64..10,
        0u64..8,
        any::<u64>(),
        vec(any::<u8>(), 0..24),
        any::<bool>(),
    )
        .prop_map(|(number, wire_type, n, body, honest_length)| {
            let mut out = Vec::new();
            varint((number << 3) | wire_type, &mut out);
            match wire_type {
                0 => varint(n, &mut out),
                1 => out.extend_from_slice(&n.to_le_bytes()),
                2 => {
                    let len = if honest_length { body.len() as u64 } else { n };
                    varint(len, &mut out);
                    out.extend_from_slice(&body);
                }
                5 => out.extend_from_slice(&n.to_le_bytes()[..4]),
                _ => out.extend_from_slice(&body),
            }
            out
        })
}

fn raw_message() -> impl Strategy<Value = Vec<u8>> {
    vec(raw_field(), 0..8).prop_map(|fields| fields.concat())
}

/// A change to an encoding: flip a byte, cut the tail, or insert a byte.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, x)| Mutation::Flip(at, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Insert(at, b)),
    ];
    vec(one, 1..4)
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        match *m {
            Mutation::Flip(at, x) if !bytes.is_empty() => {
                let at = at % bytes.len();
                bytes[at] ^= x;
            }
            Mutation::Truncate(at) if !bytes.is_empty() => bytes.truncate(at % bytes.len()),
            Mutation::Insert(at, b) => {
                let at = at % (bytes.len() + 1);
                bytes.insert(at, b);
            }
            _ => {}
        }
    }
    bytes
}

/// Decodes `bytes` as `T`; what decodes must encode back to the same value.
fn decodes_to_a_value_or_an_error<T: Message + Default + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    match T::decode(bytes) {
        Ok(value) => {
            let again = T::decode(value.encode_to_vec().as_slice());
            prop_assert_eq!(again.as_ref(), Ok(&value));
        }
        Err(e) => prop_assert!(!e.to_string().is_empty()),
    }
    Ok(())
}

/// The properties of one envelope type, in a module named after it.
macro_rules! envelope_properties {
    ($module:ident, $ty:ty, $strategy:expr) => {
        mod $module {
            use super::*;

            proptest! {
                #![proptest_config(config(CI_CASES))]

                #[test]
                fn arbitrary_bytes_decode_to_a_value_or_an_error(bytes in vec(any::<u8>(), 0..256)) {
                    decodes_to_a_value_or_an_error::<$ty>(&bytes)?;
                }

                #[test]
                fn protobuf_shaped_fields_decode_to_a_value_or_an_error(bytes in raw_message()) {
                    decodes_to_a_value_or_an_error::<$ty>(&bytes)?;
                }

                #[test]
                fn a_damaged_encoding_decodes_to_a_value_or_an_error(
                    value in $strategy,
                    mutations in mutations(),
                ) {
                    let bytes = mutate(value.encode_to_vec(), &mutations);
                    decodes_to_a_value_or_an_error::<$ty>(&bytes)?;
                }

                #[test]
                fn any_value_survives_encode_and_decode(value in $strategy) {
                    let bytes = value.encode_to_vec();
                    prop_assert_eq!(bytes.len(), value.encoded_len());
                    prop_assert_eq!(<$ty>::decode(bytes.as_slice()), Ok(value));
                }
            }
        }
    };
}

envelope_properties!(hello, Hello, hello());
envelope_properties!(heartbeat, Heartbeat, heartbeat());
envelope_properties!(telemetry_item, TelemetryItem, telemetry_item());
envelope_properties!(telemetry_batch, TelemetryBatch, telemetry_batch());
envelope_properties!(command_request, CommandRequest, command_request());
envelope_properties!(command_response, CommandResponse, command_response());
envelope_properties!(property_value, PropertyValue, property_value());
envelope_properties!(desired_properties, DesiredProperties, desired_properties());
envelope_properties!(
    reported_properties,
    ReportedProperties,
    reported_properties()
);
