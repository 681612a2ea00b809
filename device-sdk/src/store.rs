//! The offline store: records (telemetry batches and reported properties) waiting for
//! the broker's acknowledgement, and a small key-value space for the session's own
//! state (the next sequence number, the last desired properties).
//!
//! The event loop runs the session's store operations on a [`Store`] (off the async
//! executor: every commit is fsync'd); the device uses [`RedbStore`] (an embedded,
//! transactional database in one file, pure Rust), the unit tests [`MemoryStore`].

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::{Path, PathBuf},
};

use bytes::Bytes;

mod redb_store;

pub use redb_store::RedbStore;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// An encoded `TelemetryBatch`, published on `mir/{id}/tlm`.
    Telemetry = 1,
    /// An encoded `ReportedProperties`, published on `mir/{id}/cfg/reported`.
    Reported = 2,
}

impl RecordKind {
    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(RecordKind::Telemetry),
            2 => Some(RecordKind::Reported),
            _ => None,
        }
    }
}

/// One message waiting to be published and acknowledged.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// Increasing with creation: the replay order (oldest first).
    pub key: u64,
    pub kind: RecordKind,
    /// When the record was created (Unix ns, device clock): retention is measured from it.
    pub created_ns: i64,
    /// Telemetry messages in the batch (0 for reported properties).
    pub messages: u32,
    pub payload: Bytes,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("key", &self.key)
            .field("kind", &self.kind)
            .field("created_ns", &self.created_ns)
            .field("messages", &self.messages)
            .field("bytes", &self.payload.len())
            .finish()
    }
}

impl Record {
    /// Bytes this record takes in the store (payload and header).
    pub fn stored_len(&self) -> u64 {
        self.payload.len() as u64 + HEADER_LEN as u64 + 8
    }
}

/// kind (1) + created_ns (8) + messages (4).
pub(crate) const HEADER_LEN: usize = 13;

/// Counts of a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub records: u64,
    pub messages: u64,
    pub bytes: u64,
    pub first_key: Option<u64>,
    pub last_key: Option<u64>,
}

/// Errors of the offline store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the store folder {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the store database {} failed: {reason}", path.display())]
    Database { path: PathBuf, reason: String },
    #[error("a record in the store is corrupt (key {key})")]
    Corrupt { key: u64 },
    #[error("cannot move the corrupt store file {} aside: {source}", path.display())]
    MoveAside {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Whether retrying the same I/O can succeed.
fn io_retryable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        Interrupted | WouldBlock | TimedOut | StorageFull | QuotaExceeded
    )
}

impl StoreError {
    /// Whether trying again later can help: a full disk or an I/O hiccup can clear; a
    /// corrupt record or a folder that cannot exist will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::CreateDir { source, .. } | StoreError::MoveAside { source, .. } => {
                io_retryable(source)
            }
            // The database's own errors are mostly I/O: the SDK tries the store again.
            StoreError::Database { .. } => true,
            StoreError::Corrupt { .. } => false,
        }
    }
}

/// One page of records read from a store, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub records: Vec<Record>,
    /// Keys of the records in the page's range that could not be decoded (skipped).
    pub corrupt: Vec<u64>,
}

impl Page {
    /// Entries of the store the page covers, good or corrupt.
    pub fn len(&self) -> usize {
        self.records.len() + self.corrupt.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The highest key the page covers.
    pub fn last_key(&self) -> Option<u64> {
        let good = self.records.last().map(|r| r.key);
        good.into_iter().chain(self.corrupt.iter().copied()).max()
    }
}

/// Where records wait for the broker. All reads are oldest first; nothing here holds
/// more than one page of records in memory.
pub trait Store: Send {
    /// Appends records (keys increasing, above every key already stored) in one commit.
    fn append(&mut self, records: &[Record]) -> Result<(), StoreError>;
    /// Up to `max` records with a key above `after`, oldest first.
    fn read_after(&self, after: Option<u64>, max: usize) -> Result<Vec<Record>, StoreError>;
    /// Like [`Store::read_after`], but a record that cannot be decoded is skipped (its
    /// key listed in [`Page::corrupt`]) instead of failing the page. The default reads
    /// with [`Store::read_after`] (a store whose records cannot be corrupt).
    fn read_page(&self, after: Option<u64>, max: usize) -> Result<Page, StoreError> {
        Ok(Page {
            records: self.read_after(after, max)?,
            corrupt: Vec::new(),
        })
    }
    /// Moves a record out of the queue into the store's quarantine (kept for a human
    /// to look at, never replayed). The default removes it.
    fn quarantine(&mut self, key: u64) -> Result<(), StoreError> {
        self.remove(&[key])
    }
    /// Removes records (acknowledged by the broker) in one commit.
    fn remove(&mut self, keys: &[u64]) -> Result<(), StoreError>;
    /// Removes the oldest records created before `cutoff_ns`, up to the first record
    /// with a real time at or after it; returns what was removed. A record whose time
    /// is not a real one (below [`crate::CLOCK_FLOOR_UNIX_SECS`]: written before the
    /// clock was set) is never removed by it.
    fn expire(&mut self, cutoff_ns: i64) -> Result<StoreStats, StoreError>;
    /// Removes the oldest records until at least `bytes` were freed (or the store is
    /// empty); returns what was removed.
    fn drop_oldest(&mut self, bytes: u64) -> Result<StoreStats, StoreError>;
    fn stats(&self) -> StoreStats;
    /// Percentage (0-100) of the file system holding the store that is used, if known.
    fn disk_used_percent(&self) -> Option<f64>;
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Every meta entry whose key starts with `prefix`.
    fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
}

/// A [`Store`] in memory: for tests, and for devices without a writable disk
/// ([`crate::Persistence::NoStorage`] keeps its queue in the session itself).
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: BTreeMap<u64, Record>,
    meta: HashMap<String, Vec<u8>>,
    bytes: u64,
    messages: u64,
    /// The disk usage reported by [`Store::disk_used_percent`] (tests set it).
    pub disk_used_percent: Option<f64>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn take(&mut self, key: u64, removed: &mut StoreStats) {
        if let Some(r) = self.records.remove(&key) {
            self.bytes = self.bytes.saturating_sub(r.stored_len());
            self.messages = self.messages.saturating_sub(u64::from(r.messages));
            removed.records += 1;
            removed.messages += u64::from(r.messages);
            removed.bytes += r.stored_len();
        }
    }
}

impl Store for MemoryStore {
    fn append(&mut self, records: &[Record]) -> Result<(), StoreError> {
        for r in records {
            self.bytes += r.stored_len();
            self.messages += u64::from(r.messages);
            self.records.insert(r.key, r.clone());
        }
        Ok(())
    }

    fn read_after(&self, after: Option<u64>, max: usize) -> Result<Vec<Record>, StoreError> {
        let start = after.map_or(0, |a| a.saturating_add(1));
        if after == Some(u64::MAX) {
            return Ok(Vec::new());
        }
        Ok(self
            .records
            .range(start..)
            .take(max)
            .map(|(_, r)| r.clone())
            .collect())
    }

    fn remove(&mut self, keys: &[u64]) -> Result<(), StoreError> {
        let mut removed = StoreStats::default();
        for k in keys {
            self.take(*k, &mut removed);
        }
        Ok(())
    }

    fn expire(&mut self, cutoff_ns: i64) -> Result<StoreStats, StoreError> {
        let old: Vec<u64> = self
            .records
            .values()
            .filter(|r| r.created_ns >= crate::clock::CLOCK_FLOOR_NS)
            .take_while(|r| r.created_ns < cutoff_ns)
            .map(|r| r.key)
            .collect();
        let mut removed = StoreStats::default();
        for k in old {
            self.take(k, &mut removed);
        }
        Ok(removed)
    }

    fn drop_oldest(&mut self, bytes: u64) -> Result<StoreStats, StoreError> {
        let mut removed = StoreStats::default();
        while removed.bytes < bytes {
            let Some(k) = self.records.keys().next().copied() else {
                break;
            };
            self.take(k, &mut removed);
        }
        Ok(removed)
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            records: self.records.len() as u64,
            messages: self.messages,
            bytes: self.bytes,
            first_key: self.records.keys().next().copied(),
            last_key: self.records.keys().next_back().copied(),
        }
    }

    fn disk_used_percent(&self) -> Option<f64> {
        self.disk_used_percent
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key).cloned())
    }

    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out: Vec<_> = self
            .meta
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.sort();
        Ok(out)
    }
}

/// Percentage of the file system holding `path` that is used, as `df` shows it:
/// used / (used + available to unprivileged users).
pub fn disk_used_percent(path: &Path) -> Option<f64> {
    let st = rustix::fs::statvfs(path).ok()?;
    let used = st.f_blocks.saturating_sub(st.f_bfree) as f64;
    let avail = st.f_bavail as f64;
    if used + avail <= 0.0 {
        return None;
    }
    Some((used / (used + avail) * 100.0).clamp(0.0, 100.0))
}

#[cfg(test)]
mod tests;
