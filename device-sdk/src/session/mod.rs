//! The session state machine, free of I/O.
//!
//! It decides what a device sends on every connect, what to do with each incoming
//! message, how telemetry is batched, when heartbeats are due, in which order queued
//! messages leave and what the offline store must do. Time comes in as arguments
//! ([`Now`]). The event loop (`eventloop.rs`) feeds it network events, moves its
//! [`Request`]s to rumqttc, runs its [`StoreOp`]s in order off the async executor and
//! hands each [`StoreReply`] back. The same split as rumqttc's `state.rs` /
//! `eventloop.rs`, so every rule here is unit-tested without a broker or a disk.
//!
//! - `batcher`: telemetry batches under the payload limit;
//! - `heartbeat`: `Hello`, `Heartbeat` with the device's status, the counters;
//! - `outbox`: control messages, records in memory and in the store, replay order,
//!   the in-flight window and acknowledgements;
//! - `properties`: desired values (newest wins, applied once, cached) and reported ones;
//! - `store_op`: the store operations, their answers, what a store holds at boot;
//! - `waits`: callers waiting until their messages are committed or safe;
//! - `types`: clocks, requests, actions, configuration, counters.

use std::time::{Duration, Instant};

use bytes::Bytes;
#[cfg(test)]
use mir_proto::wire::CommandResponse;
use mir_proto::{
    topics::DeviceTopic,
    wire::{PropertyValue, TelemetryBatch, TelemetryItem},
    DeviceId,
};
use prost::Message;

use crate::{
    config::Persistence,
    store::{RecordKind, StoreStats},
    SdkError,
};

mod batcher;
mod clock_fix;
mod commands;
mod heartbeat;
mod outbox;
mod pacer;
mod properties;
mod store_op;
mod types;
mod waits;

#[cfg(test)]
use batcher::batch_entry_len;
pub(crate) use batcher::check_item_fits;
use batcher::Batcher;
pub use batcher::{BATCH_LIMIT, BATCH_SAFETY_MARGIN};
use clock_fix::ClockFix;
pub(crate) use commands::error_response;
use commands::Commands;
pub(crate) use outbox::Token;
use outbox::{Kind, Outbox, OutboxConfig};
#[cfg(test)]
use outbox::{DELETE_LINGER, MAX_CONTROL_QUEUED};
pub use pacer::Pace;
use pacer::Pacer;
use properties::{reported_payload, Properties};
use store_op::StoreQueue;
pub(crate) use store_op::{
    room_needed, trim_oldest, Appended, Room, StoreBoot, StoreOp, StoreOutcome, StoreReply,
    META_DESIRED, META_SEQ,
};
pub(crate) use types::{
    unix_ns, Action, Counters, HandlerNames, Now, Publish, Request, SessionConfig,
};
use waits::Waits;
pub(crate) use waits::{NotStored, Settled, WaitId};

/// How often retention is applied to the store.
pub(crate) const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// Sequence numbers reserved in the store at once (one write per block).
const SEQ_BLOCK: u64 = 10_000;

#[derive(Debug, Clone)]
struct Topics {
    hello: String,
    heartbeat: String,
    desired_get: String,
    command_response: String,
    command_request: String,
    reported: String,
    desired: String,
    hello_get: String,
}

impl Topics {
    fn new(id: &DeviceId) -> Self {
        Self {
            hello: DeviceTopic::Hello.for_device(id),
            heartbeat: DeviceTopic::Heartbeat.for_device(id),
            desired_get: DeviceTopic::DesiredGet.for_device(id),
            command_response: DeviceTopic::CommandResponse.for_device(id),
            command_request: DeviceTopic::CommandRequest.for_device(id),
            reported: DeviceTopic::Reported.for_device(id),
            desired: DeviceTopic::Desired.for_device(id),
            hello_get: DeviceTopic::HelloGet.for_device(id),
        }
    }
}

/// One device session across connections.
pub(crate) struct Session {
    cfg: SessionConfig,
    topics: Topics,
    started: Instant,
    connected: bool,
    next_seq: u64,
    /// Sequence numbers below this are reserved (asked for) in the store.
    seq_reserved: u64,
    /// Sequence numbers below this are reserved and the store said so: a restart
    /// starts above them. Records in memory leave only while every number used is
    /// below it (`u64::MAX` without a store).
    seq_durable: u64,
    /// A reservation was asked for and not answered yet.
    seq_asking: bool,
    batcher: Batcher,
    next_heartbeat: Option<Instant>,
    next_retention: Option<Instant>,
    outbox: Outbox,
    properties: Properties,
    waits: Waits,
    clock: ClockFix,
    commands: Commands,
    /// Pacing of publishes (`None`: unpaced), and the size of the publish it holds back.
    pacer: Option<Pacer>,
    paced: Option<usize>,
    /// The publish last offered by [`Session::next_request`] and its size.
    offered: Option<(Token, usize)>,
    /// Why the link is down or unstable, as the event loop last said.
    link_issue: Option<crate::LinkIssue>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("device_id", &self.cfg.device_id)
            .field("connected", &self.connected)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session over a store holding `boot` (`None`: no store, memory only, as with
    /// [`crate::Persistence::NoStorage`]). The store gives the next sequence number and the
    /// last desired values; the session's first store operations reserve sequence
    /// numbers and apply retention.
    pub fn new(cfg: SessionConfig, boot: Option<StoreBoot>, now: Now) -> Self {
        let topics = Topics::new(&cfg.device_id);
        let batcher = Batcher::new(cfg.telemetry_linger, BATCH_LIMIT);
        let next_key = boot
            .as_ref()
            .and_then(|b| b.stats.last_key)
            .map_or(1, |k| k.saturating_add(1));
        let outbox = Outbox::new(
            OutboxConfig {
                persistence: cfg.persistence,
                max_queued_bytes: cfg.max_queued_bytes,
                max_inflight: cfg.max_inflight,
                room: Room {
                    max_bytes: cfg.max_store_bytes,
                    disk_limit_percent: cfg.disk_limit_percent,
                },
                telemetry_topic: DeviceTopic::Telemetry.for_device(&cfg.device_id),
                reported_topic: DeviceTopic::Reported.for_device(&cfg.device_id),
            },
            StoreQueue::new(boot.as_ref()),
            next_key,
        );
        // Without storage, start from the clock in microseconds so that the sequence
        // keeps increasing across restarts.
        let clock_seq = u64::try_from(now.unix_ns.max(crate::clock::CLOCK_FLOOR_NS) / 1_000)
            .unwrap_or(0)
            .max(1);
        let mut s = Self {
            next_seq: clock_seq,
            seq_reserved: u64::MAX,
            seq_durable: u64::MAX,
            seq_asking: false,
            topics,
            started: now.mono,
            connected: false,
            batcher,
            next_heartbeat: None,
            next_retention: None,
            outbox,
            properties: Properties::default(),
            waits: Waits::default(),
            clock: ClockFix::new(now),
            commands: Commands::default(),
            pacer: cfg.pace.map(Pacer::new),
            paced: None,
            offered: None,
            link_issue: None,
            cfg,
        };
        if let Some(boot) = boot {
            s.boot(boot, now);
        }
        s
    }

    fn boot(&mut self, boot: StoreBoot, now: Now) {
        let mut stored_seq = 0;
        match boot.seq {
            Ok(Some(v)) if v.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v);
                stored_seq = u64::from_be_bytes(b);
                self.next_seq = self.next_seq.max(stored_seq);
            }
            Ok(_) => {}
            Err(e) => tracing::error!("cannot read the sequence number from the store: {e}"),
        }
        // Until this run's reservation is written, a restart would start at the
        // stored value.
        self.seq_durable = stored_seq;
        match boot.desired {
            Ok(values) => self.properties.load_cached(values),
            Err(e) => tracing::error!("cannot read cached desired properties: {e}"),
        }
        self.reserve_seq();
        self.apply_retention(now);
        self.next_retention = Some(now.mono + RETENTION_EVERY);
    }

    fn reserve_seq(&mut self) {
        if !self.outbox.store.enabled() || self.seq_asking {
            return;
        }
        let upto = self.next_seq.saturating_add(SEQ_BLOCK);
        self.seq_reserved = upto;
        self.seq_asking = true;
        self.outbox.store.push(StoreOp::ReserveSeq { upto });
    }

    fn on_seq_reserved(&mut self, upto: u64, result: Result<(), crate::store::StoreError>) {
        self.seq_asking = false;
        match result {
            Ok(()) => {
                self.seq_durable = self.seq_durable.max(upto);
                if self.next_seq >= self.seq_reserved {
                    self.reserve_seq();
                }
            }
            Err(e) => {
                self.outbox.note_store_error();
                tracing::error!("cannot reserve sequence numbers in the store: {e}");
                self.seq_reserved = u64::MAX;
                self.seq_durable = u64::MAX;
            }
        }
    }

    /// The store operations to run now, in order. Each one's answer goes to
    /// [`Session::on_store_reply`], in the same order.
    pub fn take_store_ops(&mut self) -> Vec<StoreOp> {
        self.outbox.store.take()
    }

    /// The answer of the oldest store operation still running.
    pub fn on_store_reply(&mut self, reply: StoreReply) {
        self.outbox.store.answered(reply.stats);
        match reply.outcome {
            StoreOutcome::Appended(appended) => {
                let settled = self.outbox.on_appended(appended);
                self.waits.on_append(&settled);
            }
            StoreOutcome::Read { ticket, result } => self.outbox.on_read(ticket, result),
            StoreOutcome::Removed(Ok(())) => {}
            StoreOutcome::Removed(Err(e)) => {
                self.outbox.note_store_error();
                tracing::error!("cannot remove acknowledged records from the store: {e}");
            }
            StoreOutcome::Quarantined { key, result } => {
                if let Err(e) = result {
                    self.outbox.note_store_error();
                    tracing::error!(key, "cannot move a record to the quarantine: {e}");
                }
            }
            StoreOutcome::Expired { cutoff_ns, result } => match result {
                Ok(removed) if removed.records > 0 => {
                    tracing::warn!(
                        records = removed.records,
                        messages = removed.messages,
                        "dropped records older than the retention of {:?}",
                        self.cfg.retention
                    );
                    self.outbox.on_expired(cutoff_ns, removed.messages);
                }
                Ok(_) => {}
                Err(e) => {
                    self.outbox.note_store_error();
                    tracing::error!("cannot apply retention to the offline store: {e}");
                }
            },
            StoreOutcome::SeqReserved { upto, result } => self.on_seq_reserved(upto, result),
            StoreOutcome::DesiredCached { name, result } => {
                if let Err(e) = result {
                    self.outbox.note_store_error();
                    tracing::error!(name, "cannot cache a desired value: {e}");
                }
            }
        }
    }

    #[allow(dead_code)]
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// On every ConnAck (rumqttc does not re-subscribe by itself): subscribe, say hello,
    /// pull desired properties and send a heartbeat, before anything else queued.
    pub fn on_connected(&mut self, now: Now) {
        self.clock.observe(now);
        self.connected = true;
        let mut burst = vec![Request::Subscribe(vec![
            self.topics.command_request.clone(),
            self.topics.desired.clone(),
            self.topics.hello_get.clone(),
        ])];
        if self.cfg.hello_on_connect {
            burst.push(self.hello(now));
        }
        burst.push(Request::Publish(Publish {
            topic: self.topics.desired_get.clone(),
            payload: Bytes::new(),
        }));
        burst.push(self.heartbeat(now));
        self.outbox.start_connection(burst);
        self.next_heartbeat = Some(now.mono + self.cfg.heartbeat_interval);
    }

    /// The connection dropped: whatever was handed to the network and not acknowledged
    /// is sent again on the next connection (the network layer drops its own copies),
    /// and with [`crate::Persistence::IfOffline`] what waits in memory moves to the store.
    pub fn on_disconnected(&mut self) {
        self.connected = false;
        self.next_heartbeat = None;
        self.outbox.on_disconnected();
    }

    /// A message from the broker on one of the device's subscriptions.
    pub fn on_incoming(
        &mut self,
        topic: &str,
        payload: &Bytes,
        handlers: &dyn HandlerNames,
        now: Now,
    ) -> Vec<Action> {
        if topic == self.topics.command_request {
            self.on_command(payload, handlers, now)
                .into_iter()
                .collect()
        } else if topic == self.topics.desired {
            self.properties
                .on_desired(payload, handlers, &mut self.outbox.store)
        } else if topic == self.topics.hello_get {
            let hello = self.hello(now);
            self.outbox.push_control(Kind::PerConnection, hello);
            Vec::new()
        } else {
            tracing::debug!(topic, "ignoring a message on an unexpected topic");
            Vec::new()
        }
    }

    /// A property handler registered (or, at launch, found registered) gets the newest
    /// value received or cached in the store.
    pub fn on_property_registered(&mut self, name: &str) -> Option<Action> {
        self.properties.on_registered(name)
    }

    /// Last desired value applied per property name.
    #[allow(dead_code)]
    pub fn applied_properties(&self) -> impl Iterator<Item = &PropertyValue> {
        self.properties.applied()
    }

    /// Accepts a telemetry item (its `seq` is assigned here) into the current batch.
    pub fn push_telemetry(&mut self, item: TelemetryItem, now: Now) -> Result<u64, SdkError> {
        self.accept_telemetry(item, now, None)
    }

    /// Accepts a telemetry item like [`Session::push_telemetry`], for a caller waiting
    /// with `wait`: settled (see [`Session::take_settled`]) once the message is committed
    /// to the store when [`Session::commits_telemetry`], else at once. Nothing is
    /// settled when the item is refused.
    pub fn push_telemetry_awaited(
        &mut self,
        item: TelemetryItem,
        now: Now,
        wait: WaitId,
    ) -> Result<u64, SdkError> {
        self.accept_telemetry(item, now, Some(wait))
    }

    fn accept_telemetry(
        &mut self,
        mut item: TelemetryItem,
        now: Now,
        wait: Option<WaitId>,
    ) -> Result<u64, SdkError> {
        self.clock.observe(now);
        let seq = self.next_seq;
        item.seq = seq;
        if let Some(batch) = self.batcher.push(item, now.mono)? {
            self.queue_batch(batch, now);
        }
        match wait {
            Some(id) if self.commits_telemetry() => self.waits.in_open_batch(id),
            Some(id) => self.waits.settle_now(id),
            None => {}
        }
        self.next_seq += 1;
        if self.next_seq >= self.seq_reserved {
            self.reserve_seq();
        }
        Ok(seq)
    }

    fn queue_batch(&mut self, batch: TelemetryBatch, now: Now) {
        let messages = u32::try_from(batch.items.len()).unwrap_or(u32::MAX);
        let unsynced = batch.items.iter().any(|i| i.clock_unsynced);
        let (key, appended) = self.outbox.add_record(
            RecordKind::Telemetry,
            batch.encode_to_vec().into(),
            messages,
            self.clock.record_time(now),
            self.connected,
        );
        if unsynced {
            self.clock.restamp_later(key);
        }
        self.waits.batch_closed(key, appended);
    }

    /// Whether every telemetry message is committed to the store before anything else
    /// ([`Persistence::Always`] over a store): its batch then closes as soon as no
    /// append runs (so that the messages arriving during one commit share the next),
    /// not at the linger.
    pub fn commits_telemetry(&self) -> bool {
        self.outbox.store.enabled() && self.cfg.persistence == Persistence::Always
    }

    /// The open batch is to close now: a commit is due and the store is free for it.
    fn commit_due(&self) -> bool {
        self.commits_telemetry() && self.batcher.len() > 0 && !self.outbox.is_appending()
    }

    /// A flush for a caller waiting with `wait`: closes the open batch; settled once
    /// every telemetry message and reported property accepted so far is safe:
    /// acknowledged by the broker or committed to the store (or dropped by a cap).
    pub fn flush(&mut self, now: Now, wait: WaitId) {
        self.flush_telemetry(now);
        self.waits.barrier(self.outbox.next_key(), wait);
    }

    /// The waits settled since the last call, with how they ended.
    pub fn take_settled(&mut self) -> Vec<Settled> {
        let outbox = &self.outbox;
        self.waits.take(|| outbox.first_unsafe_key())
    }

    /// Closes the current batch now (shutdown).
    pub fn flush_telemetry(&mut self, now: Now) {
        if let Some(batch) = self.batcher.take() {
            self.queue_batch(batch, now);
        }
    }

    /// Queues reported properties (kept like telemetry until acknowledged).
    pub fn push_reported(&mut self, value: PropertyValue, now: Now) -> Result<(), SdkError> {
        let payload = reported_payload(value, &self.topics.reported)?;
        self.outbox.add_record(
            RecordKind::Reported,
            payload,
            0,
            self.clock.record_time(now),
            self.connected,
        );
        Ok(())
    }

    /// Queues a message on one of the device's custom routes (`mir/{id}/x/{module}/{route}`,
    /// checked by the caller, as is its size). It is not a record: it never goes to the
    /// store. It waits in memory, after the control messages queued before it, until
    /// the broker acknowledges it, and is sent again after a reconnect; when the
    /// control queue is full the oldest custom message is dropped first.
    pub fn push_custom(&mut self, publish: Publish) {
        self.outbox
            .push_control(Kind::Custom, Request::Publish(publish));
    }

    /// Asks the store to drop the records older than the retention. Only by a set
    /// clock, and records whose time is not a real one (written before the clock was
    /// set) are never dropped by it: a clock that jumps deletes nothing.
    fn apply_retention(&mut self, now: Now) {
        if !now.synced {
            return;
        }
        let Ok(retention) = i64::try_from(self.cfg.retention.as_nanos()) else {
            return;
        };
        let cutoff_ns = now.unix_ns.saturating_sub(retention);
        self.outbox.store.push(StoreOp::Expire { cutoff_ns });
    }

    /// Fires due timers: the telemetry linger (with [`Persistence::Always`], as soon as
    /// the store is free to commit the batch), the heartbeat, store maintenance.
    pub fn on_timer(&mut self, now: Now) {
        self.clock.observe(now);
        if let Some(pacer) = &mut self.pacer {
            pacer.refill(now.mono);
        }
        if self.commit_due() || self.batcher.deadline().is_some_and(|d| d <= now.mono) {
            self.flush_telemetry(now);
        }
        if let Some(due) = self.next_heartbeat {
            if due <= now.mono {
                let hb = self.heartbeat(now);
                self.outbox.push_control(Kind::PerConnection, hb);
                self.next_heartbeat = Some(now.mono + self.cfg.heartbeat_interval);
            }
        }
        if self.outbox.deletes_due().is_some_and(|d| d <= now.mono) {
            self.outbox.flush_deletes();
        }
        if self.next_retention.is_some_and(|d| d <= now.mono) {
            // A store whose writes failed is tried again with the next records.
            self.outbox.retry_store();
            self.apply_retention(now);
            self.next_retention = Some(now.mono + RETENTION_EVERY);
        }
    }

    /// When [`Session::on_timer`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let batch = if self.commit_due() {
            self.batcher.opened_at()
        } else {
            self.batcher.deadline()
        };
        let paced = match (&self.pacer, self.paced) {
            (Some(pacer), Some(bytes)) if self.connected => pacer.ready_at(bytes),
            _ => None,
        };
        [
            batch,
            paced,
            self.next_heartbeat,
            self.outbox.deletes_due(),
            self.next_retention,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next request to hand to the network and what it stands for (only while
    /// connected, and while fewer than `max_inflight` publishes wait for PUBACK).
    /// Control messages first, then records oldest first. Call [`Session::handed`]
    /// once the client took it. `None` also while the session waits for the store (a
    /// read of the records to replay, or the reservation of the sequence numbers used).
    pub fn next_request(&mut self) -> Option<(Request, Token)> {
        if !self.connected {
            return None;
        }
        let memory_ready = self.next_seq <= self.seq_durable;
        let (request, token) = self.outbox.next_request(memory_ready)?;
        let request = self.clock.restamp(request, token);
        self.paced = None;
        self.offered = None;
        if let (Some(pacer), Request::Publish(p)) = (&self.pacer, &request) {
            let bytes = p.payload.len() + p.topic.len();
            if !pacer.allows(bytes) {
                self.paced = Some(bytes);
                return None;
            }
            self.offered = Some((token, bytes));
        }
        Some((request, token))
    }

    /// The request of `token` (from [`Session::next_request`]) was taken by the client.
    pub fn handed(&mut self, token: Token) {
        if let (Some(pacer), Some((offered, bytes))) = (&mut self.pacer, self.offered.take()) {
            if offered == token {
                pacer.take(bytes);
            }
        }
        self.outbox.handed(token);
    }

    /// The client wrote the next handed publish with packet id `pkid`.
    pub fn on_outgoing_publish(&mut self, pkid: u16) {
        self.outbox.on_outgoing_publish(pkid);
    }

    /// The broker acknowledged packet `pkid`: its message is done.
    pub fn on_puback(&mut self, pkid: u16, now: Now) {
        self.outbox.on_puback(pkid, now.mono);
    }

    /// Everything still to deliver is acknowledged (no record, control message or open
    /// batch left) and the store has nothing left to do.
    pub fn is_idle(&self) -> bool {
        self.outbox.is_idle() && self.batcher.len() == 0
    }

    /// Requests waiting: control messages, records in memory and in the store.
    pub fn queued(&self) -> usize {
        self.outbox.queued()
    }

    /// Telemetry messages not yet acknowledged: open batch, memory, store.
    pub fn queued_messages(&self) -> u64 {
        self.batcher.len() as u64 + self.outbox.queued_messages()
    }

    /// The store's counts as of its last answer, if there is one.
    #[allow(dead_code)]
    pub fn store_stats(&self) -> Option<StoreStats> {
        self.outbox
            .store
            .enabled()
            .then(|| self.outbox.store.stats())
    }

    /// Shutdown: closes the open batch, asks for pending removals, and (unless
    /// [`crate::Persistence::NoStorage`]) moves what is left in memory to the store. The
    /// event loop then runs the store operations to the end.
    pub fn close(&mut self, now: Now) {
        self.flush_telemetry(now);
        self.on_disconnected();
    }
}

#[cfg(test)]
mod durable_tests;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;
