//! Network I/O: drives rumqttc and the [`Session`] state machine.
//!
//! Three tasks:
//! - the poller owns rumqttc's `EventLoop` and only polls it, so no MQTT packet is
//!   ever lost to a cancelled `poll()`; it forwards events and reconnects after a delay;
//! - the driver (here, [`run`]) owns the session: it feeds it network events,
//!   application requests and timers, spawns command handlers, and moves the session's
//!   requests to rumqttc with `try_*` calls only, so it never waits on a full channel;
//! - the property task calls property handlers in order.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use mir_proto::{
    wire::{CommandRequest, CommandResponse, CommandResponseStatus, PropertyValue},
    MAX_INFLIGHT, MAX_PAYLOAD_BYTES,
};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS,
    SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use rumqttc_ring as rumqttc;
use tokio::sync::{mpsc, watch};

use crate::{
    client::{AppRequest, Status},
    config::{Config, KEEP_ALIVE, RECONNECT_DELAY, SCHEMA_COMPRESSION},
    handlers::{CommandFn, SharedRegistry},
    session::{error_response, Action, Now, Request, Session, SessionConfig},
};

/// Capacity of rumqttc's request channel. Kept small: the session's outbox holds the
/// backlog, and what sits in rumqttc's channel is lost when a clean session reconnects.
const CLIENT_CHANNEL: usize = 32;
/// Room for the topic and MQTT headers above the payload limit.
const PACKET_OVERHEAD: usize = 4 * 1024;
/// How long shutdown waits for queued messages to be acknowledged.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

type NetEvent = Result<Event, ConnectionError>;

pub(crate) fn mqtt_options(config: &Config) -> MqttOptions {
    let mut options = MqttOptions::new(
        config.device_id.as_str(),
        config.target.host.clone(),
        config.target.port,
    );
    options
        .set_keep_alive(KEEP_ALIVE)
        .set_clean_session(true)
        .set_inflight(MAX_INFLIGHT)
        .set_max_packet_size(
            MAX_PAYLOAD_BYTES + PACKET_OVERHEAD,
            MAX_PAYLOAD_BYTES + PACKET_OVERHEAD,
        );
    if let Some(tls) = &config.tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::clone(tls),
        )));
    }
    options
}

fn now() -> Now {
    Now::system()
}

/// The event loop of one device, until `shutdown` completes.
pub(crate) async fn run(
    config: Arc<Config>,
    registry: SharedRegistry,
    mut app_rx: mpsc::Receiver<AppRequest>,
    status: watch::Sender<Status>,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
) {
    let (client, eventloop) = AsyncClient::new(mqtt_options(&config), CLIENT_CHANNEL);
    let (net_tx, mut net_rx) = mpsc::channel::<NetEvent>(64);
    let poller = tokio::spawn(poll_network(eventloop, net_tx, config.target.to_string()));
    let (done_tx, mut done_rx) = mpsc::channel::<CommandResponse>(64);
    let (prop_tx, prop_rx) = mpsc::unbounded_channel::<PropertyValue>();
    let properties = tokio::spawn(apply_properties(registry.clone(), prop_rx));

    let session = Session::new(
        SessionConfig {
            device_id: config.device_id.clone(),
            schema: config.schema.clone(),
            schema_compression: SCHEMA_COMPRESSION,
            heartbeat_interval: config.heartbeat_interval,
            telemetry_linger: config.telemetry_linger,
            max_queued_bytes: config.max_queued_bytes,
        },
        now(),
    );
    let mut driver = Driver {
        config,
        session,
        client,
        registry,
        status,
        done_tx,
        prop_tx,
        unacked: 0,
    };

    let mut shutdown = shutdown;
    let mut app_open = true;
    loop {
        let deadline = driver.session.next_deadline();
        tokio::select! {
            _ = &mut shutdown => break,
            event = net_rx.recv() => match event {
                Some(event) => driver.on_net_event(event),
                None => {
                    tracing::error!("the MQTT poller stopped");
                    break;
                }
            },
            request = app_rx.recv(), if app_open => match request {
                Some(request) => driver.on_app_request(request),
                None => app_open = false,
            },
            Some(response) = done_rx.recv() => driver.session.command_finished(response),
            _ = sleep_until(deadline) => {}
        }
        driver.session.on_timer(now());
        driver.drain();
    }

    driver.shutdown(&mut net_rx, &mut app_rx).await;
    poller.abort();
    properties.abort();
    driver.status.send_modify(|s| s.connected = false);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

struct Driver {
    config: Arc<Config>,
    session: Session,
    client: AsyncClient,
    registry: SharedRegistry,
    status: watch::Sender<Status>,
    done_tx: mpsc::Sender<CommandResponse>,
    prop_tx: mpsc::UnboundedSender<PropertyValue>,
    /// QoS 1 publishes handed to rumqttc on this connection and not yet acknowledged.
    unacked: usize,
}

impl Driver {
    fn on_net_event(&mut self, event: NetEvent) {
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                tracing::info!(
                    target = %self.config.target,
                    device = %self.config.device_id,
                    session_present = ack.session_present,
                    "connected"
                );
                self.unacked = 0;
                self.session.on_connected(now());
                self.status.send_modify(|s| {
                    s.connected = true;
                    s.connects += 1;
                });
            }
            Ok(Event::Incoming(Incoming::Publish(publish))) => {
                let actions = {
                    let registry = self.registry.read();
                    self.session
                        .on_incoming(&publish.topic, &publish.payload, &*registry, now())
                };
                for action in actions {
                    self.dispatch(action);
                }
            }
            Ok(Event::Incoming(Incoming::PubAck(_))) => {
                self.unacked = self.unacked.saturating_sub(1);
            }
            Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                    tracing::error!(
                        "the broker refused a subscription: commands or desired properties will not arrive"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => {
                if self.session.is_connected() {
                    tracing::warn!(target = %self.config.target, "connection lost: {e}");
                    self.session.on_disconnected();
                    self.status.send_modify(|s| s.connected = false);
                } else {
                    tracing::debug!(target = %self.config.target, "cannot connect: {e}");
                }
            }
        }
    }

    fn on_app_request(&mut self, request: AppRequest) {
        match request {
            AppRequest::Telemetry(item) => {
                if let Err(e) = self.session.push_telemetry(item, now()) {
                    tracing::error!("telemetry refused: {e}");
                }
            }
            AppRequest::Reported(value) => {
                if let Err(e) = self.session.push_reported(value) {
                    tracing::error!("reported properties refused: {e}");
                }
            }
            AppRequest::PropertyRegistered(name) => {
                if let Some(action) = self.session.on_property_registered(&name) {
                    self.dispatch(action);
                }
            }
        }
    }

    fn dispatch(&mut self, action: Action) {
        match action {
            Action::RunCommand(request) => {
                let handler = self.registry.read().command(&request.name);
                match handler {
                    Some(handler) => {
                        let limit = command_limit(&request, self.config.command_timeout, now());
                        tokio::spawn(run_command(handler, request, limit, self.done_tx.clone()));
                    }
                    None => self.session.command_finished(error_response(
                        request.id,
                        format!(
                            "no handler for command {} on device {}",
                            request.name, self.config.device_id
                        ),
                    )),
                }
            }
            Action::ApplyProperty(value) => {
                if self.prop_tx.send(value).is_err() {
                    tracing::error!("the property task stopped");
                }
            }
        }
    }

    /// Moves queued requests to rumqttc while connected, until its channel is full.
    fn drain(&mut self) {
        if !self.session.is_connected() {
            return;
        }
        while let Some(request) = self.session.next_request() {
            let sent = match request {
                Request::Subscribe(filters) => self.client.try_subscribe_many(
                    filters
                        .iter()
                        .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce)),
                ),
                Request::Publish(p) => self.client.try_publish(
                    p.topic.clone(),
                    QoS::AtLeastOnce,
                    false,
                    Vec::from(p.payload.clone()),
                ),
            };
            if sent.is_err() {
                // Full: the next event from the poller means room again.
                break;
            }
            if let Some(Request::Publish(_)) = self.session.pop_request() {
                self.unacked += 1;
            }
        }
    }

    /// Flushes telemetry, gives queued messages a few seconds to be acknowledged, then
    /// disconnects.
    async fn shutdown(
        &mut self,
        net_rx: &mut mpsc::Receiver<NetEvent>,
        app_rx: &mut mpsc::Receiver<AppRequest>,
    ) {
        while let Ok(request) = app_rx.try_recv() {
            if let AppRequest::Telemetry(_) | AppRequest::Reported(_) = request {
                self.on_app_request(request);
            }
        }
        self.session.flush_telemetry();
        self.drain();
        let grace = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while self.session.is_connected()
            && (self.session.next_request().is_some() || self.unacked > 0)
        {
            tokio::select! {
                event = net_rx.recv() => match event {
                    Some(Ok(Event::Incoming(Incoming::Publish(_)))) => {}
                    Some(event) => self.on_net_event(event),
                    None => break,
                },
                _ = tokio::time::sleep_until(grace) => {
                    tracing::warn!(
                        queued = self.session.queued(),
                        unacked = self.unacked,
                        "shutting down with messages not acknowledged"
                    );
                    break;
                }
            }
            self.drain();
        }
        if self.session.is_connected() && self.client.try_disconnect().is_ok() {
            let until = tokio::time::Instant::now() + Duration::from_secs(1);
            loop {
                tokio::select! {
                    event = net_rx.recv() => match event {
                        Some(Ok(Event::Outgoing(Outgoing::Disconnect))) | Some(Err(_)) | None => break,
                        Some(_) => {}
                    },
                    _ = tokio::time::sleep_until(until) => break,
                }
            }
        }
        self.session.on_disconnected();
        tracing::info!(device = %self.config.device_id, "stopped");
    }
}

/// How long a command may run: the default timeout, shortened by the request deadline.
fn command_limit(request: &CommandRequest, default: Duration, now: Now) -> Duration {
    if request.deadline_unix_ms <= 0 {
        return default;
    }
    let left_ms = request.deadline_unix_ms - now.unix_ns / 1_000_000;
    default.min(Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)))
}

async fn run_command(
    handler: CommandFn,
    request: CommandRequest,
    limit: Duration,
    done: mpsc::Sender<CommandResponse>,
) {
    let CommandRequest {
        id, name, payload, ..
    } = request;
    let task = tokio::spawn(handler(payload));
    let abort = task.abort_handle();
    let response = match tokio::time::timeout(limit, task).await {
        Ok(Ok(Ok(reply))) => CommandResponse {
            id,
            status: CommandResponseStatus::Success as i32,
            name: reply.name,
            payload: reply.payload,
            error: String::new(),
        },
        Ok(Ok(Err(error))) => {
            tracing::warn!(id, name, "command failed: {error}");
            error_response(id, error)
        }
        Ok(Err(join)) => {
            tracing::error!(id, name, "command handler panicked: {join}");
            error_response(id, format!("the handler of {name} panicked"))
        }
        Err(_) => {
            abort.abort();
            tracing::warn!(id, name, "command handler timed out");
            CommandResponse {
                id,
                status: CommandResponseStatus::Timeout as i32,
                error: format!("the handler of {name} did not finish within {limit:?}"),
                ..Default::default()
            }
        }
    };
    // The driver is gone only at shutdown, when answers no longer matter.
    let _ = done.send(response).await;
}

async fn apply_properties(
    registry: SharedRegistry,
    mut rx: mpsc::UnboundedReceiver<PropertyValue>,
) {
    while let Some(value) = rx.recv().await {
        let Some(handler) = registry.read().property(&value.name) else {
            continue;
        };
        let payload: Bytes = value.payload;
        match std::panic::catch_unwind(AssertUnwindSafe(|| handler(payload))) {
            Ok(Ok(())) => tracing::debug!(name = value.name, "desired property applied"),
            Ok(Err(e)) => tracing::error!(name = value.name, "{e}"),
            Err(_) => tracing::error!(name = value.name, "the property handler panicked"),
        }
    }
}

/// Polls rumqttc forever, forwarding every event; waits before reconnecting after errors.
async fn poll_network(mut eventloop: EventLoop, tx: mpsc::Sender<NetEvent>, target: String) {
    let mut failures: u32 = 0;
    loop {
        let event = eventloop.poll().await;
        let failed = event.is_err();
        if let Err(e) = &event {
            failures = failures.saturating_add(1);
            if failures == 1 || failures.is_power_of_two() {
                tracing::warn!(target, failures, "MQTT connection error: {e}");
            }
        } else {
            failures = 0;
        }
        if tx.send(event).await.is_err() {
            return;
        }
        if failed {
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    }
}
