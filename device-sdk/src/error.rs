//! Errors: [`BuildError`] when configuring a device, [`SdkError`] while it runs.

use std::{io, path::PathBuf, sync::Arc, time::Duration};

use mir_proto::{topics::InvalidCustomName, InvalidDeviceId};

use crate::store::StoreError;

/// Why [`crate::Builder::build`] refused the configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no device id: call .device_id(..)")]
    MissingDeviceId,
    #[error("invalid device id {id:?}: {source}")]
    InvalidDeviceId {
        id: String,
        #[source]
        source: InvalidDeviceId,
    },
    #[error(
        "invalid target {target:?}: {reason} (expected mqtt://host:port or mqtts://host:port)"
    )]
    InvalidTarget { target: String, reason: String },
    #[error("cannot read the {what} file {}: {source}", path.display())]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid {what} PEM: {reason}")]
    InvalidPem { what: &'static str, reason: String },
    #[error("the TLS configuration was refused: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client credentials need a TLS target (mqtts://), not {0}")]
    CredentialsWithoutTls(String),
    #[error("schema #{index} is not an encoded google.protobuf.FileDescriptorSet: {source}")]
    InvalidSchema {
        index: usize,
        #[source]
        source: prost::DecodeError,
    },
    #[error("cannot compress the schema: {0}")]
    CompressSchema(#[source] io::Error),
    /// Not retryable: the schema must shrink (fewer or smaller files).
    #[error(
        "the schema is {compressed} bytes compressed: its Hello with the topic is {hello} \
         bytes, over the {limit}-byte limit of one MQTT payload"
    )]
    SchemaTooLarge {
        compressed: usize,
        hello: usize,
        limit: usize,
    },
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },
    #[error("invalid configuration file {}: {reason}", path.display())]
    ConfigFile { path: PathBuf, reason: String },
    #[error("invalid MIR__ environment variable: {0}")]
    Environment(String),
    #[error("cannot open the offline store: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl BuildError {
    /// Whether building again can succeed without changing the configuration: only a
    /// store or a file that could not be read for a passing reason.
    pub fn is_retryable(&self) -> bool {
        match self {
            BuildError::Store(e) => e.is_retryable(),
            BuildError::ReadFile { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }
}

/// Errors of a built device: sending, launching, waiting.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The message can never be sent: its envelope would exceed the payload limit of
    /// AWS IoT Core (see [`mir_proto::MAX_PAYLOAD_BYTES`]).
    #[error(
        "{name} is {size} bytes once enveloped, over the {limit}-byte limit of one MQTT payload"
    )]
    PayloadTooLarge {
        name: String,
        size: usize,
        limit: usize,
    },
    /// The SDK's queue towards the event loop is full: the message was not accepted.
    /// Nothing in the SDK blocks the application; retry later or drop the message.
    #[error(
        "the SDK queue is full ({capacity} requests waiting for the event loop); message dropped"
    )]
    QueueFull { capacity: usize },
    /// The event loop has stopped (shutdown) or was never launched and its queue is gone.
    #[error("the device event loop has stopped")]
    Closed,
    /// A send with [`crate::Persistence::Always`], or a [`crate::Mir::flush`], before
    /// [`crate::Mir::launch`]: they wait for the event loop, which is not running. The
    /// message was not accepted.
    #[error(
        "launch() the device first: this call waits for the event loop (the offline store's writes)"
    )]
    NotLaunched,
    /// With [`crate::Persistence::Always`]: the offline store could not write the
    /// message. It stays queued in memory and is still sent, but a crash before the
    /// broker acknowledges it loses it.
    #[error("the message is not in the offline store ({source}); it stays queued in memory only")]
    NotStored {
        #[source]
        source: Arc<StoreError>,
    },
    /// With [`crate::Persistence::Always`]: the offline store, at its cap, had no room
    /// for the message even after dropping every older record; the message was dropped.
    #[error("the offline store is at its cap with no room for the message: dropped")]
    StoreFull,
    #[error("launch() was already called on this device")]
    AlreadyLaunched,
    /// [`crate::Mir::send_custom`] with a module or route name that is not one (it
    /// names which, and the name): nothing was sent.
    #[error("invalid custom route: {0}")]
    InvalidCustomRoute(#[from] InvalidCustomName),
    /// [`crate::Mir::send_custom`] while the device is not connected: custom messages
    /// are never queued offline. Nothing was sent; send again once connected.
    #[error("the device is not connected: custom route messages are not queued offline")]
    NotConnected,
    #[error("not connected after {0:?}")]
    ConnectTimeout(Duration),
    #[error("the device event loop failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl SdkError {
    /// Whether the same call can succeed later: a full queue drains, a store frees
    /// room, a connection comes up. A message too large, a stopped or not launched
    /// device will not change by waiting.
    pub fn is_retryable(&self) -> bool {
        match self {
            SdkError::QueueFull { .. }
            | SdkError::StoreFull
            | SdkError::ConnectTimeout(_)
            | SdkError::NotConnected
            | SdkError::NotStored { .. } => true,
            SdkError::PayloadTooLarge { .. }
            | SdkError::Closed
            | SdkError::NotLaunched
            | SdkError::AlreadyLaunched
            | SdkError::InvalidCustomRoute(_)
            | SdkError::Task(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_whether_a_retry_can_help() {
        assert!(SdkError::QueueFull { capacity: 1 }.is_retryable());
        assert!(!SdkError::PayloadTooLarge {
            name: "x".into(),
            size: 2,
            limit: 1
        }
        .is_retryable());
        let full = io::Error::from(io::ErrorKind::StorageFull);
        let store = StoreError::CreateDir {
            path: "/x".into(),
            source: full,
        };
        assert!(store.is_retryable());
        assert!(BuildError::Store(store).is_retryable());
        let not_dir = io::Error::from(io::ErrorKind::NotADirectory);
        assert!(!BuildError::Store(StoreError::CreateDir {
            path: "/x".into(),
            source: not_dir
        })
        .is_retryable());
        assert!(!StoreError::Corrupt { key: 1 }.is_retryable());
        assert!(!BuildError::MissingDeviceId.is_retryable());
        assert!(SdkError::NotConnected.is_retryable());
        let bad = mir_proto::topics::CustomRoute::new("Alerts", "door").expect_err("bad");
        let bad = SdkError::from(bad);
        assert!(!bad.is_retryable());
        assert!(bad.to_string().contains("module \"Alerts\""), "{bad}");
    }
}
