//! Builders and helpers for the unit tests.

use std::{
    collections::HashSet,
    ops::{Deref, DerefMut},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use mir_proto::{
    wire::{Compression, TelemetryItem},
    DeviceId,
};

use crate::{
    config::Persistence,
    eventloop::store_task::{execute, load_boot},
    session::{HandlerNames, Now, Publish, Request, Session, SessionConfig, StoreOp},
    store::{MemoryStore, Record, Store, StoreError, StoreStats},
    StoreHealth,
};

pub(crate) const DEVICE: &str = "weather";

/// A fixed starting point: 2027-01-15T08:00:00Z (a set clock).
pub(crate) fn t0() -> Now {
    Now {
        mono: Instant::now(),
        unix_ns: 1_800_000_000_000_000_000,
        synced: true,
    }
}

pub(crate) fn later(now: Now, by: Duration) -> Now {
    Now {
        mono: now.mono + by,
        unix_ns: now.unix_ns + i64::try_from(by.as_nanos()).expect("small duration"),
        synced: now.synced,
    }
}

/// Handler names known to a session under test.
#[derive(Debug, Default)]
pub(crate) struct Names {
    commands: HashSet<String>,
    properties: HashSet<String>,
}

impl Names {
    pub fn command(mut self, name: &str) -> Self {
        self.commands.insert(name.to_string());
        self
    }

    pub fn property(mut self, name: &str) -> Self {
        self.properties.insert(name.to_string());
        self
    }
}

impl HandlerNames for Names {
    fn has_command(&self, name: &str) -> bool {
        self.commands.contains(name)
    }
    fn has_property(&self, name: &str) -> bool {
        self.properties.contains(name)
    }
}

pub(crate) struct SessionBuilder {
    config: SessionConfig,
    store: Option<Box<dyn Store>>,
}

impl SessionBuilder {
    pub fn new() -> Self {
        Self {
            config: SessionConfig {
                device_id: DeviceId::new(DEVICE).expect("valid id"),
                schema: Bytes::from_static(b"schema"),
                schema_compression: Compression::Zlib,
                heartbeat_interval: Duration::from_secs(30),
                telemetry_linger: Duration::from_millis(50),
                max_queued_bytes: 8 * 1024 * 1024,
                persistence: Persistence::IfOffline,
                retention: Duration::from_secs(7 * 24 * 3600),
                disk_limit_percent: 85.0,
                max_store_bytes: None,
                max_inflight: 100,
                hello_on_connect: true,
                pace: None,
                store_health: StoreHealth::MemoryOnly,
            },
            store: None,
        }
    }

    pub fn persistence(mut self, p: Persistence) -> Self {
        self.config.persistence = p;
        self
    }

    pub fn retention(mut self, d: Duration) -> Self {
        self.config.retention = d;
        self
    }

    pub fn max_store_bytes(mut self, n: u64) -> Self {
        self.config.max_store_bytes = Some(n);
        self
    }

    pub fn max_inflight(mut self, n: usize) -> Self {
        self.config.max_inflight = n;
        self
    }

    pub fn store(mut self, store: Box<dyn Store>) -> Self {
        self.store = Some(store);
        self.config.store_health = StoreHealth::Durable;
        self
    }

    pub fn linger(mut self, d: Duration) -> Self {
        self.config.telemetry_linger = d;
        self
    }

    pub fn heartbeat(mut self, d: Duration) -> Self {
        self.config.heartbeat_interval = d;
        self
    }

    pub fn max_queued_bytes(mut self, n: usize) -> Self {
        self.config.max_queued_bytes = n;
        self
    }

    /// The session, started on what the store holds, with its first store operations
    /// run.
    pub fn build(self, now: Now) -> TestSession {
        let boot = self.store.as_deref().map(load_boot);
        let mut s = TestSession {
            session: Session::new(self.config, boot, now),
            store: self.store,
        };
        s.settle();
        s
    }

    /// A session that is connected and has handed its connect burst to the network.
    pub fn connected(self, now: Now) -> TestSession {
        let mut s = self.build(now);
        s.on_connected(now);
        drain(&mut s);
        s
    }
}

/// A session and its store. Its store operations run when the test says so
/// ([`TestSession::settle`]), with the event loop's own `execute`, in order.
pub(crate) struct TestSession {
    session: Session,
    store: Option<Box<dyn Store>>,
}

impl Deref for TestSession {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

impl DerefMut for TestSession {
    fn deref_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

impl TestSession {
    /// Runs every store operation the session asked for, and those their answers ask
    /// for, as the store task does; returns how many ran.
    pub fn settle(&mut self) -> usize {
        let mut ran = 0;
        loop {
            let ops = self.session.take_store_ops();
            if ops.is_empty() {
                return ran;
            }
            for op in ops {
                self.run(op);
                ran += 1;
            }
        }
    }

    /// Runs one store operation (taken with [`Session::take_store_ops`]) and hands
    /// its answer to the session.
    pub fn run(&mut self, op: StoreOp) {
        let store = self
            .store
            .as_deref_mut()
            .expect("a store operation from a session without a store");
        let reply = execute(store, op);
        self.session.on_store_reply(reply);
    }
}

/// Takes every queued request as the event loop does while connected, on a network
/// that writes and acknowledges each publish at once.
pub(crate) fn drain(session: &mut TestSession) -> Vec<Request> {
    let mut net = FakeNet::default();
    let mut out = Vec::new();
    loop {
        let sent = net.send(session, usize::MAX);
        if sent.is_empty() {
            break;
        }
        net.ack_all(session, t0());
        out.extend(sent);
    }
    out
}

/// A network that assigns packet ids like rumqttc (1..=100, in order) and acknowledges
/// when told.
#[derive(Debug, Default)]
pub(crate) struct FakeNet {
    next_pkid: u16,
    /// Written and not acknowledged, oldest first.
    pub written: Vec<u16>,
}

impl FakeNet {
    /// Hands up to `max` requests to the network and writes them (running the store
    /// operations the session waits for, as the event loop does).
    pub fn send(&mut self, session: &mut TestSession, max: usize) -> Vec<Request> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some((request, token)) = session.next_request() else {
                if session.settle() > 0 {
                    continue;
                }
                break;
            };
            session.handed(token);
            if let Request::Publish(_) = request {
                self.next_pkid = self.next_pkid % 100 + 1;
                session.on_outgoing_publish(self.next_pkid);
                self.written.push(self.next_pkid);
            }
            out.push(request);
        }
        out
    }

    pub fn ack_all(&mut self, session: &mut TestSession, now: Now) {
        for pkid in std::mem::take(&mut self.written) {
            session.on_puback(pkid, now);
        }
        session.settle();
    }

    /// The connection drops: nothing written is acknowledged.
    pub fn drop_connection(&mut self, session: &mut TestSession) {
        self.written.clear();
        session.on_disconnected();
        session.settle();
    }
}

pub(crate) fn topic(suffix: &str) -> String {
    format!("mir/{DEVICE}/{suffix}")
}

/// Payloads published on `mir/weather/{suffix}`.
pub(crate) fn published_on(requests: &[Request], suffix: &str) -> Vec<Bytes> {
    let topic = topic(suffix);
    requests
        .iter()
        .filter_map(|r| match r {
            Request::Publish(Publish { topic: t, payload }) if *t == topic => Some(payload.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn item(name: &str, payload_len: usize, now: Now) -> TelemetryItem {
    TelemetryItem {
        name: name.to_string(),
        payload: Bytes::from(vec![7u8; payload_len]),
        seq: 0,
        sent_at_ns: now.unix_ns,
        clock_unsynced: false,
    }
}

/// A [`MemoryStore`] shared between sessions (a device restarting on the same store)
/// and the test, whose appends fail while the test says so, and which counts its
/// appends (one commit each).
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedStore {
    store: Arc<Mutex<MemoryStore>>,
    fail_appends: Arc<AtomicBool>,
    appends: Arc<AtomicUsize>,
}

impl SharedStore {
    pub fn lock(&self) -> MutexGuard<'_, MemoryStore> {
        self.store.lock().expect("store lock")
    }

    pub fn boxed(&self) -> Box<dyn Store> {
        Box::new(self.clone())
    }

    /// Makes every append fail (a broken disk) or succeed again.
    pub fn fail_appends(&self, fail: bool) {
        self.fail_appends.store(fail, Ordering::SeqCst);
    }

    /// Appends (commits of records) that succeeded so far.
    pub fn appends(&self) -> usize {
        self.appends.load(Ordering::SeqCst)
    }

    /// The telemetry items in the store, oldest first.
    pub fn items(&self) -> Vec<TelemetryItem> {
        let records = self.lock().read_after(None, usize::MAX).expect("read");
        records
            .into_iter()
            .filter(|r| r.kind == crate::store::RecordKind::Telemetry)
            .flat_map(|r| {
                <mir_proto::wire::TelemetryBatch as prost::Message>::decode(r.payload)
                    .expect("a telemetry batch")
                    .items
            })
            .collect()
    }
}

impl Store for SharedStore {
    fn append(&mut self, records: &[Record]) -> Result<(), StoreError> {
        if self.fail_appends.load(Ordering::SeqCst) {
            return Err(StoreError::Database {
                path: "test".into(),
                reason: "appends fail".into(),
            });
        }
        self.lock().append(records)?;
        self.appends.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn read_after(&self, after: Option<u64>, max: usize) -> Result<Vec<Record>, StoreError> {
        self.lock().read_after(after, max)
    }
    fn remove(&mut self, keys: &[u64]) -> Result<(), StoreError> {
        self.lock().remove(keys)
    }
    fn expire(&mut self, cutoff_ns: i64) -> Result<StoreStats, StoreError> {
        self.lock().expire(cutoff_ns)
    }
    fn drop_oldest(&mut self, bytes: u64) -> Result<StoreStats, StoreError> {
        self.lock().drop_oldest(bytes)
    }
    fn stats(&self) -> StoreStats {
        self.lock().stats()
    }
    fn disk_used_percent(&self) -> Option<f64> {
        self.lock().disk_used_percent
    }
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.lock().get_meta(key)
    }
    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.lock().put_meta(key, value)
    }
    fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.lock().scan_meta(prefix)
    }
}
