//! The device status the event loop publishes ([`Status`]) and its vocabulary: why the
//! link is down or unstable ([`LinkIssue`]), the state of the offline store
//! ([`StoreHealth`]) and of the wall clock ([`ClockState`]).

use std::time::Duration;

/// Why the device is not (stably) connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkIssue {
    /// The last attempt did not get a CONNACK (refused, unreachable, TLS failed).
    ConnectFailed,
    /// The connection was up and then ended.
    ConnectionLost,
    /// This many connections in a row ended right after their CONNACK (within
    /// [`crate::KICKED_WITHIN`]): likely another process connecting with the same
    /// client id, or a publish the IoT policy denies (AWS IoT closes the connection
    /// on both). The backoff keeps growing meanwhile.
    DroppedAfterConnect { in_a_row: u32 },
}

/// Where the offline queue lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StoreHealth {
    /// On disk (or in the store the application gave), working.
    #[default]
    Durable,
    /// In memory by choice (`inMemory`, `nostorage`).
    MemoryOnly,
    /// The store could not be opened: the device runs on the bounded memory queue.
    Unavailable,
    /// The store's writes fail: new records wait in the bounded memory queue (the
    /// store is tried again later).
    Failing,
}

/// Whether the wall clock can be trusted for message times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClockState {
    /// Set (after [`crate::CLOCK_FLOOR_UNIX_SECS`], or the time source says so).
    #[default]
    Synced,
    /// Not set yet: records written now carry boot-relative times until it is.
    Unsynced,
}

/// Connection, queue, store and clock status, as seen by the event loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    pub connected: bool,
    /// Successful connections (ConnAck) since launch.
    pub connects: u64,
    /// Why the link is down or unstable (`None` before the first problem).
    pub link_issue: Option<LinkIssue>,
    /// While disconnected: the delay before the next attempt.
    pub retry_in: Option<Duration>,
    /// Telemetry messages not yet acknowledged by the broker (open batch, memory, store).
    pub queued_messages: u64,
    /// Bytes of records waiting in memory (bounded by `max_queued_bytes`).
    pub queued_bytes: u64,
    /// Records (telemetry batches, reported properties) in the offline store.
    pub stored_records: u64,
    /// Telemetry messages dropped since launch (retention, disk cap, memory cap).
    pub dropped_messages: u64,
    /// Telemetry messages in the offline store.
    pub stored_messages: u64,
    /// Records moved to the quarantine since launch: each ended the connection on
    /// every one of its delivery attempts.
    pub quarantined_records: u64,
    /// Corrupt records skipped (and removed) since launch.
    pub corrupt_records: u64,
    pub store: StoreHealth,
    /// Failed store operations since launch.
    pub store_errors: u64,
    pub clock: ClockState,
}
