//! The store task: runs the session's [`StoreOp`]s against the offline store off the
//! async executor and hands the answers back to the event loop.
//!
//! The [`Store`] is synchronous and commits with fsync, so it never runs on the event
//! loop's task: the task checks the store out into tokio's blocking pool with every
//! operation waiting, one batch at a time, and gets it back with one [`StoreReply`] per
//! operation. One batch at a time keeps the session's order: an operation sees the
//! effect of every operation asked for before it, and the answers come back in order.
//! (A job on the blocking pool also holds tokio's paused test clock while it runs.)

use prost::Message;
use tokio::task::JoinHandle;

use crate::{
    session::{
        room_needed, trim_oldest, Appended, Room, StoreBoot, StoreOp, StoreOutcome, StoreReply,
        META_DESIRED, META_SEQ,
    },
    store::{Record, Store},
};

/// What the store holds, for [`crate::session::Session::new`].
pub(crate) fn load_boot(store: &dyn Store) -> StoreBoot {
    StoreBoot {
        stats: store.stats(),
        seq: store.get_meta(META_SEQ),
        desired: store.scan_meta(META_DESIRED),
    }
}

/// Runs one operation.
pub(crate) fn execute(store: &mut dyn Store, op: StoreOp) -> StoreReply {
    let outcome = match op {
        StoreOp::Append { records, room } => StoreOutcome::Appended(append(store, records, &room)),
        StoreOp::Read { ticket, after, max } => StoreOutcome::Read {
            ticket,
            result: store.read_page(after, max),
        },
        StoreOp::Remove(keys) => StoreOutcome::Removed(store.remove(&keys)),
        StoreOp::Expire { cutoff_ns } => StoreOutcome::Expired {
            cutoff_ns,
            result: store.expire(cutoff_ns),
        },
        StoreOp::ReserveSeq { upto } => StoreOutcome::SeqReserved {
            upto,
            result: store.put_meta(META_SEQ, &upto.to_be_bytes()),
        },
        StoreOp::Quarantine(key) => StoreOutcome::Quarantined {
            key,
            result: store.quarantine(key),
        },
        StoreOp::CacheDesired(value) => {
            let key = format!("{META_DESIRED}{}", value.name);
            let result = store.put_meta(&key, &value.encode_to_vec());
            StoreOutcome::DesiredCached {
                name: value.name,
                result,
            }
        }
    };
    StoreReply {
        outcome,
        stats: store.stats(),
    }
}

/// Makes room under the caps by dropping the oldest stored records (then the oldest
/// new ones if that is not enough), then appends in one commit.
fn append(store: &mut dyn Store, mut records: Vec<Record>, room: &Room) -> Appended {
    let new_bytes: u64 = records.iter().map(Record::stored_len).sum();
    let (need, disk_full) = room_needed(
        room,
        store.stats().bytes,
        new_bytes,
        store.disk_used_percent(),
    );
    let mut done = Appended {
        disk_full,
        ..Appended::default()
    };
    if need > 0 {
        match store.drop_oldest(need) {
            Ok(removed) => {
                done.freed = removed;
                if removed.bytes < need {
                    let keys: Vec<u64> = records.iter().map(|r| r.key).collect();
                    done.dropped_new = Some(trim_oldest(&mut records, need - removed.bytes));
                    let cut = keys.len() - records.len();
                    done.dropped_keys = keys[..cut].to_vec();
                }
            }
            Err(e) => done.room_error = Some(e),
        }
    }
    if !records.is_empty() {
        if let Err(e) = store.append(&records) {
            done.failed = Some((e, records));
        }
    }
    done
}

type Job = JoinHandle<(Box<dyn Store>, Vec<StoreReply>)>;

/// The offline store of a running device, if it has one.
pub(crate) struct StoreTask {
    /// The store, while no job holds it.
    store: Option<Box<dyn Store>>,
    /// Operations for the next job.
    waiting: Vec<StoreOp>,
    job: Option<Job>,
}

impl StoreTask {
    /// No store: nothing is ever asked.
    pub fn none() -> Self {
        Self {
            store: None,
            waiting: Vec::new(),
            job: None,
        }
    }

    /// Reads what `store` holds (off the executor) and takes it over; `None` when the
    /// runtime is shutting down.
    pub async fn open(store: Box<dyn Store>) -> Option<(Self, StoreBoot)> {
        let loaded = tokio::task::spawn_blocking(move || {
            let boot = load_boot(&*store);
            (store, boot)
        })
        .await;
        let (store, boot) = match loaded {
            Ok(loaded) => loaded,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                tracing::error!("cannot read the offline store: {e}");
                return None;
            }
        };
        let task = Self {
            store: Some(store),
            ..Self::none()
        };
        Some((task, boot))
    }

    /// Queues operations after those already asked for.
    pub fn submit(&mut self, ops: Vec<StoreOp>) {
        self.waiting.extend(ops);
        self.start_job();
    }

    fn start_job(&mut self) {
        if self.job.is_some() || self.waiting.is_empty() {
            return;
        }
        let Some(mut store) = self.store.take() else {
            return;
        };
        let ops = std::mem::take(&mut self.waiting);
        self.job = Some(tokio::task::spawn_blocking(move || {
            let replies = ops.into_iter().map(|op| execute(&mut *store, op)).collect();
            (store, replies)
        }));
    }

    /// A job runs or waits to run.
    pub fn is_busy(&self) -> bool {
        self.job.is_some()
    }

    /// The answers of the running job, in order (pending while none runs); then starts
    /// the next job. Cancel safe: dropped before the job ends, the answers are kept.
    pub async fn replies(&mut self) -> Vec<StoreReply> {
        let Some(job) = self.job.as_mut() else {
            return std::future::pending().await;
        };
        let joined = job.await;
        self.job = None;
        match joined {
            Ok((store, replies)) => {
                self.store = Some(store);
                self.start_job();
                replies
            }
            // A panic in the store is a panic of the event loop, as if it had run there.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                // The runtime is shutting down: the store went with the job.
                tracing::error!("the offline store task stopped: {e}");
                self.waiting.clear();
                Vec::new()
            }
        }
    }

    /// Closes the store (off the executor: closing a database may write).
    pub async fn close(mut self) {
        if let Some(store) = self.store.take() {
            let _ = tokio::task::spawn_blocking(move || drop(store)).await;
        }
    }
}

#[cfg(test)]
mod tests;
