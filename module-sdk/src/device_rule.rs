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

use mir_shared::domain::{device_stream::DeviceMessageError, HeartbeatPoint, SchemaAnnouncement};
use mir_shared::rule_event::{RuleEvent, RuleEventError};

/// What decoding a device stream's IoT rule event can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DeviceRuleError {
    /// Not the JSON of an IoT rule event (`payload`, `deviceId`, `clientId`, `receivedAt`).
    #[error("not the JSON of an IoT rule event: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The rule event itself is refused, as the platform's functions refuse it: a bad
    /// device id, another client than the device of the topic, a payload that is not
    /// base64 or over the device limit.
    #[error(transparent)]
    Rule(#[from] RuleEventError),
    /// The bytes are not a heartbeat / hello, or the hello's schema does not decode.
    #[error(transparent)]
    Message(#[from] DeviceMessageError),
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
    Ok(HeartbeatPoint::decode(
        &event.device_id,
        event.received_at(),
        &bytes,
    )?)
}

/// The schema announcement of a `mir/+/hello` rule event (JSON text); name, namespace
/// and labels empty.
pub fn schema_from_rule_event(json: &str) -> Result<SchemaAnnouncement, DeviceRuleError> {
    let (event, bytes) = parse(json)?;
    Ok(SchemaAnnouncement::decode(
        &event.device_id,
        event.received_at(),
        &bytes,
    )?)
}

#[cfg(test)]
#[path = "device_rule_tests.rs"]
mod tests;
