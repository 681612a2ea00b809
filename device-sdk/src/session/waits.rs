//! Callers waiting on the session: a send with [`crate::Persistence::Always`] waits
//! until the record holding its message is committed to the store, a flush until
//! every record created before it is safe (acknowledged by the broker or committed).
//!
//! The session only tracks ids ([`WaitId`]) and says which are settled, and how; the
//! event loop holds the callers and answers them.

use std::{collections::HashMap, sync::Arc};

use super::outbox::AppendSettled;
use crate::store::StoreError;

/// A caller waiting on the session, numbered by the event loop.
pub(crate) type WaitId = u64;

/// Why a wait ended without its message committed to the store.
#[derive(Debug, Clone)]
pub(crate) enum NotStored {
    /// The append failed: the record is back in memory, still sent.
    Failed(Arc<StoreError>),
    /// The store, at its cap, had no room for the record even without older ones.
    Dropped,
}

/// How a wait ended.
pub(crate) type Settled = (WaitId, Result<(), NotStored>);

#[derive(Debug, Default)]
pub(super) struct Waits {
    /// Sends whose message is in the open batch.
    open: Vec<WaitId>,
    /// Sends by the key of the record holding their message, while its append runs.
    records: HashMap<u64, Vec<WaitId>>,
    /// Flushes: settled once no record with a key below theirs is unsafe.
    barriers: Vec<(u64, WaitId)>,
    settled: Vec<Settled>,
}

impl Waits {
    /// A send whose message just joined the open batch.
    pub fn in_open_batch(&mut self, id: WaitId) {
        self.open.push(id);
    }

    /// A wait with nothing to wait for.
    pub fn settle_now(&mut self, id: WaitId) {
        self.settled.push((id, Ok(())));
    }

    /// The open batch became record `key`; `appended`: an append of it was asked for
    /// (else it is in memory, and its sends, which promised nothing more, are settled).
    pub fn batch_closed(&mut self, key: u64, appended: bool) {
        let ids = std::mem::take(&mut self.open);
        if ids.is_empty() {
            return;
        }
        if appended {
            self.records.insert(key, ids);
        } else {
            self.settled.extend(ids.into_iter().map(|id| (id, Ok(()))));
        }
    }

    /// The store answered an append.
    pub fn on_append(&mut self, settled: &AppendSettled) {
        for key in &settled.stored {
            self.settle_record(*key, Ok(()));
        }
        for key in &settled.dropped {
            self.settle_record(*key, Err(NotStored::Dropped));
        }
        if let Some((error, keys)) = &settled.failed {
            for key in keys {
                self.settle_record(*key, Err(NotStored::Failed(Arc::clone(error))));
            }
        }
    }

    fn settle_record(&mut self, key: u64, result: Result<(), NotStored>) {
        if let Some(ids) = self.records.remove(&key) {
            self.settled
                .extend(ids.into_iter().map(|id| (id, result.clone())));
        }
    }

    /// A flush: settled once every record with a key below `below` is safe.
    pub fn barrier(&mut self, below: u64, id: WaitId) {
        self.barriers.push((below, id));
    }

    /// The waits settled since the last call. `first_unsafe` gives the oldest record
    /// neither acknowledged nor committed, if any.
    pub fn take(&mut self, first_unsafe: impl FnOnce() -> Option<u64>) -> Vec<Settled> {
        if !self.barriers.is_empty() {
            let first = first_unsafe();
            let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.barriers)
                .into_iter()
                .partition(|(below, _)| first.is_none_or(|k| k >= *below));
            self.barriers = waiting;
            self.settled
                .extend(done.into_iter().map(|(_, id)| (id, Ok(()))));
        }
        std::mem::take(&mut self.settled)
    }
}
