//! The hub's core: the ports built once, and the same handlers the Lambda functions
//! run, called with the same events. Device messages go through the IoT rules
//! emulation ([`Core::on_device_message`]); failed invocations are retried like
//! asynchronous Lambda invocations (two retries) and then written to the dead-letter
//! file, so nothing is lost silently.

use std::{
    future::Future,
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use chrono::Utc;
use serde::Serialize;

use mir_proto::topics::{self, DeviceTopic, PresenceKind};
use mir_shared::{
    adapters::embedded::EmbeddedStore,
    ports::{
        CertificateIssuer, CommandStore, EventStore, SchemaStore, SystemClock, TelemetryReader,
        TelemetrySink, TwinStore,
    },
    rule_event::{LifecycleEvent, PresenceInput, RuleEvent},
    service::{HandlerError, SchemaCache},
};

use super::adapters::BrokerPublisher;

/// Retry delays of a failed invocation (IoT rules invoke Lambda asynchronously, which
/// retries twice).
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(1000)];

/// The stores of one profile, as the ports the handlers take.
pub struct Stores {
    pub twins: Arc<dyn TwinStore>,
    pub schemas: Arc<dyn SchemaStore>,
    pub commands: Arc<dyn CommandStore>,
    pub events: Arc<dyn EventStore>,
    pub telemetry: Arc<dyn TelemetrySink>,
    pub telemetry_reader: Arc<dyn TelemetryReader>,
}

impl Stores {
    /// Every store on one embedded database.
    pub fn embedded(store: &EmbeddedStore) -> Self {
        Self {
            twins: Arc::new(store.clone()),
            schemas: Arc::new(store.clone()),
            commands: Arc::new(store.clone()),
            events: Arc::new(store.clone()),
            telemetry: Arc::new(store.clone()),
            telemetry_reader: Arc::new(store.clone()),
        }
    }
}

pub struct Core {
    pub stores: Stores,
    /// Set for the `local` profile: pruned like DynamoDB TTL would.
    pub embedded: Option<EmbeddedStore>,
    pub publisher: Arc<BrokerPublisher>,
    pub certificates: Option<Arc<dyn CertificateIssuer>>,
    pub cache: SchemaCache,
    pub clock: SystemClock,
    pub stale_after: chrono::Duration,
    pub dead_letters: DeadLetters,
}

/// Appends failed invocations to `dead-letters.jsonl` (the hub's on-failure destination).
pub struct DeadLetters {
    path: PathBuf,
    lock: Mutex<()>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeadLetter<'a, E: Serialize> {
    time: chrono::DateTime<Utc>,
    function: &'a str,
    error: String,
    retryable: bool,
    event: &'a E,
}

impl DeadLetters {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Mutex::new(()),
        }
    }

    fn write<E: Serialize>(&self, function: &str, err: &HandlerError, event: &E) {
        let line = DeadLetter {
            time: Utc::now(),
            function,
            error: err.to_string(),
            retryable: err.is_retryable(),
            event,
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        let _guard = self.lock.lock();
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            tracing::error!(error = %e, path = %self.path.display(), "could not write a dead letter");
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Core {
    /// Runs `call` like an asynchronous Lambda invocation: retried while the error is
    /// retryable, then dead-lettered.
    async fn invoke<T, E, F, Fut>(&self, function: &str, event: &E, call: F)
    where
        T: std::fmt::Debug,
        E: Serialize,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, HandlerError>>,
    {
        let mut attempt = 0;
        loop {
            match call().await {
                Ok(outcome) => {
                    tracing::debug!(function, ?outcome, "handled");
                    return;
                }
                Err(e) if e.is_retryable() && attempt < RETRY_DELAYS.len() => {
                    tracing::info!(function, error = %e, attempt, "retrying");
                    tokio::time::sleep(RETRY_DELAYS[attempt]).await;
                    attempt += 1;
                }
                Err(e) => {
                    tracing::warn!(function, error = %e, "invocation failed; dead-lettered");
                    self.dead_letters.write(function, &e, event);
                    return;
                }
            }
        }
    }

    /// The IoT rules emulation: a device published `payload` on `topic`.
    pub async fn on_device_message(&self, client_id: &str, topic: &str, payload: &Bytes) {
        let Ok((id, kind)) = topics::parse(topic) else {
            tracing::warn!(client_id, topic, "message on a topic no rule reads");
            return;
        };
        let ev = RuleEvent::new(id.as_str(), client_id, payload, Utc::now());
        let st = &self.stores;
        let cache = &self.cache;
        let publisher = self.publisher.as_ref();
        match kind {
            DeviceTopic::Hello => {
                let deps = mir_fn_hello::Deps {
                    twins: st.twins.as_ref(),
                    schemas: st.schemas.as_ref(),
                    events: st.events.as_ref(),
                    cache,
                };
                self.invoke("hello", &ev, || mir_fn_hello::handle(&deps, &ev))
                    .await
            }
            DeviceTopic::Heartbeat => {
                let deps = mir_fn_heartbeat::Deps {
                    twins: st.twins.as_ref(),
                    events: st.events.as_ref(),
                };
                self.invoke("heartbeat", &ev, || mir_fn_heartbeat::handle(&deps, &ev))
                    .await
            }
            DeviceTopic::Telemetry => {
                let deps = mir_fn_telemetry::Deps {
                    twins: st.twins.as_ref(),
                    schemas: st.schemas.as_ref(),
                    sink: st.telemetry.as_ref(),
                    events: st.events.as_ref(),
                    publisher,
                    cache,
                };
                self.invoke("telemetry", &ev, || mir_fn_telemetry::handle(&deps, &ev))
                    .await
            }
            DeviceTopic::Reported => {
                let deps = mir_fn_reported::Deps {
                    twins: st.twins.as_ref(),
                    schemas: st.schemas.as_ref(),
                    events: st.events.as_ref(),
                    cache,
                };
                self.invoke("reported", &ev, || mir_fn_reported::handle(&deps, &ev))
                    .await
            }
            DeviceTopic::DesiredGet => {
                let deps = mir_fn_desired::Deps {
                    twins: st.twins.as_ref(),
                    schemas: st.schemas.as_ref(),
                    publisher,
                    cache,
                };
                self.invoke("desired", &ev, || mir_fn_desired::handle(&deps, &ev))
                    .await
            }
            DeviceTopic::CommandResponse => {
                let deps = mir_fn_command_response::Deps {
                    commands: st.commands.as_ref(),
                    schemas: st.schemas.as_ref(),
                    events: st.events.as_ref(),
                    cache,
                };
                self.invoke("command-response", &ev, || {
                    mir_fn_command_response::handle(&deps, &ev)
                })
                .await
            }
            DeviceTopic::CommandRequest | DeviceTopic::Desired | DeviceTopic::HelloGet => {
                tracing::warn!(
                    client_id,
                    topic,
                    "a device published on a cloud-to-device topic"
                );
            }
        }
    }

    fn presence_deps(&self) -> mir_fn_presence::Deps<'_> {
        mir_fn_presence::Deps {
            twins: self.stores.twins.as_ref(),
            events: self.stores.events.as_ref(),
            clock: &self.clock,
            stale_after: self.stale_after,
        }
    }

    /// The lifecycle rule: a client connected or disconnected.
    pub async fn on_presence(
        &self,
        kind: PresenceKind,
        client_id: &str,
        session_id: &str,
        disconnect_reason: Option<&str>,
    ) {
        let ev = PresenceInput::Lifecycle(LifecycleEvent {
            client_id: client_id.to_string(),
            timestamp: Utc::now().timestamp_millis(),
            event_type: kind.as_str().to_string(),
            session_identifier: session_id.to_string(),
            principal_identifier: client_id.to_string(),
            ip_address: None,
            disconnect_reason: disconnect_reason.map(String::from),
            version_number: 0,
            client_initiated_disconnect: disconnect_reason
                .map(|r| r == "CLIENT_INITIATED_DISCONNECT"),
        });
        let deps = self.presence_deps();
        self.invoke("presence", &ev, || mir_fn_presence::handle(&deps, &ev))
            .await;
    }

    /// The schedule: stale-heartbeat sweep.
    pub async fn sweep(&self) {
        let deps = self.presence_deps();
        let now = Utc::now();
        self.invoke(
            "presence",
            &serde_json::json!({"detail-type": "Scheduled Event", "time": now}),
            || mir_fn_presence::sweep(&deps, now),
        )
        .await;
    }
}
