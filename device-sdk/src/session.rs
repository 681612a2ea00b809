//! The session state machine, free of I/O.
//!
//! It decides what a device sends on every connect, what to do with each incoming
//! message, how telemetry is batched, when heartbeats are due and in which order queued
//! messages leave. Time comes in as arguments ([`Now`]); the event loop
//! (`eventloop.rs`) feeds it network events and moves its [`Request`]s to rumqttc.
//! The same split as rumqttc's `state.rs` / `eventloop.rs`, so every rule here is
//! unit-tested without a broker.

use std::{
    collections::{HashMap, VecDeque},
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

use crate::SdkError;

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
    /// Most bytes of telemetry batches queued while they cannot be sent; the oldest
    /// batches are dropped beyond it.
    pub max_queued_bytes: usize,
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
/// connect, the others wait until they are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    PerConnection,
    Durable,
}

/// Messages waiting for the network: control first (responses, reported properties,
/// the connect burst), then telemetry batches.
#[derive(Debug, Default)]
struct Outbox {
    control: VecDeque<(Kind, Request)>,
    telemetry: VecDeque<Request>,
    telemetry_bytes: usize,
    max_telemetry_bytes: usize,
    dropped_batches: u64,
    dropped_control: u64,
}

impl Outbox {
    fn front(&self) -> Option<&Request> {
        self.control
            .front()
            .map(|(_, r)| r)
            .or_else(|| self.telemetry.front())
    }

    fn pop_front(&mut self) -> Option<Request> {
        if let Some((_, r)) = self.control.pop_front() {
            return Some(r);
        }
        let r = self.telemetry.pop_front()?;
        self.telemetry_bytes = self.telemetry_bytes.saturating_sub(request_len(&r));
        Some(r)
    }

    fn push_control(&mut self, kind: Kind, request: Request) {
        if self.control.len() >= MAX_CONTROL_QUEUED {
            if let Some(i) = self.control.iter().position(|(k, _)| *k == Kind::Durable) {
                self.control.remove(i);
                self.dropped_control += 1;
                tracing::warn!("offline control queue full: dropped the oldest message");
            }
        }
        self.control.push_back((kind, request));
    }

    fn push_telemetry(&mut self, request: Request) {
        self.telemetry_bytes += request_len(&request);
        self.telemetry.push_back(request);
        while self.telemetry_bytes > self.max_telemetry_bytes && self.telemetry.len() > 1 {
            if let Some(old) = self.telemetry.pop_front() {
                self.telemetry_bytes = self.telemetry_bytes.saturating_sub(request_len(&old));
                self.dropped_batches += 1;
                tracing::warn!(
                    dropped = self.dropped_batches,
                    "telemetry queue over {} bytes: dropped the oldest batch",
                    self.max_telemetry_bytes
                );
            }
        }
    }

    /// Drops the previous connection's burst and puts `burst` in front, in order.
    fn replace_burst(&mut self, burst: Vec<Request>) {
        self.control.retain(|(k, _)| *k == Kind::Durable);
        for r in burst.into_iter().rev() {
            self.control.push_front((Kind::PerConnection, r));
        }
    }

    fn len(&self) -> usize {
        self.control.len() + self.telemetry.len()
    }
}

fn request_len(r: &Request) -> usize {
    match r {
        Request::Publish(p) => p.payload.len(),
        Request::Subscribe(_) => 0,
    }
}

/// One device session across connections.
#[derive(Debug)]
pub(crate) struct Session {
    cfg: SessionConfig,
    topics: Topics,
    started: Instant,
    connected: bool,
    next_seq: u64,
    batcher: Batcher,
    next_heartbeat: Option<Instant>,
    outbox: Outbox,
    /// Newest desired value received per property name (handled or not).
    received: HashMap<String, PropertyValue>,
    /// Last value handed to a property handler per name.
    applied: HashMap<String, PropertyValue>,
}

impl Session {
    pub fn new(cfg: SessionConfig, now: Now) -> Self {
        let topics = Topics::new(&cfg.device_id);
        let batcher = Batcher::new(cfg.telemetry_linger, BATCH_LIMIT);
        let outbox = Outbox {
            max_telemetry_bytes: cfg.max_queued_bytes,
            ..Outbox::default()
        };
        Self {
            // Without storage, start from the clock in microseconds so that the sequence
            // keeps increasing across restarts.
            next_seq: u64::try_from(now.unix_ns / 1_000).unwrap_or(0).max(1),
            topics,
            started: now.mono,
            connected: false,
            batcher,
            next_heartbeat: None,
            outbox,
            received: HashMap::new(),
            applied: HashMap::new(),
            cfg,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// On every ConnAck (rumqttc does not re-subscribe by itself): subscribe, say hello,
    /// pull desired properties and send a heartbeat, before anything else queued.
    pub fn on_connected(&mut self, now: Now) {
        self.connected = true;
        let burst = vec![
            Request::Subscribe(vec![
                self.topics.command_request.clone(),
                self.topics.desired.clone(),
                self.topics.hello_get.clone(),
            ]),
            self.hello(now),
            Request::Publish(Publish {
                topic: self.topics.desired_get.clone(),
                payload: Bytes::new(),
            }),
            self.heartbeat(now),
        ];
        self.outbox.replace_burst(burst);
        self.next_heartbeat = Some(now.mono + self.cfg.heartbeat_interval);
    }

    pub fn on_disconnected(&mut self) {
        self.connected = false;
        self.next_heartbeat = None;
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
            queued: self.outbox.telemetry.len() as u64,
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
            self.outbox.push_control(Kind::PerConnection, hello);
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
            self.received.insert(value.name.clone(), value.clone());
            if handlers.has_property(&value.name) {
                actions.extend(self.apply(value));
            }
        }
        actions
    }

    /// A property handler registered after desired values arrived gets the newest one.
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

    /// Last desired value applied per property name (to persist, in a later version).
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
        self.outbox.push_control(Kind::Durable, publish);
    }

    /// Accepts a telemetry item (its `seq` is assigned here) into the current batch.
    pub fn push_telemetry(&mut self, mut item: TelemetryItem, now: Now) -> Result<u64, SdkError> {
        let seq = self.next_seq;
        item.seq = seq;
        if let Some(batch) = self.batcher.push(item, now.mono)? {
            self.queue_batch(batch);
        }
        self.next_seq += 1;
        Ok(seq)
    }

    fn queue_batch(&mut self, batch: TelemetryBatch) {
        self.outbox.push_telemetry(Request::Publish(Publish {
            topic: self.topics.telemetry.clone(),
            payload: batch.encode_to_vec().into(),
        }));
    }

    /// Closes the current batch now (shutdown).
    pub fn flush_telemetry(&mut self) {
        if let Some(batch) = self.batcher.take() {
            self.queue_batch(batch);
        }
    }

    /// Queues reported properties.
    pub fn push_reported(&mut self, value: PropertyValue) -> Result<(), SdkError> {
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
        self.outbox.push_control(
            Kind::Durable,
            Request::Publish(Publish {
                topic: self.topics.reported.clone(),
                payload: reported.encode_to_vec().into(),
            }),
        );
        Ok(())
    }

    /// Fires due timers: the telemetry linger and the heartbeat.
    pub fn on_timer(&mut self, now: Now) {
        if self.batcher.deadline().is_some_and(|d| d <= now.mono) {
            self.flush_telemetry();
        }
        if let Some(due) = self.next_heartbeat {
            if due <= now.mono {
                let hb = self.heartbeat(now);
                self.outbox.push_control(Kind::PerConnection, hb);
                self.next_heartbeat = Some(now.mono + self.cfg.heartbeat_interval);
            }
        }
    }

    /// When [`Session::on_timer`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.batcher.deadline(), self.next_heartbeat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next request to hand to the network (only meaningful while connected).
    pub fn next_request(&self) -> Option<&Request> {
        self.outbox.front()
    }

    /// Removes the request returned by [`Session::next_request`] once the client took it.
    pub fn pop_request(&mut self) -> Option<Request> {
        self.outbox.pop_front()
    }

    /// Requests waiting in the outbox.
    pub fn queued(&self) -> usize {
        self.outbox.len()
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
mod tests;
