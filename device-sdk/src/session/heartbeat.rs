//! What the session says about itself: `Hello` (the schema), `Heartbeat` (uptime,
//! queue, and the device's status: store, clock, link, quarantine), and the counters
//! the event loop publishes as [`crate::Status`]. The heartbeat's status fields and
//! the status come from the same [`Counters`].

use mir_proto::wire::{Heartbeat, Hello};
use prost::Message;

use super::{Counters, Now, Publish, Request, Session};
use crate::{ClockState, LinkIssue, StoreHealth};

impl Session {
    pub(super) fn hello(&self, now: Now) -> Request {
        let hello = Hello {
            schema: self.cfg.schema.clone(),
            compression: self.cfg.schema_compression as i32,
            sdk_version: crate::SDK_VERSION.to_string(),
            sent_at_ns: now.unix_ns,
            heartbeat_interval_sec: self.heartbeat_interval_sec(),
        };
        Request::Publish(Publish {
            topic: self.topics.hello.clone(),
            payload: hello.encode_to_vec().into(),
        })
    }

    /// The heartbeat interval as `Hello` and `Heartbeat` carry it (whole seconds, at least 1).
    fn heartbeat_interval_sec(&self) -> u32 {
        u32::try_from(self.cfg.heartbeat_interval.as_secs().max(1)).unwrap_or(u32::MAX)
    }

    /// A heartbeat with the status as of now.
    pub(super) fn heartbeat(&self, now: Now) -> Request {
        let mut hb = Heartbeat {
            sent_at_ns: now.unix_ns,
            uptime_sec: now.mono.saturating_duration_since(self.started).as_secs(),
            queued: self.queued_messages(),
            interval_sec: self.heartbeat_interval_sec(),
            ..Default::default()
        };
        self.counters().heartbeat_status().fill(&mut hb);
        Request::Publish(Publish {
            topic: self.topics.heartbeat.clone(),
            payload: hb.encode_to_vec().into(),
        })
    }

    /// Why the link is down or unstable (`None`: it is fine), as the event loop sees
    /// it: the next heartbeats and [`Session::counters`] carry it.
    pub fn set_link_issue(&mut self, issue: Option<LinkIssue>) {
        self.link_issue = issue;
    }

    pub fn link_issue(&self) -> Option<LinkIssue> {
        self.link_issue
    }

    pub fn counters(&self) -> Counters {
        let stats = self.outbox.store.stats();
        let store = match self.cfg.store_health {
            StoreHealth::Durable if self.outbox.store_failing() => StoreHealth::Failing,
            health => health,
        };
        Counters {
            queued_messages: self.queued_messages(),
            stored_records: stats.records,
            dropped_messages: self.outbox.dropped_messages(),
            stored_messages: stats.messages,
            queued_bytes: self.outbox.memory_bytes() as u64,
            quarantined_records: self.outbox.quarantined(),
            corrupt_records: self.outbox.corrupt(),
            store_errors: self.outbox.store_errors(),
            store,
            clock: if self.clock.synced() {
                ClockState::Synced
            } else {
                ClockState::Unsynced
            },
            link_issue: self.link_issue,
        }
    }
}
