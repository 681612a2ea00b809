//! The session state machine, free of I/O.
//!
//! It decides what a device sends on every connect, what to do with each incoming
//! message, how telemetry is batched, when heartbeats are due and in which order queued
//! messages leave. Time comes in as arguments ([`Now`]); the event loop
//! (`eventloop.rs`) feeds it network events and moves its [`Request`]s to rumqttc.
//! The same split as rumqttc's `state.rs` / `eventloop.rs`, so every rule here is
//! unit-tested without a broker.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::{Duration, Instant},
};

use bytes::Bytes;
use mir_proto::{
    topics::DeviceTopic,
    wire::{
        CommandRequest, CommandResponse, CommandResponseStatus, Compression, DesiredProperties,
        Heartbeat, Hello, PropertyValue, ReportedProperties, TelemetryBatch, TelemetryItem,
    },
    DeviceId, MAX_PAYLOAD_BYTES,
};
use prost::Message;

use crate::{
    config::Persistence,
    store::{Record, RecordKind, Store, StoreStats},
    SdkError,
};

/// Bytes kept free under [`MAX_PAYLOAD_BYTES`] when filling a telemetry batch.
pub const BATCH_SAFETY_MARGIN: usize = 1024;

/// Largest encoded [`TelemetryBatch`] the SDK publishes.
pub const BATCH_LIMIT: usize = MAX_PAYLOAD_BYTES - BATCH_SAFETY_MARGIN;

/// Most control messages (responses, reported properties, ...) kept while offline.
const MAX_CONTROL_QUEUED: usize = 1024;

/// The two clocks: monotonic for timers, wall clock (Unix ns) for message times.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub mono: Instant,
    pub unix_ns: i64,
}

impl Now {
    pub fn system() -> Self {
        Self {
            mono: Instant::now(),
            unix_ns: unix_ns(),
        }
    }
}

/// Nanoseconds since the Unix epoch by the device clock (0 if the clock is before 1970).
pub(crate) fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A QoS 1, non retained publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Publish {
    pub topic: String,
    pub payload: Bytes,
}

/// What the event loop must hand to the MQTT client, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// Subscribe QoS 1 to these filters.
    Subscribe(Vec<String>),
    Publish(Publish),
}

/// Work for the event loop that needs user code.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Run the command handler registered for `request.name`, then call
    /// [`Session::command_finished`].
    RunCommand(CommandRequest),
    /// Call the property handler registered for `value.name`.
    ApplyProperty(PropertyValue),
}

/// Which handlers exist, by message full name.
pub(crate) trait HandlerNames {
    fn has_command(&self, name: &str) -> bool;
    fn has_property(&self, name: &str) -> bool;
}

/// What the session needs from the device configuration.
#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    pub device_id: DeviceId,
    /// The schema as sent in `Hello.schema`.
    pub schema: Bytes,
    pub schema_compression: Compression,
    pub heartbeat_interval: Duration,
    pub telemetry_linger: Duration,
    /// Most bytes of records (telemetry batches, reported properties) kept in memory;
    /// beyond it the oldest waiting ones go to the store, or are dropped without one.
    pub max_queued_bytes: usize,
    /// When records go to the store.
    pub persistence: Persistence,
    /// Records older than this are dropped from the store.
    pub retention: Duration,
    /// Most used percentage of the store's file system; above it the oldest stored
    /// records make room for new ones.
    pub disk_limit_percent: f64,
    /// Most bytes in the store (`None`: only the disk limit applies).
    pub max_store_bytes: Option<u64>,
    /// Most QoS 1 publishes handed to the network and not yet acknowledged.
    pub max_inflight: usize,
    /// Send `Hello` on every connection (else only on `hello/get`).
    pub hello_on_connect: bool,
}

#[derive(Debug, Clone)]
struct Topics {
    hello: String,
    heartbeat: String,
    telemetry: String,
    reported: String,
    desired_get: String,
    command_response: String,
    command_request: String,
    desired: String,
    hello_get: String,
}

impl Topics {
    fn new(id: &DeviceId) -> Self {
        Self {
            hello: DeviceTopic::Hello.for_device(id),
            heartbeat: DeviceTopic::Heartbeat.for_device(id),
            telemetry: DeviceTopic::Telemetry.for_device(id),
            reported: DeviceTopic::Reported.for_device(id),
            desired_get: DeviceTopic::DesiredGet.for_device(id),
            command_response: DeviceTopic::CommandResponse.for_device(id),
            command_request: DeviceTopic::CommandRequest.for_device(id),
            desired: DeviceTopic::Desired.for_device(id),
            hello_get: DeviceTopic::HelloGet.for_device(id),
        }
    }
}

/// Size of `item` as one entry of a [`TelemetryBatch`] (tag + length + message).
pub(crate) fn batch_entry_len(item: &TelemetryItem) -> usize {
    let len = item.encoded_len();
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// Refuses an item that could never fit in a batch, whatever its sequence number.
pub(crate) fn check_item_fits(item: &TelemetryItem) -> Result<(), SdkError> {
    let worst = TelemetryItem {
        seq: u64::MAX,
        ..item.clone()
    };
    let size = batch_entry_len(&worst);
    if size > BATCH_LIMIT {
        return Err(SdkError::PayloadTooLarge {
            name: item.name.clone(),
            size,
            limit: BATCH_LIMIT,
        });
    }
    Ok(())
}

/// Accumulates telemetry items until the linger expires or the next item would not fit.
#[derive(Debug)]
struct Batcher {
    items: Vec<TelemetryItem>,
    encoded_len: usize,
    opened_at: Option<Instant>,
    linger: Duration,
    limit: usize,
}

impl Batcher {
    fn new(linger: Duration, limit: usize) -> Self {
        Self {
            items: Vec::new(),
            encoded_len: 0,
            opened_at: None,
            linger,
            limit,
        }
    }

    /// Adds an item; returns the batch that had to be closed first to make room.
    fn push(
        &mut self,
        item: TelemetryItem,
        now: Instant,
    ) -> Result<Option<TelemetryBatch>, SdkError> {
        let len = batch_entry_len(&item);
        if len > self.limit {
            return Err(SdkError::PayloadTooLarge {
                name: item.name,
                size: len,
                limit: self.limit,
            });
        }
        let closed = if self.encoded_len + len > self.limit {
            self.take()
        } else {
            None
        };
        if self.items.is_empty() {
            self.opened_at = Some(now);
        }
        self.encoded_len += len;
        self.items.push(item);
        Ok(closed)
    }

    fn take(&mut self) -> Option<TelemetryBatch> {
        self.opened_at = None;
        self.encoded_len = 0;
        if self.items.is_empty() {
            return None;
        }
        Some(TelemetryBatch {
            items: std::mem::take(&mut self.items),
        })
    }

    fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.linger)
    }
}

/// Why a control message is queued: per-connection messages are replaced on every
/// connect (and forgotten when the connection drops), the others wait until acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    PerConnection,
    Durable,
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

/// Largest bytes of publishes in flight (at least one publish is always allowed).
pub(crate) const MAX_INFLIGHT_BYTES: usize = 2 * 1024 * 1024;
/// Records read from the store at once.
const PREFETCH: usize = 16;
/// Acknowledged store records are removed in one commit at most this long after the ack.
pub(crate) const DELETE_LINGER: Duration = Duration::from_millis(200);
/// ... or as soon as this many are waiting.
const DELETE_BATCH: usize = 256;
/// How often retention is applied to the store.
pub(crate) const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// Sequence numbers reserved in the store at once (one write per block).
const SEQ_BLOCK: u64 = 10_000;
const META_SEQ: &str = "seq";
const META_DESIRED: &str = "desired/";

/// Counters of what the session holds and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Telemetry messages waiting (memory, store, open batch), not yet acknowledged.
    pub queued_messages: u64,
    /// Records in the store.
    pub stored_records: u64,
    /// Telemetry messages dropped (retention, disk cap, memory cap, store errors).
    pub dropped_messages: u64,
    /// Telemetry messages in the store.
    pub stored_messages: u64,
}

/// One device session across connections.
pub(crate) struct Session {
    cfg: SessionConfig,
    topics: Topics,
    started: Instant,
    connected: bool,
    next_seq: u64,
    /// Sequence numbers below this are reserved in the store.
    seq_reserved: u64,
    batcher: Batcher,
    next_heartbeat: Option<Instant>,
    next_retention: Option<Instant>,

    // Outbound.
    control: VecDeque<Control>,
    next_control_id: u64,
    control_inflight: BTreeMap<u64, Control>,
    memory: BTreeMap<u64, Record>,
    memory_bytes: usize,
    memory_messages: u64,
    /// The last memory record handed to the network on this connection.
    mem_cursor: Option<u64>,
    store: Option<Box<dyn Store>>,
    /// The last store record handed to the network on this connection.
    disk_cursor: Option<u64>,
    prefetch: VecDeque<Record>,
    /// Whether the store may hold records above `disk_cursor` that are not prefetched.
    disk_more: bool,
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

    /// Newest desired value received per property name (handled or not).
    received: HashMap<String, PropertyValue>,
    /// Last value handed to a property handler per name.
    applied: HashMap<String, PropertyValue>,
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
    /// A session over `store` (`None`: memory only, as with [`Persistence::NoStorage`]).
    /// The store gives the next sequence number and the last desired values.
    pub fn new(cfg: SessionConfig, store: Option<Box<dyn Store>>, now: Now) -> Self {
        let topics = Topics::new(&cfg.device_id);
        let batcher = Batcher::new(cfg.telemetry_linger, BATCH_LIMIT);
        // Without storage, start from the clock in microseconds so that the sequence
        // keeps increasing across restarts.
        let clock_seq = u64::try_from(now.unix_ns / 1_000).unwrap_or(0).max(1);
        let mut s = Self {
            next_seq: clock_seq,
            seq_reserved: u64::MAX,
            topics,
            started: now.mono,
            connected: false,
            batcher,
            next_heartbeat: None,
            next_retention: None,
            control: VecDeque::new(),
            next_control_id: 1,
            control_inflight: BTreeMap::new(),
            memory: BTreeMap::new(),
            memory_bytes: 0,
            memory_messages: 0,
            mem_cursor: None,
            store: None,
            disk_cursor: None,
            prefetch: VecDeque::new(),
            disk_more: true,
            pending_deletes: Vec::new(),
            deletes_due: None,
            next_key: 1,
            handed: VecDeque::new(),
            inflight: HashMap::new(),
            inflight_bytes: 0,
            dropped_messages: 0,
            dropped_control: 0,
            received: HashMap::new(),
            applied: HashMap::new(),
            cfg,
        };
        if let Some(store) = store {
            s.attach_store(store, now);
        }
        s
    }

    fn attach_store(&mut self, store: Box<dyn Store>, now: Now) {
        self.next_key = store.stats().last_key.map_or(1, |k| k.saturating_add(1));
        match store.get_meta(META_SEQ) {
            Ok(Some(v)) if v.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v);
                self.next_seq = self.next_seq.max(u64::from_be_bytes(b));
            }
            Ok(_) => {}
            Err(e) => tracing::error!("cannot read the sequence number from the store: {e}"),
        }
        match store.scan_meta(META_DESIRED) {
            Ok(values) => {
                for (_, bytes) in values {
                    match PropertyValue::decode(bytes.as_slice()) {
                        Ok(v) => {
                            self.received.insert(v.name.clone(), v);
                        }
                        Err(e) => tracing::warn!("dropping a corrupt cached desired value: {e}"),
                    }
                }
            }
            Err(e) => tracing::error!("cannot read cached desired properties: {e}"),
        }
        self.store = Some(store);
        self.reserve_seq();
        self.apply_retention(now);
        self.next_retention = Some(now.mono + RETENTION_EVERY);
    }

    fn reserve_seq(&mut self) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let reserved = self.next_seq.saturating_add(SEQ_BLOCK);
        match store.put_meta(META_SEQ, &reserved.to_be_bytes()) {
            Ok(()) => self.seq_reserved = reserved,
            Err(e) => {
                tracing::error!("cannot reserve sequence numbers in the store: {e}");
                self.seq_reserved = u64::MAX;
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
        self.control.retain(|c| c.kind == Kind::Durable);
        for request in burst.into_iter().rev() {
            let id = self.control_id();
            self.control.push_front(Control {
                id,
                kind: Kind::PerConnection,
                request,
            });
        }
        self.next_heartbeat = Some(now.mono + self.cfg.heartbeat_interval);
    }

    /// The connection dropped: whatever was handed to the network and not acknowledged
    /// is sent again on the next connection (the network layer drops its own copies),
    /// and with [`Persistence::IfOffline`] what waits in memory moves to the store.
    pub fn on_disconnected(&mut self) {
        self.connected = false;
        self.next_heartbeat = None;
        self.handed.clear();
        self.inflight.clear();
        self.inflight_bytes = 0;
        let unacked = std::mem::take(&mut self.control_inflight);
        for (_, c) in unacked.into_iter().rev() {
            if c.kind == Kind::Durable {
                self.control.push_front(c);
            }
        }
        self.mem_cursor = None;
        self.flush_deletes();
        self.disk_cursor = None;
        self.prefetch.clear();
        self.disk_more = true;
        if self.store.is_some() && self.cfg.persistence != Persistence::NoStorage {
            let records: Vec<Record> = std::mem::take(&mut self.memory).into_values().collect();
            self.memory_bytes = 0;
            self.memory_messages = 0;
            self.persist(records);
        }
    }

    fn control_id(&mut self) -> u64 {
        let id = self.next_control_id;
        self.next_control_id += 1;
        id
    }

    fn push_control(&mut self, kind: Kind, request: Request) {
        if self.control.len() >= MAX_CONTROL_QUEUED {
            if let Some(i) = self.control.iter().position(|c| c.kind == Kind::Durable) {
                self.control.remove(i);
                self.dropped_control += 1;
                tracing::warn!("offline control queue full: dropped the oldest message");
            }
        }
        let id = self.control_id();
        self.control.push_back(Control { id, kind, request });
    }

    fn hello(&self, now: Now) -> Request {
        let hello = Hello {
            schema: self.cfg.schema.clone(),
            compression: self.cfg.schema_compression as i32,
            sdk_version: crate::SDK_VERSION.to_string(),
            sent_at_ns: now.unix_ns,
        };
        Request::Publish(Publish {
            topic: self.topics.hello.clone(),
            payload: hello.encode_to_vec().into(),
        })
    }

    fn heartbeat(&self, now: Now) -> Request {
        let hb = Heartbeat {
            sent_at_ns: now.unix_ns,
            uptime_sec: now.mono.saturating_duration_since(self.started).as_secs(),
            queued: self.queued_messages(),
        };
        Request::Publish(Publish {
            topic: self.topics.heartbeat.clone(),
            payload: hb.encode_to_vec().into(),
        })
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
            self.on_desired(payload, handlers)
        } else if topic == self.topics.hello_get {
            let hello = self.hello(now);
            self.push_control(Kind::PerConnection, hello);
            Vec::new()
        } else {
            tracing::debug!(topic, "ignoring a message on an unexpected topic");
            Vec::new()
        }
    }

    fn on_command(
        &mut self,
        payload: &Bytes,
        handlers: &dyn HandlerNames,
        now: Now,
    ) -> Option<Action> {
        let req = match CommandRequest::decode(payload.clone()) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("dropping an undecodable command request: {e}");
                return None;
            }
        };
        if req.deadline_unix_ms > 0 && now.unix_ns / 1_000_000 > req.deadline_unix_ms {
            tracing::warn!(
                id = req.id,
                name = req.name,
                "command received after its deadline"
            );
            self.respond(CommandResponse {
                id: req.id,
                status: CommandResponseStatus::Timeout as i32,
                error: format!(
                    "command {} reached device {} after its deadline",
                    req.name, self.cfg.device_id
                ),
                ..Default::default()
            });
            return None;
        }
        if !handlers.has_command(&req.name) {
            tracing::warn!(name = req.name, "no handler for command");
            let error = format!(
                "no handler for command {} on device {}",
                req.name, self.cfg.device_id
            );
            self.respond(error_response(req.id, error));
            return None;
        }
        Some(Action::RunCommand(req))
    }

    fn on_desired(&mut self, payload: &Bytes, handlers: &dyn HandlerNames) -> Vec<Action> {
        let desired = match DesiredProperties::decode(payload.clone()) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("dropping undecodable desired properties: {e}");
                return Vec::new();
            }
        };
        let mut actions = Vec::new();
        for value in desired.properties {
            let newest = self
                .received
                .get(&value.name)
                .is_none_or(|r| value.updated_at_ns >= r.updated_at_ns);
            if !newest {
                tracing::debug!(name = value.name, "ignoring an older desired value");
                continue;
            }
            let changed = self.received.get(&value.name) != Some(&value);
            if changed {
                if let Some(store) = self.store.as_mut() {
                    let key = format!("{META_DESIRED}{}", value.name);
                    if let Err(e) = store.put_meta(&key, &value.encode_to_vec()) {
                        tracing::error!(name = value.name, "cannot cache a desired value: {e}");
                    }
                }
            }
            self.received.insert(value.name.clone(), value.clone());
            if handlers.has_property(&value.name) {
                actions.extend(self.apply(value));
            }
        }
        actions
    }

    /// A property handler registered (or, at launch, found registered) gets the newest
    /// value received or cached in the store.
    pub fn on_property_registered(&mut self, name: &str) -> Option<Action> {
        let value = self.received.get(name)?.clone();
        self.apply(value)
    }

    fn apply(&mut self, value: PropertyValue) -> Option<Action> {
        if let Some(last) = self.applied.get(&value.name) {
            if value.updated_at_ns < last.updated_at_ns {
                tracing::debug!(
                    name = value.name,
                    "ignoring a desired value older than the applied one"
                );
                return None;
            }
            if value.updated_at_ns == last.updated_at_ns && value.payload == last.payload {
                return None;
            }
        }
        self.applied.insert(value.name.clone(), value.clone());
        Some(Action::ApplyProperty(value))
    }

    /// Last desired value applied per property name.
    #[allow(dead_code)]
    pub fn applied_properties(&self) -> impl Iterator<Item = &PropertyValue> {
        self.applied.values()
    }

    /// Queues the response of a finished command (refusing one too large to send).
    pub fn command_finished(&mut self, response: CommandResponse) {
        let size = response.encoded_len();
        if size > MAX_PAYLOAD_BYTES {
            let error = format!(
                "response {} is {size} bytes, over the {MAX_PAYLOAD_BYTES}-byte payload limit",
                response.name
            );
            tracing::error!(id = response.id, "{error}");
            self.respond(error_response(response.id, error));
        } else {
            self.respond(response);
        }
    }

    fn respond(&mut self, response: CommandResponse) {
        let publish = Request::Publish(Publish {
            topic: self.topics.command_response.clone(),
            payload: response.encode_to_vec().into(),
        });
        self.push_control(Kind::Durable, publish);
    }

    /// Accepts a telemetry item (its `seq` is assigned here) into the current batch.
    pub fn push_telemetry(&mut self, mut item: TelemetryItem, now: Now) -> Result<u64, SdkError> {
        let seq = self.next_seq;
        item.seq = seq;
        if let Some(batch) = self.batcher.push(item, now.mono)? {
            self.queue_batch(batch, now);
        }
        self.next_seq += 1;
        if self.next_seq >= self.seq_reserved {
            self.reserve_seq();
        }
        Ok(seq)
    }

    fn queue_batch(&mut self, batch: TelemetryBatch, now: Now) {
        let messages = u32::try_from(batch.items.len()).unwrap_or(u32::MAX);
        self.add_record(
            RecordKind::Telemetry,
            batch.encode_to_vec().into(),
            messages,
            now,
        );
    }

    /// Closes the current batch now (shutdown).
    pub fn flush_telemetry(&mut self, now: Now) {
        if let Some(batch) = self.batcher.take() {
            self.queue_batch(batch, now);
        }
    }

    /// Queues reported properties (kept like telemetry until acknowledged).
    pub fn push_reported(&mut self, value: PropertyValue, now: Now) -> Result<(), SdkError> {
        let reported = ReportedProperties {
            properties: vec![value],
        };
        let size = reported.encoded_len();
        if size > MAX_PAYLOAD_BYTES {
            return Err(SdkError::PayloadTooLarge {
                name: reported
                    .properties
                    .into_iter()
                    .next()
                    .map(|p| p.name)
                    .unwrap_or_default(),
                size,
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        self.add_record(
            RecordKind::Reported,
            reported.encode_to_vec().into(),
            0,
            now,
        );
        Ok(())
    }

    fn add_record(&mut self, kind: RecordKind, payload: Bytes, messages: u32, now: Now) {
        let record = Record {
            key: self.next_key,
            kind,
            created_ns: now.unix_ns,
            messages,
            payload,
        };
        self.next_key += 1;
        let to_store = self.store.is_some()
            && match self.cfg.persistence {
                Persistence::Always => true,
                Persistence::IfOffline => !self.connected,
                Persistence::NoStorage => false,
            };
        if to_store {
            self.persist(vec![record]);
        } else {
            self.keep_in_memory(record);
        }
    }

    fn keep_in_memory(&mut self, record: Record) {
        self.memory_bytes += record.payload.len();
        self.memory_messages += u64::from(record.messages);
        self.memory.insert(record.key, record);
        // Over the cap: the oldest record not yet handed to the network leaves memory.
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
            if self.store.is_some() && self.cfg.persistence != Persistence::NoStorage {
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

    /// Writes records to the store, making room under the disk and size caps by
    /// dropping the oldest stored records. Falls back to memory if the store fails.
    fn persist(&mut self, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        let Some(store) = self.store.as_mut() else {
            for r in records {
                self.keep_in_memory(r);
            }
            return;
        };
        let new_bytes: u64 = records.iter().map(Record::stored_len).sum();
        let mut need = 0u64;
        if let Some(max) = self.cfg.max_store_bytes {
            let total = store.stats().bytes + new_bytes;
            need = need.max(total.saturating_sub(max));
        }
        let disk_full = store
            .disk_used_percent()
            .is_some_and(|used| used >= self.cfg.disk_limit_percent);
        if disk_full {
            // The file stops growing: the new records reuse the pages of the oldest.
            need = need.max(new_bytes);
        }
        let mut records = records;
        if need > 0 {
            match store.drop_oldest(need) {
                Ok(removed) => {
                    if removed.records > 0 {
                        self.dropped_messages += removed.messages;
                        tracing::warn!(
                            records = removed.records,
                            messages = removed.messages,
                            disk_full,
                            "offline store full: dropped the oldest records"
                        );
                    }
                    if removed.bytes < need {
                        // Still no room: the oldest of the new records go too.
                        let mut short = need - removed.bytes;
                        while short > 0 && !records.is_empty() {
                            let r = records.remove(0);
                            short = short.saturating_sub(r.stored_len());
                            self.dropped_messages += u64::from(r.messages);
                        }
                        tracing::warn!("offline store full: dropped new records");
                    }
                }
                Err(e) => tracing::error!("cannot make room in the offline store: {e}"),
            }
        }
        if records.is_empty() {
            return;
        }
        match store.append(&records) {
            Ok(()) => self.disk_more = true,
            Err(e) => {
                tracing::error!("cannot write to the offline store, keeping in memory: {e}");
                for r in records {
                    self.keep_in_memory(r);
                }
            }
        }
    }

    fn apply_retention(&mut self, now: Now) {
        let Ok(retention) = i64::try_from(self.cfg.retention.as_nanos()) else {
            return;
        };
        let cutoff = now.unix_ns.saturating_sub(retention);
        if let Some(store) = self.store.as_mut() {
            match store.expire(cutoff) {
                Ok(removed) if removed.records > 0 => {
                    self.dropped_messages += removed.messages;
                    tracing::warn!(
                        records = removed.records,
                        messages = removed.messages,
                        "dropped records older than the retention of {:?}",
                        self.cfg.retention
                    );
                    // Expired records may sit in the prefetch buffer.
                    self.prefetch.retain(|r| r.created_ns >= cutoff);
                }
                Ok(_) => {}
                Err(e) => tracing::error!("cannot apply retention to the offline store: {e}"),
            }
        }
    }

    fn flush_deletes(&mut self) {
        self.deletes_due = None;
        if self.pending_deletes.is_empty() {
            return;
        }
        let keys = std::mem::take(&mut self.pending_deletes);
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.remove(&keys) {
                tracing::error!("cannot remove acknowledged records from the store: {e}");
            }
        }
    }

    /// Fires due timers: the telemetry linger, the heartbeat, store maintenance.
    pub fn on_timer(&mut self, now: Now) {
        if self.batcher.deadline().is_some_and(|d| d <= now.mono) {
            self.flush_telemetry(now);
        }
        if let Some(due) = self.next_heartbeat {
            if due <= now.mono {
                let hb = self.heartbeat(now);
                self.push_control(Kind::PerConnection, hb);
                self.next_heartbeat = Some(now.mono + self.cfg.heartbeat_interval);
            }
        }
        if self.deletes_due.is_some_and(|d| d <= now.mono) {
            self.flush_deletes();
        }
        if self.next_retention.is_some_and(|d| d <= now.mono) {
            self.apply_retention(now);
            self.next_retention = Some(now.mono + RETENTION_EVERY);
        }
    }

    /// When [`Session::on_timer`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.batcher.deadline(),
            self.next_heartbeat,
            self.deletes_due,
            self.next_retention,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn window_full(&self) -> bool {
        let n = self.handed.len() + self.inflight.len();
        n >= self.cfg.max_inflight || (n > 0 && self.inflight_bytes >= MAX_INFLIGHT_BYTES)
    }

    /// The next request to hand to the network and what it stands for (only while
    /// connected, and while fewer than `max_inflight` publishes wait for PUBACK).
    /// Control messages first, then records oldest first. Call [`Session::handed`]
    /// once the client took it.
    pub fn next_request(&mut self) -> Option<(Request, Token)> {
        if !self.connected {
            return None;
        }
        if let Some(c) = self.control.front() {
            let is_subscribe = matches!(c.request, Request::Subscribe(_));
            if is_subscribe || !self.window_full() {
                return Some((c.request.clone(), Token::Control(c.id)));
            }
            return None;
        }
        if self.window_full() {
            return None;
        }
        let after = self.mem_cursor.map_or(0, |c| c.saturating_add(1));
        let mem = self.memory.range(after..).next().map(|(k, _)| *k);
        if self.prefetch.is_empty() && self.disk_more {
            if let Some(store) = self.store.as_ref() {
                match store.read_after(self.disk_cursor, PREFETCH) {
                    Ok(records) => {
                        self.disk_more = records.len() == PREFETCH;
                        self.prefetch.extend(records);
                    }
                    Err(e) => {
                        tracing::error!("cannot read the offline store: {e}");
                        self.disk_more = false;
                    }
                }
            } else {
                self.disk_more = false;
            }
        }
        let disk = self.prefetch.front().map(|r| r.key);
        let (record, token) = match (mem, disk) {
            (Some(m), Some(d)) if d < m => (self.prefetch.front()?, Token::Disk(d)),
            (Some(m), _) => (self.memory.get(&m)?, Token::Memory(m)),
            (None, Some(d)) => (self.prefetch.front()?, Token::Disk(d)),
            (None, None) => return None,
        };
        let topic = match record.kind {
            RecordKind::Telemetry => self.topics.telemetry.clone(),
            RecordKind::Reported => self.topics.reported.clone(),
        };
        Some((
            Request::Publish(Publish {
                topic,
                payload: record.payload.clone(),
            }),
            token,
        ))
    }

    /// The request of `token` (from [`Session::next_request`]) was taken by the client.
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

    /// The broker acknowledged packet `pkid`: its message is done.
    pub fn on_puback(&mut self, pkid: u16, now: Now) {
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
                if let Some(r) = self.memory.remove(&key) {
                    self.memory_bytes = self.memory_bytes.saturating_sub(r.payload.len());
                    self.memory_messages =
                        self.memory_messages.saturating_sub(u64::from(r.messages));
                }
            }
            Token::Disk(key) => {
                self.pending_deletes.push(key);
                if self.pending_deletes.len() >= DELETE_BATCH {
                    self.flush_deletes();
                } else if self.deletes_due.is_none() {
                    self.deletes_due = Some(now.mono + DELETE_LINGER);
                }
            }
        }
    }

    /// Everything still to deliver is acknowledged (no record, control message or open
    /// batch left).
    pub fn is_idle(&self) -> bool {
        self.control.iter().all(|c| c.kind == Kind::PerConnection)
            && self.control_inflight.is_empty()
            && self.memory.is_empty()
            && self.pending_deletes.is_empty()
            && self.store.as_ref().is_none_or(|s| s.stats().records == 0)
            && self.batcher.items.is_empty()
    }

    /// Requests waiting: control messages, records in memory and in the store.
    pub fn queued(&self) -> usize {
        let stored = self.store.as_ref().map_or(0, |s| {
            usize::try_from(s.stats().records).unwrap_or(usize::MAX)
        });
        self.control.len() + self.memory.len() + stored
    }

    /// Telemetry messages not yet acknowledged: open batch, memory, store.
    pub fn queued_messages(&self) -> u64 {
        let stored = self.store.as_ref().map_or(0, |s| s.stats().messages);
        self.batcher.items.len() as u64 + self.memory_messages + stored
    }

    pub fn counters(&self) -> Counters {
        Counters {
            queued_messages: self.queued_messages(),
            stored_records: self.store.as_ref().map_or(0, |s| s.stats().records),
            dropped_messages: self.dropped_messages,
            stored_messages: self.store.as_ref().map_or(0, |s| s.stats().messages),
        }
    }

    /// The store's counts, if there is one.
    #[allow(dead_code)]
    pub fn store_stats(&self) -> Option<StoreStats> {
        self.store.as_ref().map(|s| s.stats())
    }

    /// Shutdown: closes the open batch, commits pending removals, and (unless
    /// [`Persistence::NoStorage`]) moves what is left in memory to the store.
    pub fn close(&mut self, now: Now) {
        self.flush_telemetry(now);
        self.on_disconnected();
    }
}

pub(crate) fn error_response(id: String, error: String) -> CommandResponse {
    CommandResponse {
        id,
        status: CommandResponseStatus::Error as i32,
        error,
        ..Default::default()
    }
}

#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;
