//! The session's side of the offline store: the operations it asks for
//! ([`StoreOp`]), their answers ([`StoreReply`]), and what a store holds when the
//! session starts ([`StoreBoot`]).
//!
//! The state machine never calls a [`crate::store::Store`]. It queues operations in a
//! [`StoreQueue`]; the event loop takes them in order, runs them one after the other
//! off the async executor (`eventloop/store_task.rs`) and hands every answer back in
//! the same order. Because the order is kept, an operation sees the effect of every
//! operation queued before it (a read after an append finds the appended records).

use mir_proto::wire::PropertyValue;

use crate::store::{Page, Record, StoreError, StoreStats};

/// Meta key of the reserved sequence numbers (8 bytes, big endian).
pub(crate) const META_SEQ: &str = "seq";
/// Meta key prefix of the cached desired values (`desired/{name}`).
pub(crate) const META_DESIRED: &str = "desired/";

/// The caps an append must respect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Room {
    /// Most bytes in the store (`None`: only the disk limit applies).
    pub max_bytes: Option<u64>,
    /// Most used percentage of the store's file system.
    pub disk_limit_percent: f64,
}

/// One operation on the offline store, in the order the session asked for it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StoreOp {
    /// Make room under `room` by dropping the oldest stored records (then, if that is
    /// not enough, the oldest of `records`), then append `records` in one commit.
    Append { records: Vec<Record>, room: Room },
    /// Up to `max` records with a key above `after`, oldest first.
    Read {
        ticket: u64,
        after: Option<u64>,
        max: usize,
    },
    /// Remove acknowledged records in one commit.
    Remove(Vec<u64>),
    /// Remove the records created before `cutoff_ns` (retention).
    Expire { cutoff_ns: i64 },
    /// Store that sequence numbers below `upto` may have been used.
    ReserveSeq { upto: u64 },
    /// Cache the newest desired value of a property for a device booting offline.
    CacheDesired(PropertyValue),
    /// Move a record that keeps ending the connection to the quarantine.
    Quarantine(u64),
}

/// What an [`StoreOp::Append`] did.
#[derive(Debug, Default)]
pub(crate) struct Appended {
    /// The oldest stored records dropped to make room.
    pub freed: StoreStats,
    /// Whether the file system was over its limit.
    pub disk_full: bool,
    /// Telemetry messages of the new records dropped because even an empty store had
    /// no room for them (`Some` when the store could not free enough).
    pub dropped_new: Option<u64>,
    /// The keys of the new records so dropped (the oldest of the append).
    pub dropped_keys: Vec<u64>,
    /// Making room failed (the records were appended all the same).
    pub room_error: Option<StoreError>,
    /// The append failed: these records go back to memory.
    pub failed: Option<(StoreError, Vec<Record>)>,
}

/// The result of one [`StoreOp`].
#[derive(Debug)]
pub(crate) enum StoreOutcome {
    Appended(Appended),
    Read {
        ticket: u64,
        result: Result<Page, StoreError>,
    },
    Removed(Result<(), StoreError>),
    Expired {
        cutoff_ns: i64,
        result: Result<StoreStats, StoreError>,
    },
    SeqReserved {
        upto: u64,
        result: Result<(), StoreError>,
    },
    DesiredCached {
        name: String,
        result: Result<(), StoreError>,
    },
    Quarantined {
        key: u64,
        result: Result<(), StoreError>,
    },
}

/// The answer to one [`StoreOp`], with the store's counts after it.
#[derive(Debug)]
pub(crate) struct StoreReply {
    pub outcome: StoreOutcome,
    pub stats: StoreStats,
}

/// What the store holds when a session starts on it.
#[derive(Debug)]
pub(crate) struct StoreBoot {
    pub stats: StoreStats,
    /// The meta entry [`META_SEQ`].
    pub seq: Result<Option<Vec<u8>>, StoreError>,
    /// The meta entries under [`META_DESIRED`] (encoded [`PropertyValue`]s).
    pub desired: Result<Vec<(String, Vec<u8>)>, StoreError>,
}

/// Bytes the store must free before `new_bytes` more are appended: what goes over
/// `room.max_bytes`, or all of `new_bytes` when the file system is over its limit (the
/// file stops growing: new records reuse the pages of the oldest). Also tells whether
/// the disk is full.
pub(crate) fn room_needed(
    room: &Room,
    stored_bytes: u64,
    new_bytes: u64,
    disk_used_percent: Option<f64>,
) -> (u64, bool) {
    let mut need = 0u64;
    if let Some(max) = room.max_bytes {
        need = need.max((stored_bytes + new_bytes).saturating_sub(max));
    }
    let disk_full = disk_used_percent.is_some_and(|used| used >= room.disk_limit_percent);
    if disk_full {
        need = need.max(new_bytes);
    }
    (need, disk_full)
}

/// Drops the oldest of `records` until `short` bytes are saved; returns the telemetry
/// messages dropped.
pub(crate) fn trim_oldest(records: &mut Vec<Record>, mut short: u64) -> u64 {
    let mut dropped = 0u64;
    let mut cut = 0;
    while short > 0 && cut < records.len() {
        short = short.saturating_sub(records[cut].stored_len());
        dropped += u64::from(records[cut].messages);
        cut += 1;
    }
    records.drain(..cut);
    dropped
}

/// Store operations waiting for the event loop, and how many it is running.
#[derive(Debug, Default)]
pub(crate) struct StoreQueue {
    /// Whether there is a store (without one, nothing is queued).
    enabled: bool,
    waiting: Vec<StoreOp>,
    running: usize,
    /// The store's counts as of the last answer.
    stats: StoreStats,
}

impl StoreQueue {
    pub fn new(boot: Option<&StoreBoot>) -> Self {
        Self {
            enabled: boot.is_some(),
            stats: boot.map(|b| b.stats).unwrap_or_default(),
            ..Self::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn push(&mut self, op: StoreOp) {
        if self.enabled {
            self.waiting.push(op);
        }
    }

    /// The operations to run, in order (they count as running until answered).
    pub fn take(&mut self) -> Vec<StoreOp> {
        self.running += self.waiting.len();
        std::mem::take(&mut self.waiting)
    }

    /// One answer came back.
    pub fn answered(&mut self, stats: StoreStats) {
        self.running = self.running.saturating_sub(1);
        self.stats = stats;
    }

    /// No operation waits or runs.
    pub fn is_settled(&self) -> bool {
        self.waiting.is_empty() && self.running == 0
    }

    /// The store's counts (zero without a store).
    pub fn stats(&self) -> StoreStats {
        self.stats
    }
}
