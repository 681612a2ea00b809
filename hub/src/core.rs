//! The hub's core: the environment's [`Ports`], and the IoT rules emulation. A device
//! message goes to the function whose rule in `routes.json` matches its topic, through
//! the [`registry`](crate::registry), with the same event a rule builds (its
//! `receivedAt` is when the broker received the message); an invocation that fails with
//! an error a retry can fix is retried after each of the configured delays (like
//! asynchronous Lambda invocations: two retries), then written to the dead-letter file;
//! any other failure is recorded as an `InvalidMessage` event and dead-lettered at once,
//! so nothing is lost silently. After the `heartbeat` or `hello` function handled a
//! message, the [`device streams`](crate::feed::devices) publish it to their watchers.
//! [`crate::delivery`] decides when invocations run.

use std::{
    future::Future,
    io::Write,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use mir_proto::topics::{self, PresenceKind};
use mir_shared::{
    adapters::embedded::EmbeddedStore,
    failure::{self, InvocationInput},
    ports::Ports,
    routes::RoutesTable,
    rule_event::{CustomRouteEvent, LifecycleEvent, PresenceInput, RuleEvent, ScheduledEvent},
};

use crate::metrics::HubMetrics;
use crate::registry::{self, Function, InvokeError, PresenceFn, RuleFn, ScheduleFn};

/// The rules of `routes.json`, resolved to the registry's functions once.
pub struct Rules {
    /// Device routes: topic filter, function name, handler.
    device: Vec<(String, &'static str, RuleFn)>,
    /// The lifecycle route and its schedule (the presence function).
    presence: Option<(&'static str, PresenceFn, ScheduleFn)>,
    /// The functions run by their schedule alone (the certificate rotation).
    scheduled: Vec<(&'static str, ScheduleFn)>,
}

/// A function of `routes.json` the registry cannot dispatch.
#[derive(Debug, thiserror::Error)]
#[error("routes.json names the function {0:?}, which the hub's registry cannot dispatch")]
pub struct UnknownFunction(pub String);

impl Rules {
    pub fn from_routes(routes: &RoutesTable) -> Result<Self, UnknownFunction> {
        let mut rules = Rules {
            device: Vec::new(),
            presence: None,
            scheduled: Vec::new(),
        };
        for f in &routes.functions {
            let (name, entry) = registry::REGISTRY
                .iter()
                .find(|(n, _)| *n == f.name)
                .ok_or_else(|| UnknownFunction(f.name.clone()))?;
            match entry {
                Function::Rule(handler) => {
                    for r in &f.rules {
                        rules.device.push((r.topic_filter.clone(), name, *handler));
                    }
                }
                Function::Presence {
                    lifecycle,
                    schedule,
                } => rules.presence = Some((name, *lifecycle, *schedule)),
                Function::Schedule(handler) => rules.scheduled.push((name, *handler)),
                // The hub's feed (`crate::feed`) publishes what the events port stores.
                Function::Api(_) | Function::Stream(_) => {}
            }
        }
        Ok(rules)
    }

    fn device_rule(&self, topic: &str) -> Option<(&'static str, RuleFn)> {
        self.device
            .iter()
            .find(|(filter, _, _)| topics::matches(filter, topic))
            .map(|(_, name, f)| (*name, *f))
    }
}

pub struct Core {
    pub ports: Ports,
    pub rules: Rules,
    /// Set for the `local` profile: pruned like DynamoDB TTL would.
    pub embedded: Option<EmbeddedStore>,
    pub dead_letters: DeadLetters,
    /// Delay before each retry of a retryable failure.
    pub retry_delays: Vec<Duration>,
    /// Cancelled when the hub stops: pending retries run at once instead of waiting.
    pub draining: CancellationToken,
    pub metrics: Arc<HubMetrics>,
    /// Messages of the devices' custom routes, for the modules watching them.
    pub custom_routes: crate::custom_routes::CustomRoutes,
    /// The heartbeats and schemas the device routes handled, for their watchers.
    pub device_streams: crate::feed::devices::DeviceStreams,
}

/// Appends failed invocations to `dead-letters.jsonl` (the hub's on-failure destination).
pub struct DeadLetters {
    path: PathBuf,
    lock: Mutex<()>,
    /// The last write failed: [`DeadLetters::writable`] checks the file again.
    failing: AtomicBool,
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
            failing: AtomicBool::new(false),
        }
    }

    /// Whether a dead letter can be written: `Ok` unless the last write failed and the
    /// file still cannot be opened for appending.
    pub fn writable(&self) -> std::io::Result<()> {
        if !self.failing.load(Ordering::Acquire) {
            return Ok(());
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.failing.store(false, Ordering::Release);
        Ok(())
    }

    /// Appends one dead letter; `false` when it could not be written (logged).
    fn write<E: Serialize>(&self, function: &str, err: &InvokeError, event: &E) -> bool {
        let line = DeadLetter {
            time: Utc::now(),
            function,
            error: err.to_string(),
            retryable: err.is_retryable(),
            event,
        };
        let mut text = match serde_json::to_string(&line) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, function, "could not encode a dead letter");
                return false;
            }
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
            self.failing.store(true, Ordering::Release);
            return false;
        }
        self.failing.store(false, Ordering::Release);
        true
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// The retry delays of a hub that was not configured otherwise (`delivery.retryDelaysMs`).
pub fn default_retry_delays() -> Vec<Duration> {
    crate::config::DeliveryConfig::default()
        .retry_delays_ms
        .into_iter()
        .map(Duration::from_millis)
        .collect()
}

impl Core {
    /// A core with the default retry delays.
    pub fn new(
        ports: Ports,
        rules: Rules,
        embedded: Option<EmbeddedStore>,
        dead_letters: DeadLetters,
    ) -> Self {
        Self {
            ports,
            rules,
            embedded,
            dead_letters,
            retry_delays: default_retry_delays(),
            draining: CancellationToken::new(),
            metrics: Arc::new(HubMetrics::default()),
            custom_routes: Default::default(),
            device_streams: Default::default(),
        }
    }

    /// Runs `call` like an asynchronous Lambda invocation: retried after each delay while
    /// the error is retryable, then dead-lettered; an error a retry cannot fix is
    /// recorded as an event and dead-lettered at once. The outcome when it succeeded.
    async fn invoke<E, F, Fut>(&self, function: &str, event: &E, call: F) -> Option<Value>
    where
        E: Serialize + InvocationInput,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Value, InvokeError>>,
    {
        let mut attempt = 0;
        loop {
            let started = std::time::Instant::now();
            let result = call().await;
            let failure = result.as_ref().err().map(InvokeError::is_retryable);
            self.metrics.invoked(function, started, failure);
            match result {
                Ok(outcome) => {
                    tracing::debug!(function, %outcome, "handled");
                    return Some(outcome);
                }
                Err(e) if e.is_retryable() && attempt < self.retry_delays.len() => {
                    tracing::info!(function, error = %e, attempt, "retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(self.retry_delays[attempt]) => {}
                        _ = self.draining.cancelled() => {}
                    }
                    attempt += 1;
                }
                Err(e) => {
                    tracing::warn!(function, error = %e, "invocation failed; dead-lettered");
                    if let InvokeError::Handler(cause) = &e {
                        if !cause.is_retryable() {
                            self.record_refusal(function, event, cause).await;
                        }
                    }
                    if self.dead_letters.write(function, &e, event) {
                        self.metrics.dead_letters.inc();
                    } else {
                        self.metrics.dead_letter_write_failures.inc();
                    }
                    return None;
                }
            }
        }
    }

    async fn record_refusal(
        &self,
        function: &str,
        event: &impl InvocationInput,
        cause: &mir_shared::service::HandlerError,
    ) {
        let (Some(events), Some(ev)) = (
            self.ports.events.as_deref(),
            failure::failure_event(function, event, cause),
        ) else {
            return;
        };
        if let Err(e) = events.append(&[ev]).await {
            tracing::warn!(function, error = %e, "could not record the refused message");
        }
    }

    /// The IoT rules emulation: a device published `payload` on `topic`, received now.
    pub async fn on_device_message(&self, client_id: &str, topic: &str, payload: &Bytes) {
        self.on_device_message_at(client_id, topic, payload, Utc::now())
            .await
    }

    /// [`Core::on_device_message`] for a message the broker received at `received_at`.
    pub async fn on_device_message_at(
        &self,
        client_id: &str,
        topic: &str,
        payload: &Bytes,
        received_at: DateTime<Utc>,
    ) {
        if let Ok((id, route)) = topics::parse_custom(topic) {
            // A module's route: no platform function reads it (the broker's policy let
            // only the device itself publish on it).
            let event = CustomRouteEvent::new(id.as_str(), client_id, &route, payload, received_at);
            self.custom_routes.publish(event);
            return;
        }
        let Some((function, handler)) = self.rules.device_rule(topic) else {
            tracing::warn!(client_id, topic, "message on a topic no rule reads");
            return;
        };
        let Ok((id, kind)) = topics::parse(topic) else {
            tracing::warn!(
                client_id,
                topic,
                "a rule matched a topic without a device id"
            );
            return;
        };
        let ev = RuleEvent::new(id.as_str(), client_id, payload, received_at);
        let Some(outcome) = self
            .invoke(function, &ev, || handler(&self.ports, &ev))
            .await
        else {
            return;
        };
        let handled = crate::feed::devices::Handled {
            topic: kind,
            device_id: id.as_str(),
            received_at: ev.received_at(),
            payload,
            outcome: &outcome,
        };
        let published = self
            .device_streams
            .handled(self.ports.twins.as_deref(), handled)
            .await;
        if let Err(e) = published {
            tracing::warn!(function, topic, error = %e, "handled, but not published to the device streams");
        }
    }

    /// The lifecycle rule: a client connected or disconnected at `at`. `version` is the
    /// connection's `versionNumber` (higher for each new connection of a client id).
    pub async fn on_presence(
        &self,
        kind: PresenceKind,
        client_id: &str,
        session_id: &str,
        version: u64,
        disconnect_reason: Option<&str>,
        at: DateTime<Utc>,
    ) {
        let Some((function, lifecycle, _)) = self.rules.presence else {
            return;
        };
        let ev = PresenceInput::Lifecycle(LifecycleEvent {
            client_id: client_id.to_string(),
            timestamp: at.timestamp_millis(),
            event_type: kind.as_str().to_string(),
            session_identifier: session_id.to_string(),
            principal_identifier: client_id.to_string(),
            ip_address: None,
            disconnect_reason: disconnect_reason.map(String::from),
            version_number: version,
            client_initiated_disconnect: disconnect_reason
                .map(|r| r == "CLIENT_INITIATED_DISCONNECT"),
        });
        self.invoke(function, &ev, || lifecycle(&self.ports, &ev))
            .await;
    }

    /// The schedules: the stale-heartbeat sweep, then every scheduled function (each
    /// runs at the sweep's interval here, more often than in the cloud, which its
    /// idempotent run allows).
    pub async fn sweep(&self) {
        let now = Utc::now();
        let scheduled = ScheduledEvent {
            detail_type: "Scheduled Event".into(),
            source: "aws.events".into(),
            time: now,
        };
        if let Some((function, _, schedule)) = self.rules.presence {
            let ev = PresenceInput::Schedule(scheduled.clone());
            self.invoke(function, &ev, || schedule(&self.ports, now))
                .await;
        }
        for (function, schedule) in &self.rules.scheduled {
            self.invoke(function, &scheduled, || schedule(&self.ports, now))
                .await;
        }
    }
}
