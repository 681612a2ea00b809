//! `mir-module-sdk`: extend Mir's server side with modules that react to the platform's
//! events, read its device streams, call its API and publish events of their own.
//!
//! Layout:
//! - this file: [`ModuleError`] and the re-exports ([`FeedEvent`], [`FeedFilter`],
//!   [`TelemetryPoint`], [`TelemetryFilter`], [`HeartbeatPoint`],
//!   [`SchemaAnnouncement`], [`DeviceStreamFilter`], [`PublishEvent`], ...; the
//!   platform's own types from `mir-shared`, so a module and Mir never disagree on a
//!   document);
//! - [`module`]: [`Module`] and its builder: the CLI's contexts (`cli.yaml`, the hub's
//!   token, SigV4 for aws contexts) or an explicit URL and token; the event, worker,
//!   telemetry, heartbeat and schema streams, `publish_event`, and client operations
//!   through the CLI's HTTP client (devices, commands, configuration, telemetry
//!   queries);
//! - [`stream`]: the hub's server-sent streams (or an aws context's polled events) as
//!   typed streams: deduplicated by id, reconnecting (events resume with
//!   `Last-Event-ID`);
//! - [`envelope`]: the same [`FeedEvent`] from an EventBridge envelope (a Lambda a rule
//!   targets) and from SQS messages whose bodies are such envelopes (worker mode on AWS);
//!   decoded telemetry points too ([`telemetry_from_eventbridge`]);
//! - [`device_rule`]: heartbeats and schemas on AWS, from the IoT rule events of
//!   `MirModule`'s `deviceStreams` ([`heartbeat_from_rule_event`], [`schema_from_rule_event`]);
//!
//! Delivery is at least once everywhere; the streams drop the ids they yielded
//! recently, and a worker group hands a leaving member's last events to the others, so
//! a module's side effects should be idempotent. The streams read a local hub (`mir
//! local`). On an aws context the event stream polls `GET /v1/events` once a second (the
//! CLI client's `poll`: from the events recorded after it opens, `labels` filled only
//! for a label filter); the telemetry, heartbeat, schema and worker streams are refused
//! ([`AwsUnsupported`]): on AWS the feed is EventBridge, read with [`envelope`] in a
//! Lambda that `MirModule` subscribes (worker mode: an SQS queue).
//!
//! Architecture: see docs/architecture.md in the repository (section Event feed).

pub mod device_rule;
pub mod envelope;
pub mod module;
pub mod stream;

pub use device_rule::{heartbeat_from_rule_event, schema_from_rule_event, DeviceRuleError};
pub use envelope::{from_eventbridge, from_sqs, telemetry_from_eventbridge, EnvelopeError};
pub use mir_cli::client::{AwsUnsupported, ClientError};
pub use mir_shared::api::{PublishEvent, SendCommand, SendConfig};
pub use mir_shared::domain::{
    CustomName, DeviceStreamFilter, EventReason, EventType, FeedEvent, FeedFilter, HeartbeatPoint,
    HeartbeatStatus, SchemaAnnouncement, Targets, TelemetryFilter, TelemetryPoint,
};
pub use module::{Module, ModuleBuilder};

/// What a module's call or stream can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The CLI configuration could not be read or names no usable context.
    #[error("cannot resolve the Mir API: {source:#}")]
    Config {
        #[source]
        source: anyhow::Error,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("event {id}: not a document of this stream: {source}")]
    Decode {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}
