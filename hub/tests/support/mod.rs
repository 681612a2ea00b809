//! The hub's HTTP router in-process (`tower::ServiceExt::oneshot`, no socket) over a
//! temporary embedded store, as `Hub::start` wires it (the feed's decorators, the core
//! and its device streams), and a reader of its server-sent streams. Shared by the
//! tests of the feed (`feed.rs`) and of the device streams (`device_streams.rs`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use mir_hub::{
    config::AccessConfig,
    core::{Core, DeadLetters, Rules},
    feed::{devices::DeviceStreams, Feed, FEED_CAPACITY},
    http::{self, HttpState},
};
use mir_shared::{
    adapters::{embedded::EmbeddedStore, memory::RecordingPublisher},
    domain::Twin,
    ports::{EventStore, Ports, TelemetrySink, TwinStore},
    routes::RoutesTable,
};

pub const WAIT: Duration = Duration::from_secs(5);
pub const TOKEN: &str = "0123456789abcdef";

pub struct App {
    pub router: axum::Router,
    pub events: Arc<dyn EventStore>,
    pub telemetry: Arc<dyn TelemetrySink>,
    pub store: EmbeddedStore,
    pub feed: Feed,
    pub shutdown: CancellationToken,
    pub core: Arc<Core>,
    _dir: tempfile::TempDir,
}

impl App {
    /// `capacity`: of the feed's channels and of the core's device streams.
    pub fn new(capacity: usize, access: AccessConfig) -> App {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("mir.redb")).unwrap();
        let routes = Arc::new(RoutesTable::load().unwrap());
        let shutdown = CancellationToken::new();
        let (ports, feed) = Feed::wire(
            Ports {
                publisher: Some(Arc::new(RecordingPublisher::new())),
                ..Ports::with_stores(store.clone())
            },
            capacity,
            shutdown.clone(),
        )
        .unwrap();
        let events = ports.events.clone().unwrap();
        let telemetry = ports.telemetry_sink.clone().unwrap();
        let core = Arc::new(Core {
            device_streams: DeviceStreams::new(capacity),
            ..Core::new(
                ports,
                Rules::from_routes(&routes).unwrap(),
                Some(store.clone()),
                DeadLetters::new(dir.path().join("dead-letters.jsonl")),
            )
        });
        let router = http::router(HttpState {
            core: core.clone(),
            routes,
            access: mir_hub::access::Access::new(&access),
            broker: None,
            dispatcher: None,
            feed: feed.clone(),
        });
        App {
            router,
            events,
            telemetry,
            store,
            feed,
            shutdown,
            core,
            _dir: dir,
        }
    }

    pub fn open() -> App {
        App::new(FEED_CAPACITY, AccessConfig::default())
    }

    pub async fn device(&self, id: &str, namespace: &str, labels: &[(&str, &str)]) {
        let mut t = Twin::default();
        t.spec.device_id = id.into();
        t.meta.name = id.into();
        t.meta.namespace = namespace.into();
        t.meta.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TwinStore::create(&self.store, &t).await.unwrap();
    }

    pub async fn watch(&self, query: &str, headers: &[(&str, &str)]) -> (StatusCode, Sse) {
        self.stream(&format!("/v1/events/watch{query}"), headers)
            .await
    }

    /// A GET of `uri` (with the hub's Host): its status and its stream.
    pub async fn stream(&self, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, Sse) {
        let mut request = Request::builder()
            .uri(uri)
            .header(header::HOST, "localhost");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        (
            status,
            Sse {
                body: response.into_body(),
                buffer: String::new(),
            },
        )
    }
}

/// One SSE message: `event`, `id`, `data` (parsed as JSON when it is).
#[derive(Debug)]
pub struct Message {
    pub event: String,
    pub id: String,
    pub data: Value,
}

pub struct Sse {
    pub body: Body,
    buffer: String,
}

impl Sse {
    /// The next message (comments skipped); None when the stream ended or nothing came
    /// within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut m = Message {
                    event: String::new(),
                    id: String::new(),
                    data: Value::Null,
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        m.event = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        m.id = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        let v = v.trim();
                        m.data = serde_json::from_str(v).unwrap_or(Value::String(v.into()));
                    }
                }
                if m.event.is_empty() && m.id.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(m);
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await;
            match frame {
                Ok(Some(Ok(f))) => {
                    if let Ok(data) = f.into_data() {
                        self.buffer.push_str(&String::from_utf8_lossy(&data));
                    }
                }
                _ => return None,
            }
        }
    }

    pub async fn ids(&mut self, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        while ids.len() < n {
            match self.next(WAIT).await {
                Some(m) => ids.push(m.id),
                None => break,
            }
        }
        ids
    }
}
