//! The device streams on AWS: the heartbeats (`mir/+/hb`) and schemas (`mir/+/hello`)
//! a module's IoT topic rules deliver (`MirModule`'s `deviceStreams`,
//! `infra/cdk/lib/module.ts`), as the same documents the hub's streams send.
//!
//! - [`heartbeat_from_rule_event`]: the rule's JSON to a [`HeartbeatPoint`];
//! - [`schema_from_rule_event`]: the rule's JSON to a [`SchemaAnnouncement`];
//! - [`DeviceRuleError`]: what either can fail with;
//! - tests, on the fixtures `module-sdk/fixtures/iot-rule-*.json`.
//!
//! The rule's JSON is the platform's [`RuleEvent`] (`payload` base64, `deviceId`,
//! `clientId`, `receivedAt` in ms): the same SQL as the platform's own rule of the
//! topic. A message whose client is not the device of its topic is refused, as the
//! platform's own functions refuse it. An IoT rule event carries no name, namespace or
//! labels: those fields are empty here; a module that needs them reads the device
//! through the API. The document's id is the one the hub gives the same device message
//! (the device's send time, else the receive time), so a module deduplicates the same
//! way on both.

use mir_proto::wire::{Heartbeat, Hello};
use mir_shared::domain::{HeartbeatPoint, SchemaAnnouncement};
use mir_shared::rule_event::{RuleEvent, RuleEventError};
use mir_shared::schema::{self, Schema, SchemaError};
use prost::Message;

/// What decoding a device stream's IoT rule event can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DeviceRuleError {
    /// Not the JSON of an IoT rule event (`payload`, `deviceId`, `clientId`, `receivedAt`).
    #[error("not the JSON of an IoT rule event: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("invalid device id in the topic: {0}")]
    BadDeviceId(#[source] mir_proto::InvalidDeviceId),
    /// Published by another client than the device of the topic.
    #[error("client {client_id:?} published on the topic of device {device_id:?}; refused")]
    ClientMismatch {
        client_id: String,
        device_id: String,
    },
    #[error("payload is not base64: {0}")]
    BadBase64(String),
    #[error("payload of {size} bytes is over the {limit} bytes limit")]
    TooLarge { size: usize, limit: usize },
    /// The payload is not a protobuf `mir.wire.v1.Heartbeat` / `Hello`.
    #[error("malformed {what} protobuf: {source}")]
    Malformed {
        what: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    /// The hello's schema is not a usable `FileDescriptorSet`.
    #[error("the hello's schema does not decode: {0}")]
    Schema(#[source] SchemaError),
}

impl From<RuleEventError> for DeviceRuleError {
    fn from(e: RuleEventError) -> Self {
        match e {
            RuleEventError::BadDeviceId(e) => Self::BadDeviceId(e),
            RuleEventError::ClientMismatch {
                client_id,
                device_id,
            } => Self::ClientMismatch {
                client_id,
                device_id,
            },
            RuleEventError::BadBase64(e) => Self::BadBase64(e),
            RuleEventError::TooLarge { size, limit } => Self::TooLarge { size, limit },
        }
    }
}

/// The rule event of `json`, its device checked, and the payload's bytes.
fn parse(json: &str) -> Result<(RuleEvent, Vec<u8>), DeviceRuleError> {
    let event: RuleEvent = serde_json::from_str(json).map_err(DeviceRuleError::NotJson)?;
    event.device()?;
    let bytes = event.payload_bytes()?;
    Ok((event, bytes))
}

/// The heartbeat of a `mir/+/hb` rule event (JSON text); name, namespace and labels
/// empty.
pub fn heartbeat_from_rule_event(json: &str) -> Result<HeartbeatPoint, DeviceRuleError> {
    let (event, bytes) = parse(json)?;
    let hb = Heartbeat::decode(bytes.as_slice()).map_err(|source| DeviceRuleError::Malformed {
        what: "heartbeat",
        source,
    })?;
    Ok(HeartbeatPoint::new(
        &event.device_id,
        event.received_at(),
        &hb,
        bytes.len(),
    ))
}

/// The schema announcement of a `mir/+/hello` rule event (JSON text); name, namespace
/// and labels empty.
pub fn schema_from_rule_event(json: &str) -> Result<SchemaAnnouncement, DeviceRuleError> {
    let (event, bytes) = parse(json)?;
    let hello = Hello::decode(bytes.as_slice()).map_err(|source| DeviceRuleError::Malformed {
        what: "hello",
        source,
    })?;
    let descriptors = schema::hello_schema_bytes(&hello).map_err(DeviceRuleError::Schema)?;
    let schema = Schema::from_descriptor_set(&descriptors).map_err(DeviceRuleError::Schema)?;
    Ok(SchemaAnnouncement::new(
        &event.device_id,
        event.received_at(),
        &hello,
        &schema,
    ))
}

#[cfg(test)]
#[path = "device_rule_tests.rs"]
mod tests;
