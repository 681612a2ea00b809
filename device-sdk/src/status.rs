//! The device status the event loop publishes ([`Status`]) and its vocabulary: why the
//! link is down or unstable ([`LinkIssue`]), the state of the offline store
//! ([`StoreHealth`]) and of the wall clock ([`ClockState`]); and how a heartbeat
//! carries them (`mir.wire.v1.Heartbeat`, fields 5 and up: [`HeartbeatStatus`]).

use std::time::Duration;

use mir_proto::wire::{heartbeat, Heartbeat};

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

/// The part of [`Status`] a heartbeat carries, as the session knows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HeartbeatStatus {
    pub quarantined_records: u64,
    pub queued_bytes: u64,
    pub store: StoreHealth,
    pub clock: ClockState,
    pub link_issue: Option<LinkIssue>,
    pub store_errors: u64,
    pub dropped_messages: u64,
    pub corrupt_records: u64,
}

impl HeartbeatStatus {
    /// Fills the heartbeat's status fields.
    pub fn fill(&self, hb: &mut Heartbeat) {
        hb.quarantined_records = self.quarantined_records;
        hb.queued_bytes = self.queued_bytes;
        hb.store_state = store_state(self.store) as i32;
        hb.clock_state = clock_state(self.clock) as i32;
        let (issue, in_a_row) = link_issue(self.link_issue);
        hb.link_issue = issue as i32;
        hb.dropped_after_connect_in_a_row = in_a_row;
        hb.store_errors = self.store_errors;
        hb.dropped_messages = self.dropped_messages;
        hb.corrupt_records = self.corrupt_records;
    }
}

fn store_state(health: StoreHealth) -> heartbeat::StoreState {
    match health {
        StoreHealth::Durable => heartbeat::StoreState::Durable,
        StoreHealth::MemoryOnly => heartbeat::StoreState::MemoryOnly,
        StoreHealth::Unavailable => heartbeat::StoreState::Unavailable,
        StoreHealth::Failing => heartbeat::StoreState::Failing,
    }
}

fn clock_state(clock: ClockState) -> heartbeat::ClockState {
    match clock {
        ClockState::Synced => heartbeat::ClockState::Synced,
        ClockState::Unsynced => heartbeat::ClockState::Unsynced,
    }
}

/// The wire's link issue, and the count of kicks in a row it comes with.
fn link_issue(issue: Option<LinkIssue>) -> (heartbeat::LinkIssue, u32) {
    match issue {
        None => (heartbeat::LinkIssue::None, 0),
        Some(LinkIssue::ConnectFailed) => (heartbeat::LinkIssue::ConnectFailed, 0),
        Some(LinkIssue::ConnectionLost) => (heartbeat::LinkIssue::ConnectionLost, 0),
        Some(LinkIssue::DroppedAfterConnect { in_a_row }) => {
            (heartbeat::LinkIssue::DroppedAfterConnect, in_a_row)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_store_clock_and_link_state_has_its_own_wire_value() {
        let mut hb = Heartbeat::default();
        let status = HeartbeatStatus {
            quarantined_records: 1,
            queued_bytes: 2,
            store: StoreHealth::Failing,
            clock: ClockState::Unsynced,
            link_issue: Some(LinkIssue::DroppedAfterConnect { in_a_row: 4 }),
            store_errors: 3,
            dropped_messages: 5,
            corrupt_records: 6,
        };
        status.fill(&mut hb);
        assert_eq!(
            (hb.quarantined_records, hb.queued_bytes, hb.store_errors),
            (1, 2, 3)
        );
        assert_eq!((hb.dropped_messages, hb.corrupt_records), (5, 6));
        assert_eq!(hb.store_state(), heartbeat::StoreState::Failing);
        assert_eq!(hb.clock_state(), heartbeat::ClockState::Unsynced);
        assert_eq!(hb.link_issue(), heartbeat::LinkIssue::DroppedAfterConnect);
        assert_eq!(hb.dropped_after_connect_in_a_row, 4);

        let stores = [
            StoreHealth::Durable,
            StoreHealth::MemoryOnly,
            StoreHealth::Unavailable,
            StoreHealth::Failing,
        ]
        .map(|s| store_state(s) as i32);
        assert_eq!(stores, [1, 2, 3, 4]);
        assert_eq!(
            [ClockState::Synced, ClockState::Unsynced].map(|c| clock_state(c) as i32),
            [1, 2]
        );
        let links = [
            None,
            Some(LinkIssue::ConnectFailed),
            Some(LinkIssue::ConnectionLost),
        ]
        .map(link_issue);
        assert_eq!(
            links,
            [
                (heartbeat::LinkIssue::None, 0),
                (heartbeat::LinkIssue::ConnectFailed, 0),
                (heartbeat::LinkIssue::ConnectionLost, 0)
            ]
        );
    }
}
