//! Builders and helpers for the unit tests.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use bytes::Bytes;
use mir_proto::{
    wire::{Compression, TelemetryItem},
    DeviceId,
};

use crate::session::{HandlerNames, Now, Publish, Request, Session, SessionConfig};

pub(crate) const DEVICE: &str = "weather";

/// A fixed starting point: 2023-11-14T22:13:20Z.
pub(crate) fn t0() -> Now {
    Now {
        mono: Instant::now(),
        unix_ns: 1_700_000_000_000_000_000,
    }
}

pub(crate) fn later(now: Now, by: Duration) -> Now {
    Now {
        mono: now.mono + by,
        unix_ns: now.unix_ns + i64::try_from(by.as_nanos()).expect("small duration"),
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
            },
        }
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

    pub fn build(self, now: Now) -> Session {
        Session::new(self.config, now)
    }

    /// A session that is connected and has handed its connect burst to the network.
    pub fn connected(self, now: Now) -> Session {
        let mut s = self.build(now);
        s.on_connected(now);
        drain(&mut s);
        s
    }
}

/// Takes every queued request, as the event loop does while connected.
pub(crate) fn drain(session: &mut Session) -> Vec<Request> {
    std::iter::from_fn(|| session.pop_request()).collect()
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
    }
}
