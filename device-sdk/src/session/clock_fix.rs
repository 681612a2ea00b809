//! Times of records written while the wall clock was not set.
//!
//! The session watches every reading ([`Now::synced`]). While the clock is not set it
//! notes where the wall clock's epoch sat against the monotonic clock; at the first
//! set reading after that, the difference is the jump. Telemetry batches of this run
//! that hold items marked `clock_unsynced` are remembered by record key; when one is
//! published after the jump, its unsynced items get their real time (their time plus
//! the jump) and lose the mark. Batches of an earlier run (the jump is unknown) keep
//! the mark, and the cloud stores them at their receive time.
//!
//! Records written while the clock is not set get the time 0 in the store, which
//! retention never drops (it only drops real times older than the retention).

use std::{collections::HashSet, time::Instant};

use mir_proto::wire::TelemetryBatch;
use prost::Message;

use super::{outbox::Token, Now, Publish, Request};

#[derive(Debug)]
pub(super) struct ClockFix {
    started: Instant,
    /// Whether the last reading was of a set clock.
    synced: bool,
    /// Unix ns of the monotonic start, by the last unset reading.
    unset_base: Option<i64>,
    /// How far the clock jumped when it was set (ns), once known.
    jump: Option<i64>,
    /// Telemetry records of this run holding unsynced items.
    keys: HashSet<u64>,
}

impl ClockFix {
    pub fn new(now: Now) -> Self {
        let mut fix = Self {
            started: now.mono,
            synced: now.synced,
            unset_base: None,
            jump: None,
            keys: HashSet::new(),
        };
        fix.observe(now);
        fix
    }

    fn base(&self, now: Now) -> i64 {
        let since = now.mono.saturating_duration_since(self.started);
        now.unix_ns
            .saturating_sub(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
    }

    /// A reading of the clocks.
    pub fn observe(&mut self, now: Now) {
        self.synced = now.synced;
        if !now.synced {
            self.unset_base = Some(self.base(now));
        } else if let (Some(unset), None) = (self.unset_base, self.jump) {
            self.jump = Some(self.base(now).saturating_sub(unset));
        }
    }

    /// Whether the last reading was of a set clock.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The creation time a new record gets: the clock's, or 0 while it is not set.
    pub fn record_time(&self, now: Now) -> i64 {
        if now.synced {
            now.unix_ns
        } else {
            0
        }
    }

    /// Record `key` holds items written while the clock was not set.
    pub fn restamp_later(&mut self, key: u64) {
        self.keys.insert(key);
    }

    /// The request about to leave, with real times for the unsynced items of a record
    /// of this run once the jump is known.
    pub fn restamp(&self, request: Request, token: Token) -> Request {
        let key = match token {
            Token::Memory(key) | Token::Disk(key) => key,
            Token::Control(_) => return request,
        };
        let (Some(jump), true) = (self.jump, self.keys.contains(&key)) else {
            return request;
        };
        let Request::Publish(publish) = request else {
            return request;
        };
        let Ok(mut batch) = TelemetryBatch::decode(publish.payload.clone()) else {
            return Request::Publish(publish);
        };
        for item in batch.items.iter_mut().filter(|i| i.clock_unsynced) {
            item.sent_at_ns = item.sent_at_ns.saturating_add(jump);
            item.clock_unsynced = false;
        }
        Request::Publish(Publish {
            topic: publish.topic,
            payload: batch.encode_to_vec().into(),
        })
    }
}
