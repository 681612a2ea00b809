//! The session's vocabulary: its clocks, what it asks of the event loop (requests for
//! the MQTT client, actions that need user code), its configuration and counters.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mir_proto::{
    wire::{CommandRequest, Compression, PropertyValue},
    DeviceId,
};

use crate::{
    config::Persistence,
    status::{ClockState, HeartbeatStatus, LinkIssue, StoreHealth},
};

/// The two clocks: monotonic for timers, wall clock (Unix ns) for message times, and
/// whether the wall clock is set ([`crate::clock`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub mono: Instant,
    pub unix_ns: i64,
    pub synced: bool,
}

/// Nanoseconds since the Unix epoch by the device clock (0 if the clock is before 1970).
pub(crate) fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A QoS 1, non retained publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Publish {
    pub topic: String,
    pub payload: Bytes,
}

/// What the event loop must hand to the MQTT client, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// Subscribe QoS 1 to these filters.
    Subscribe(Vec<String>),
    Publish(Publish),
}

/// Work for the event loop that needs user code.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Run the command handler registered for `request.name`, then call
    /// [`super::Session::command_finished`].
    RunCommand(CommandRequest),
    /// Call the property handler registered for `value.name`.
    ApplyProperty(PropertyValue),
}

/// Which handlers exist, by message full name.
pub(crate) trait HandlerNames {
    fn has_command(&self, name: &str) -> bool;
    fn has_property(&self, name: &str) -> bool;
}

/// What the session needs from the device configuration.
#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    pub device_id: DeviceId,
    /// The schema as sent in `Hello.schema`.
    pub schema: Bytes,
    pub schema_compression: Compression,
    pub heartbeat_interval: Duration,
    pub telemetry_linger: Duration,
    /// Most bytes of records (telemetry batches, reported properties) kept in memory;
    /// beyond it the oldest waiting ones go to the store, or are dropped without one.
    pub max_queued_bytes: usize,
    /// When records go to the store.
    pub persistence: Persistence,
    /// Records older than this are dropped from the store.
    pub retention: Duration,
    /// Most used percentage of the store's file system; above it the oldest stored
    /// records make room for new ones.
    pub disk_limit_percent: f64,
    /// Most bytes in the store (`None`: only the disk limit applies).
    pub max_store_bytes: Option<u64>,
    /// Most QoS 1 publishes handed to the network and not yet acknowledged.
    pub max_inflight: usize,
    /// Send `Hello` on every connection (else only on `hello/get`).
    pub hello_on_connect: bool,
    /// Pacing of publishes (`None`: as fast as the window allows).
    pub pace: Option<super::Pace>,
    /// Where the queue lives while the store works ([`StoreHealth::Durable`],
    /// [`StoreHealth::MemoryOnly`] or [`StoreHealth::Unavailable`]).
    pub store_health: StoreHealth,
}

/// Counters of what the session holds and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Telemetry messages waiting (memory, store, open batch), not yet acknowledged.
    pub queued_messages: u64,
    /// Records in the store.
    pub stored_records: u64,
    /// Telemetry messages dropped (retention, disk cap, memory cap, store errors).
    pub dropped_messages: u64,
    /// Telemetry messages in the store.
    pub stored_messages: u64,
    /// Bytes of records in memory.
    pub queued_bytes: u64,
    pub quarantined_records: u64,
    pub corrupt_records: u64,
    pub store_errors: u64,
    /// Where the queue lives ([`StoreHealth::Failing`] while the store's writes fail).
    pub store: StoreHealth,
    /// Whether the last clock reading was of a set clock.
    pub clock: ClockState,
    /// As the event loop last said ([`super::Session::set_link_issue`]).
    pub link_issue: Option<LinkIssue>,
}

impl Counters {
    /// What a heartbeat carries of them.
    pub fn heartbeat_status(&self) -> HeartbeatStatus {
        HeartbeatStatus {
            quarantined_records: self.quarantined_records,
            queued_bytes: self.queued_bytes,
            store: self.store,
            clock: self.clock,
            link_issue: self.link_issue,
            store_errors: self.store_errors,
            dropped_messages: self.dropped_messages,
            corrupt_records: self.corrupt_records,
        }
    }
}
