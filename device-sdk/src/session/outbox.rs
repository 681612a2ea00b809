//! The outbox: what waits to be published, the order it leaves in, and what is in
//! flight until its PUBACK.
//!
//! Control messages (the connect burst, heartbeats, command responses) leave first,
//! then records (telemetry batches, reported properties) oldest first, from memory or
//! from the offline store. The outbox never touches the store itself: it queues
//! [`StoreOp`]s (append, read ahead, remove what was acknowledged) and takes their
//! answers. While an append or a read it asked for is unanswered, no record leaves
//! unless it is known to be older than anything the store may return, so replay stays
//! oldest first and a record written with [`Persistence::Always`] is on disk before it
//! is published.
//!
//! Poison records: when a connection drops with several records in flight, the records
//! up to the newest of them are sent again one at a time; a record that is alone in
//! flight when a connection drops counts one delivery attempt, and after
//! [`MAX_ATTEMPTS`] it is moved to the quarantine (the store's, or dropped from
//! memory), counted, and replay goes on behind it.
//!
//! A store whose writes fail: records wait in the bounded memory queue instead (the
//! oldest dropped past the cap, counted) until [`Outbox::retry_store`]; with
//! [`Persistence::Always`] every append is still tried, so that each send learns it
//! was not stored.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::{
    store_op::{Appended, Room, StoreOp, StoreQueue},
    Publish, Request,
};
use crate::{
    config::Persistence,
    store::{Page, Record, RecordKind, StoreError},
};

/// Whether a record's creation time is a real one (not written before the clock was set).
fn has_real_time(r: &Record) -> bool {
    r.created_ns >= crate::clock::CLOCK_FLOOR_NS
}

mod poison;

/// Most control messages (responses, reported properties, ...) kept while offline.
pub(crate) const MAX_CONTROL_QUEUED: usize = 1024;
/// Largest bytes of publishes in flight (at least one publish is always allowed).
const MAX_INFLIGHT_BYTES: usize = 2 * 1024 * 1024;
/// Records read from the store at once.
const PREFETCH: usize = 16;
/// Deliveries of a record, each ended by the connection dropping while it was alone in
/// flight, before it is quarantined.
pub(crate) const MAX_ATTEMPTS: u32 = 3;
/// Acknowledged store records are removed in one commit at most this long after the ack.
pub(crate) const DELETE_LINGER: Duration = Duration::from_millis(200);
/// ... or as soon as this many are waiting.
const DELETE_BATCH: usize = 256;

/// Why a control message is queued: per-connection messages are replaced on every
/// connect (and forgotten when the connection drops), the others wait until acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    PerConnection,
    Durable,
    /// A message on a custom device route: kept in memory until acknowledged, like
    /// [`Kind::Durable`] (never in the store), and the first to go when the control
    /// queue is full.
    Custom,
}

impl Kind {
    /// Whether a message of this kind waits until acknowledged (across connections).
    fn kept(self) -> bool {
        self != Kind::PerConnection
    }
}

#[derive(Debug, Clone)]
struct Control {
    id: u64,
    kind: Kind,
    request: Request,
}

/// What a request handed to the network stands for, to settle it on PUBACK or put it
/// back when the connection drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token {
    /// A control message (connect burst, heartbeat, command response) by its id.
    Control(u64),
    /// A record kept in memory, by key.
    Memory(u64),
    /// A record of the store, by key.
    Disk(u64),
}

/// What the outbox needs from the session configuration.
#[derive(Debug, Clone)]
pub(super) struct OutboxConfig {
    pub persistence: Persistence,
    pub max_queued_bytes: usize,
    pub max_inflight: usize,
    pub room: Room,
    pub telemetry_topic: String,
    pub reported_topic: String,
}

/// What became of the records of one answered append, by key.
#[derive(Debug, Default)]
pub(super) struct AppendSettled {
    /// Committed to the store.
    pub stored: Vec<u64>,
    /// Dropped: even an empty store had no room for them.
    pub dropped: Vec<u64>,
    /// Not written, with the store's error: they are back in memory.
    pub failed: Option<(Arc<StoreError>, Vec<u64>)>,
}

/// A read of the store not answered yet.
#[derive(Debug, Clone, Copy)]
struct PendingRead {
    ticket: u64,
    /// [`Outbox::appends`] when it was asked: a later append may hold records it misses.
    appends: u64,
}

#[derive(Debug)]
pub(super) struct Outbox {
    cfg: OutboxConfig,
    /// The store operations asked for (and the store's counts).
    pub store: StoreQueue,

    control: VecDeque<Control>,
    next_control_id: u64,
    control_inflight: BTreeMap<u64, Control>,

    memory: BTreeMap<u64, Record>,
    memory_bytes: usize,
    memory_messages: u64,
    /// The last memory record handed to the network on this connection.
    mem_cursor: Option<u64>,

    /// The last store record handed to the network on this connection.
    disk_cursor: Option<u64>,
    prefetch: VecDeque<Record>,
    /// Whether the store may hold records above `disk_cursor` that are not prefetched.
    disk_more: bool,
    read: Option<PendingRead>,
    next_ticket: u64,
    /// Appends asked for so far.
    appends: u64,
    /// The record keys of every append asked for and not answered yet, in order.
    appending: VecDeque<Vec<u64>>,
    pending_deletes: Vec<u64>,
    deletes_due: Option<Instant>,
    next_key: u64,

    /// Handed to the client, waiting for its packet id (rumqttc assigns them in order).
    handed: VecDeque<(Token, usize)>,
    /// Written with a packet id, waiting for PUBACK.
    inflight: HashMap<u16, (Token, usize)>,
    inflight_bytes: usize,
    dropped_messages: u64,
    dropped_control: u64,

    /// The store's writes failed: records wait in memory until a retry.
    store_failing: bool,
    store_errors: u64,
    /// Delivery attempts that ended the connection, by record key.
    attempts: HashMap<u64, u32>,
    /// Records up to this key leave one at a time (a drop found several in flight).
    suspect_upto: Option<u64>,
    quarantined: u64,
    corrupt: u64,
    known_corrupt: HashSet<u64>,
    /// The highest key of the store's pages read on this connection.
    read_upto: Option<u64>,
}

impl Outbox {
    /// An empty outbox; record keys start at `next_key` (above every stored key).
    pub fn new(cfg: OutboxConfig, store: StoreQueue, next_key: u64) -> Self {
        Self {
            cfg,
            store,
            control: VecDeque::new(),
            next_control_id: 1,
            control_inflight: BTreeMap::new(),
            memory: BTreeMap::new(),
            memory_bytes: 0,
            memory_messages: 0,
            mem_cursor: None,
            disk_cursor: None,
            prefetch: VecDeque::new(),
            disk_more: true,
            read: None,
            next_ticket: 1,
            appends: 0,
            appending: VecDeque::new(),
            pending_deletes: Vec::new(),
            deletes_due: None,
            next_key,
            handed: VecDeque::new(),
            inflight: HashMap::new(),
            inflight_bytes: 0,
            dropped_messages: 0,
            dropped_control: 0,
            store_failing: false,
            store_errors: 0,
            attempts: HashMap::new(),
            suspect_upto: None,
            quarantined: 0,
            corrupt: 0,
            known_corrupt: HashSet::new(),
            read_upto: None,
        }
    }

    fn control_id(&mut self) -> u64 {
        let id = self.next_control_id;
        self.next_control_id += 1;
        id
    }

    /// Queues a control message after the others.
    pub fn push_control(&mut self, kind: Kind, request: Request) {
        if self.control.len() >= MAX_CONTROL_QUEUED {
            let oldest = |kind| self.control.iter().position(|c: &Control| c.kind == kind);
            if let Some(i) = oldest(Kind::Custom).or_else(|| oldest(Kind::Durable)) {
                self.control.remove(i);
                self.dropped_control += 1;
                tracing::warn!("offline control queue full: dropped the oldest message");
            }
        }
        let id = self.control_id();
        self.control.push_back(Control { id, kind, request });
    }

    /// A new connection: `burst` goes first, replacing the per-connection messages
    /// of the last one.
    pub fn start_connection(&mut self, burst: Vec<Request>) {
        self.control.retain(|c| c.kind.kept());
        for request in burst.into_iter().rev() {
            let id = self.control_id();
            self.control.push_front(Control {
                id,
                kind: Kind::PerConnection,
                request,
            });
        }
    }

    /// The connection dropped: whatever was handed to the network and not acknowledged
    /// is sent again on the next connection, and unless [`Persistence::NoStorage`]
    /// what waits in memory moves to the store.
    pub fn on_disconnected(&mut self) {
        let in_flight = self.records_in_flight();
        self.count_attempts(&in_flight);
        self.handed.clear();
        self.inflight.clear();
        self.inflight_bytes = 0;
        let unacked = std::mem::take(&mut self.control_inflight);
        for (_, c) in unacked.into_iter().rev() {
            if c.kind.kept() {
                self.control.push_front(c);
            }
        }
        self.mem_cursor = None;
        self.flush_deletes();
        self.disk_cursor = None;
        self.read_upto = None;
        self.prefetch.clear();
        self.disk_more = true;
        // An answer to a read of this connection is for a cursor that is gone.
        self.read = None;
        if self.store.enabled()
            && self.cfg.persistence != Persistence::NoStorage
            && !self.store_failing
        {
            let records: Vec<Record> = std::mem::take(&mut self.memory).into_values().collect();
            self.memory_bytes = 0;
            self.memory_messages = 0;
            self.persist(records);
        }
    }

    /// A new record: to the store or to memory, as the persistence type says. Returns
    /// its key and whether an append of it was asked for.
    pub fn add_record(
        &mut self,
        kind: RecordKind,
        payload: Bytes,
        messages: u32,
        created_ns: i64,
        connected: bool,
    ) -> (u64, bool) {
        let key = self.next_key;
        let record = Record {
            key,
            kind,
            created_ns,
            messages,
            payload,
        };
        self.next_key += 1;
        let to_store = self.store.enabled()
            && match self.cfg.persistence {
                Persistence::Always => true,
                Persistence::IfOffline => !connected && !self.store_failing,
                Persistence::NoStorage => false,
            };
        if to_store {
            self.persist(vec![record]);
        } else {
            let spill = !self.store_failing;
            self.keep_in_memory(record, spill);
        }
        (key, to_store)
    }

    /// The key the next record gets (above every record so far).
    pub fn next_key(&self) -> u64 {
        self.next_key
    }

    /// Whether an append asked for is not answered yet.
    pub fn is_appending(&self) -> bool {
        !self.appending.is_empty()
    }

    /// The oldest record neither acknowledged by the broker nor committed to the store
    /// (in memory, or in an append not answered yet); records below it are safe.
    pub fn first_unsafe_key(&self) -> Option<u64> {
        let in_memory = self.memory.keys().next().copied();
        let appending = self.appending.iter().flatten().min().copied();
        in_memory.into_iter().chain(appending).min()
    }

    /// Keeps a record in memory. Over the byte cap the oldest record not yet handed to
    /// the network leaves memory: to the store if `spill` (and there is one), else it
    /// is dropped.
    fn keep_in_memory(&mut self, record: Record, spill: bool) {
        self.memory_bytes += record.payload.len();
        self.memory_messages += u64::from(record.messages);
        self.memory.insert(record.key, record);
        while self.memory_bytes > self.cfg.max_queued_bytes {
            let after = self.mem_cursor.map_or(0, |c| c.saturating_add(1));
            let Some(key) = self.memory.range(after..).next().map(|(k, _)| *k) else {
                break;
            };
            if self.memory.len() <= 1 {
                break;
            }
            let Some(old) = self.memory.remove(&key) else {
                break;
            };
            self.memory_bytes = self.memory_bytes.saturating_sub(old.payload.len());
            self.memory_messages = self.memory_messages.saturating_sub(u64::from(old.messages));
            if spill
                && !self.store_failing
                && self.store.enabled()
                && self.cfg.persistence != Persistence::NoStorage
            {
                self.persist(vec![old]);
            } else {
                self.dropped_messages += u64::from(old.messages);
                tracing::warn!(
                    dropped = self.dropped_messages,
                    "queue over {} bytes: dropped the oldest record",
                    self.cfg.max_queued_bytes
                );
            }
        }
    }

    /// Asks the store to append records (making room under the caps first).
    fn persist(&mut self, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        if !self.store.enabled() {
            for r in records {
                self.keep_in_memory(r, true);
            }
            return;
        }
        self.appends += 1;
        self.disk_more = true;
        self.appending
            .push_back(records.iter().map(|r| r.key).collect());
        self.store.push(StoreOp::Append {
            records,
            room: self.cfg.room,
        });
    }

    /// The store answered an append (the oldest one asked for): what became of its
    /// records.
    pub fn on_appended(&mut self, appended: Appended) -> AppendSettled {
        let Appended {
            freed,
            disk_full,
            dropped_new,
            dropped_keys,
            room_error,
            failed,
        } = appended;
        let keys = self.appending.pop_front().unwrap_or_default();
        if freed.records > 0 {
            self.dropped_messages += freed.messages;
            tracing::warn!(
                records = freed.records,
                messages = freed.messages,
                disk_full,
                "offline store full: dropped the oldest records"
            );
        }
        if let Some(messages) = dropped_new {
            self.dropped_messages += messages;
            tracing::warn!("offline store full: dropped new records");
        }
        if let Some(e) = room_error {
            tracing::error!("cannot make room in the offline store: {e}");
        }
        let mut settled = AppendSettled::default();
        if failed.is_some() {
            self.store_errors += 1;
            self.store_failing = true;
        } else if !keys.is_empty() {
            self.store_failing = false;
        }
        if let Some((e, records)) = failed {
            tracing::error!("cannot write to the offline store, keeping in memory: {e}");
            let failed_keys = records.iter().map(|r| r.key).collect();
            settled.failed = Some((Arc::new(e), failed_keys));
            // The store just failed: what does not fit in memory is dropped.
            for r in records {
                self.keep_in_memory(r, false);
            }
        }
        let not_stored: HashSet<u64> = dropped_keys
            .iter()
            .chain(settled.failed.iter().flat_map(|(_, keys)| keys))
            .copied()
            .collect();
        settled.stored = keys
            .into_iter()
            .filter(|k| !not_stored.contains(k))
            .collect();
        settled.dropped = dropped_keys;
        settled
    }

    /// The store answered a read.
    pub fn on_read(&mut self, ticket: u64, result: Result<Page, StoreError>) {
        let Some(read) = self.read.filter(|r| r.ticket == ticket) else {
            return; // Asked on a connection that dropped since.
        };
        self.read = None;
        let appended_since = self.appends != read.appends;
        match result {
            Ok(page) => {
                self.disk_more = page.len() == PREFETCH || appended_since;
                self.read_upto = self.read_upto.max(page.last_key());
                for key in page.corrupt {
                    if self.known_corrupt.insert(key) {
                        self.corrupt += 1;
                        tracing::error!(key, "a corrupt record in the offline store: skipped");
                        self.pending_deletes.push(key);
                    }
                }
                if !self.pending_deletes.is_empty() && self.deletes_due.is_none() {
                    self.flush_deletes();
                }
                self.prefetch.extend(page.records);
            }
            Err(e) => {
                self.store_errors += 1;
                tracing::error!("cannot read the offline store: {e}");
                self.disk_more = appended_since;
            }
        }
    }

    /// Retention removed the stored records created before `cutoff_ns`.
    pub fn on_expired(&mut self, cutoff_ns: i64, messages: u64) {
        self.dropped_messages += messages;
        // Expired records may sit in the prefetch buffer.
        self.prefetch
            .retain(|r| r.created_ns >= cutoff_ns || !has_real_time(r));
    }

    /// Asks the store to remove the acknowledged records.
    pub fn flush_deletes(&mut self) {
        self.deletes_due = None;
        if self.pending_deletes.is_empty() {
            return;
        }
        let keys = std::mem::take(&mut self.pending_deletes);
        self.store.push(StoreOp::Remove(keys));
    }

    /// When acknowledged records are next removed from the store.
    pub fn deletes_due(&self) -> Option<Instant> {
        self.deletes_due
    }

    fn window_full(&self) -> bool {
        let n = self.handed.len() + self.inflight.len();
        n >= self.cfg.max_inflight || (n > 0 && self.inflight_bytes >= MAX_INFLIGHT_BYTES)
    }

    /// The next request to hand to the network (while connected) and what it stands
    /// for: control messages first, then records oldest first. Records in memory wait
    /// unless `memory_ready`. Returns `None` while the store's answer is needed to know
    /// which record is the oldest.
    pub fn next_request(&mut self, memory_ready: bool) -> Option<(Request, Token)> {
        if let Some(c) = self.control.front() {
            let is_subscribe = matches!(c.request, Request::Subscribe(_));
            if is_subscribe || !self.window_full() {
                return Some((c.request.clone(), Token::Control(c.id)));
            }
            return None;
        }
        if self.window_full() || self.read.is_some() {
            return None;
        }
        if self.prefetch.is_empty() && self.disk_more {
            if self.store.enabled() {
                self.ask_read();
                return None;
            }
            self.disk_more = false;
        }
        let after = self.mem_cursor.map_or(0, |c| c.saturating_add(1));
        let mem = self.memory.range(after..).next().map(|(k, _)| *k);
        let disk = self.prefetch.front().map(|r| r.key);
        let token = match (mem, disk) {
            (Some(m), Some(d)) if d < m => Token::Disk(d),
            (Some(_), _) if !memory_ready => return None,
            (Some(m), _) => Token::Memory(m),
            (None, Some(d)) => Token::Disk(d),
            (None, None) => return None,
        };
        // After a drop with several records in flight, those records leave one at a time.
        let key = record_key(token);
        match self.suspect_upto {
            Some(upto) if key <= upto && !self.records_in_flight().is_empty() => return None,
            Some(upto) if key <= upto => {}
            Some(_) => self.suspect_upto = None,
            None => {}
        }
        let record = match token {
            Token::Disk(_) => self.prefetch.front()?,
            Token::Memory(m) => self.memory.get(&m)?,
            Token::Control(_) => return None,
        };
        let topic = match record.kind {
            RecordKind::Telemetry => self.cfg.telemetry_topic.clone(),
            RecordKind::Reported => self.cfg.reported_topic.clone(),
        };
        Some((
            Request::Publish(Publish {
                topic,
                payload: record.payload.clone(),
            }),
            token,
        ))
    }

    fn ask_read(&mut self) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.read = Some(PendingRead {
            ticket,
            appends: self.appends,
        });
        // Past what this connection read already: the prefetch is empty, so every
        // record up to there was handed, or skipped as corrupt.
        self.store.push(StoreOp::Read {
            ticket,
            after: self.disk_cursor.max(self.read_upto),
            max: PREFETCH,
        });
    }

    /// The request of `token` (from [`Outbox::next_request`]) was taken by the client.
    pub fn handed(&mut self, token: Token) {
        let bytes = match token {
            Token::Control(id) => {
                let Some(c) = self.control.pop_front() else {
                    return;
                };
                debug_assert_eq!(c.id, id);
                let bytes = match &c.request {
                    Request::Publish(p) => p.payload.len(),
                    // SUBACK is not tracked: a subscription is sent again on every connect.
                    Request::Subscribe(_) => return,
                };
                self.control_inflight.insert(c.id, c);
                bytes
            }
            Token::Memory(key) => {
                self.mem_cursor = Some(key);
                self.memory.get(&key).map_or(0, |r| r.payload.len())
            }
            Token::Disk(key) => {
                self.disk_cursor = Some(key);
                self.prefetch.pop_front().map_or(0, |r| r.payload.len())
            }
        };
        self.inflight_bytes += bytes;
        self.handed.push_back((token, bytes));
    }

    /// The client wrote the next handed publish with packet id `pkid`.
    pub fn on_outgoing_publish(&mut self, pkid: u16) {
        match self.handed.pop_front() {
            Some(entry) => {
                if let Some((old, bytes)) = self.inflight.insert(pkid, entry) {
                    // Should not happen (one window): keep the old one for a resend.
                    tracing::warn!(pkid, ?old, "packet id reused before its PUBACK");
                    self.inflight_bytes = self.inflight_bytes.saturating_sub(bytes);
                }
            }
            None => tracing::debug!(pkid, "a publish the session did not hand"),
        }
    }

    /// The broker acknowledged packet `pkid`: its message is done (a store record is
    /// removed with the next batch of removals).
    pub fn on_puback(&mut self, pkid: u16, now: Instant) {
        let Some((token, bytes)) = self.inflight.remove(&pkid) else {
            tracing::debug!(pkid, "PUBACK for an unknown packet id");
            return;
        };
        self.inflight_bytes = self.inflight_bytes.saturating_sub(bytes);
        match token {
            Token::Control(id) => {
                self.control_inflight.remove(&id);
            }
            Token::Memory(key) => {
                self.attempts.remove(&key);
                if let Some(r) = self.memory.remove(&key) {
                    self.memory_bytes = self.memory_bytes.saturating_sub(r.payload.len());
                    self.memory_messages =
                        self.memory_messages.saturating_sub(u64::from(r.messages));
                }
            }
            Token::Disk(key) => {
                self.attempts.remove(&key);
                self.pending_deletes.push(key);
                if self.pending_deletes.len() >= DELETE_BATCH {
                    self.flush_deletes();
                } else if self.deletes_due.is_none() {
                    self.deletes_due = Some(now + DELETE_LINGER);
                }
            }
        }
    }

    /// Nothing left to deliver or to write: no durable control message, record or
    /// removal waits, and the store is empty and has answered everything.
    pub fn is_idle(&self) -> bool {
        self.control.iter().all(|c| c.kind == Kind::PerConnection)
            && self.control_inflight.is_empty()
            && self.memory.is_empty()
            && self.pending_deletes.is_empty()
            && self.store.is_settled()
            && self.store.stats().records == 0
    }

    /// Requests waiting: control messages, records in memory and in the store.
    pub fn queued(&self) -> usize {
        let stored = usize::try_from(self.store.stats().records).unwrap_or(usize::MAX);
        self.control.len() + self.memory.len() + stored
    }

    /// Telemetry messages in memory and in the store.
    pub fn queued_messages(&self) -> u64 {
        self.memory_messages + self.store.stats().messages
    }

    pub fn dropped_messages(&self) -> u64 {
        self.dropped_messages
    }
}

/// The record key of a record token (0 for a control message).
fn record_key(token: Token) -> u64 {
    match token {
        Token::Memory(key) | Token::Disk(key) => key,
        Token::Control(_) => 0,
    }
}
