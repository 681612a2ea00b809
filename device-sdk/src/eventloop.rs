//! Network I/O: drives rumqttc and the [`Session`] state machine.
//!
//! Three tasks:
//! - the connector owns the connection: for every attempt it creates a fresh rumqttc
//!   client and event loop, polls it until the connection fails, then waits a backoff
//!   delay (exponential, full jitter). A fresh client per connection means rumqttc never
//!   replays (or drops) messages of an old connection on its own: the session is the
//!   only owner of what is unacknowledged, and sends it again after a reconnect;
//! - the driver (here, [`run`]) owns the session: it feeds it network events,
//!   application requests and timers, spawns command handlers, and moves the session's
//!   requests to rumqttc with `try_*` calls only, so it never waits on a full channel;
//!   it maps rumqttc's packet ids to the session's messages (`Outgoing::Publish` comes in
//!   the order the requests were handed) so that a PUBACK settles exactly one message;
//! - the property task calls property handlers in order.
//!
//! The driver never touches the offline store: the session asks for store operations,
//! the driver passes them to the store task ([`store_task`], tokio's blocking pool, one
//! batch at a time, in order) and feeds the answers back to the session.

use std::{
    collections::HashMap,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use mir_proto::{
    wire::{CommandRequest, CommandResponse, CommandResponseStatus, PropertyValue},
    MAX_INFLIGHT,
};
use rumqttc::{AsyncClient, Event, Incoming, Outgoing, QoS, SubscribeFilter, SubscribeReasonCode};
use rumqttc_ring as rumqttc;
use tokio::sync::{mpsc, watch};

use crate::{
    backoff::{seed, Backoff, Reconnect, KICKED_IN_A_ROW, STABLE_AFTER},
    client::{AppRequest, Done},
    clock::WallClock,
    config::{Config, SCHEMA_COMPRESSION},
    handlers::{CommandFn, SharedRegistry},
    session::{
        error_response, Action, NotStored, Now, Request, Session, SessionConfig, StoreReply, WaitId,
    },
    store::Store,
    LinkIssue, SdkError, Status, StoreHealth,
};

mod connector;
mod link;
pub(crate) mod store_task;

use connector::{connect_loop, NetMsg};

use store_task::StoreTask;

/// Capacity of rumqttc's request channel: above the in-flight window, so that handing
/// a request never fails while the connection is up.
const CLIENT_CHANNEL: usize = MAX_INFLIGHT as usize + 16;
/// Room for the topic and MQTT headers above the payload limit.
const PACKET_OVERHEAD: usize = 4 * 1024;
/// How long shutdown waits for queued messages to be acknowledged.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The clocks as the driver reads them: tokio's monotonic clock (the system's, or
/// the paused clock of a test) and the device's wall clock.
fn now_of(clock: &dyn WallClock) -> Now {
    let (unix_ns, synced) = crate::clock::read(clock);
    Now {
        mono: tokio::time::Instant::now().into_std(),
        unix_ns,
        synced,
    }
}

/// The session configuration of a device whose queue is where `store_health` says.
pub(crate) fn session_config(config: &Config, store_health: StoreHealth) -> SessionConfig {
    SessionConfig {
        device_id: config.device_id.clone(),
        schema: config.schema.clone(),
        schema_compression: SCHEMA_COMPRESSION,
        heartbeat_interval: config.heartbeat_interval,
        telemetry_linger: config.telemetry_linger,
        max_queued_bytes: config.max_queued_bytes,
        persistence: config.persistence,
        retention: config.retention,
        disk_limit_percent: config.disk_limit_percent,
        max_store_bytes: config.max_store_bytes,
        max_inflight: usize::from(MAX_INFLIGHT),
        hello_on_connect: !config.no_schema_on_boot,
        pace: config.pace,
        store_health,
    }
}

/// The event loop of one device, until `shutdown` completes.
pub(crate) async fn run(
    config: Arc<Config>,
    store: Option<Box<dyn Store>>,
    store_health: StoreHealth,
    registry: SharedRegistry,
    mut app_rx: mpsc::Receiver<AppRequest>,
    status: watch::Sender<Status>,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
) {
    let (net_tx, mut net_rx) = mpsc::channel::<NetMsg>(256);
    let backoff = Backoff::new(
        config.backoff_min,
        config.backoff_max,
        seed(config.device_id.as_str()),
    );
    let policy = Reconnect::new(backoff, config.connect_interval);
    let connector = tokio::spawn(connect_loop(Arc::clone(&config), net_tx, policy));
    let (done_tx, mut done_rx) = mpsc::channel::<CommandResponse>(64);
    let (prop_tx, prop_rx) = mpsc::unbounded_channel::<PropertyValue>();
    let properties = tokio::spawn(apply_properties(registry.clone(), prop_rx));

    let (store, boot) = match store {
        Some(store) => match StoreTask::open(store).await {
            Some((task, boot)) => (task, Some(boot)),
            None => return,
        },
        None => (StoreTask::none(), None),
    };
    let session = Session::new(
        session_config(&config, store_health),
        boot,
        now_of(&*config.clock),
    );
    let mut driver = Driver {
        config,
        session,
        store,
        client: None,
        epoch: 0,
        up_since: None,
        registry,
        status,
        done_tx,
        prop_tx,
        waiters: HashMap::new(),
        next_wait: 1,
    };
    // A device that boots offline runs its property handlers with the cached values.
    let names = driver.registry.read().property_names();
    for name in names {
        if let Some(action) = driver.session.on_property_registered(&name) {
            driver.dispatch(action);
        }
    }
    driver.run_store_ops();
    driver.publish_status();

    let mut shutdown = shutdown;
    let mut app_open = true;
    loop {
        let deadline = driver.session.next_deadline();
        tokio::select! {
            _ = &mut shutdown => break,
            msg = net_rx.recv() => match msg {
                Some(msg) => driver.on_net(msg),
                None => {
                    tracing::error!("the MQTT connector stopped");
                    break;
                }
            },
            request = app_rx.recv(), if app_open => match request {
                Some(request) => {
                    driver.on_app_request(request);
                    // Take what else is waiting, so that a burst of sends is one pass.
                    for _ in 0..256 {
                        match app_rx.try_recv() {
                            Ok(request) => driver.on_app_request(request),
                            Err(_) => break,
                        }
                    }
                }
                None => app_open = false,
            },
            Some(response) = done_rx.recv() => driver.session.command_finished(response),
            replies = driver.store.replies(), if driver.store.is_busy() => {
                driver.on_store_replies(replies);
            }
            _ = sleep_until(deadline) => {}
        }
        driver.session.on_timer(driver.now());
        driver.clear_link_issue_when_stable();
        driver.drain();
        driver.run_store_ops();
        // The status first: a caller woken by its wait sees the state that settled it.
        driver.publish_status();
        driver.answer_waiters();
    }

    driver.shutdown(&mut net_rx, &mut app_rx).await;
    connector.abort();
    properties.abort();
    driver.status.send_modify(|s| s.connected = false);
    driver.publish_status();
    driver.store.close().await;
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
    store: StoreTask,
    /// The client of the current connection, while it is up.
    client: Option<AsyncClient>,
    /// The current connection.
    epoch: u64,
    /// When the current connection was accepted.
    up_since: Option<tokio::time::Instant>,
    registry: SharedRegistry,
    status: watch::Sender<Status>,
    done_tx: mpsc::Sender<CommandResponse>,
    prop_tx: mpsc::UnboundedSender<PropertyValue>,
    /// Callers waiting on the session (sends with `always`, flushes), by wait id.
    waiters: HashMap<WaitId, Done>,
    next_wait: WaitId,
}

/// The error a caller gets for a message that did not reach the store.
fn not_stored_error(why: NotStored) -> SdkError {
    match why {
        NotStored::Failed(source) => SdkError::NotStored { source },
        NotStored::Dropped => SdkError::StoreFull,
    }
}

impl Driver {
    fn now(&self) -> Now {
        now_of(&*self.config.clock)
    }

    /// A connection up for [`STABLE_AFTER`] clears the link issue of the status.
    fn clear_link_issue_when_stable(&mut self) {
        let stable = self.up_since.is_some_and(|t| t.elapsed() >= STABLE_AFTER);
        if stable {
            self.session.set_link_issue(None);
        }
    }

    /// Answers the callers whose waits the session settled.
    fn answer_waiters(&mut self) {
        for (id, result) in self.session.take_settled() {
            if let Some(done) = self.waiters.remove(&id) {
                // A caller that stopped waiting is fine.
                let _ = done.send(result.map_err(not_stored_error));
            }
        }
    }

    fn wait_for(&mut self, done: Done) -> WaitId {
        let id = self.next_wait;
        self.next_wait += 1;
        self.waiters.insert(id, done);
        id
    }

    /// Hands the store operations the session asked for to the store task.
    fn run_store_ops(&mut self) {
        let ops = self.session.take_store_ops();
        if !ops.is_empty() {
            self.store.submit(ops);
        }
    }

    fn on_store_replies(&mut self, replies: Vec<StoreReply>) {
        for reply in replies {
            self.session.on_store_reply(reply);
        }
    }

    fn on_net(&mut self, msg: NetMsg) {
        match msg {
            NetMsg::Connected {
                epoch,
                client,
                session_present,
            } => {
                tracing::info!(
                    target = %self.config.target,
                    device = %self.config.device_id,
                    session_present,
                    "connected"
                );
                self.epoch = epoch;
                self.client = Some(client);
                self.up_since = Some(tokio::time::Instant::now());
                // Kicks after CONNACK stay reported until a connection is stable.
                let kicked = self
                    .session
                    .link_issue()
                    .filter(|i| matches!(i, LinkIssue::DroppedAfterConnect { .. }));
                self.session.set_link_issue(kicked);
                self.session.on_connected(self.now());
                self.status.send_modify(|s| {
                    s.connected = true;
                    s.connects += 1;
                    s.retry_in = None;
                    s.link_issue = kicked;
                });
            }
            NetMsg::Event { epoch, event } if epoch == self.epoch => self.on_event(event),
            NetMsg::Event { .. } => {}
            NetMsg::Lost {
                epoch,
                error,
                retry_in,
                was_up,
                kicked_in_a_row,
            } => {
                let issue = if kicked_in_a_row >= KICKED_IN_A_ROW {
                    LinkIssue::DroppedAfterConnect {
                        in_a_row: kicked_in_a_row,
                    }
                } else if was_up {
                    LinkIssue::ConnectionLost
                } else {
                    LinkIssue::ConnectFailed
                };
                if kicked_in_a_row >= KICKED_IN_A_ROW && was_up {
                    tracing::warn!(
                        target = %self.config.target,
                        device = %self.config.device_id,
                        in_a_row = kicked_in_a_row,
                        "the broker closed the connection right after accepting it, \
                         {kicked_in_a_row} times in a row: likely another process connects with \
                         this client id, or the IoT policy denies a publish or subscription; \
                         next attempt in {retry_in:?}"
                    );
                }
                self.up_since = None;
                self.session.set_link_issue(Some(issue));
                self.status.send_modify(|s| {
                    s.connected = false;
                    s.retry_in = Some(retry_in);
                    s.link_issue = Some(issue);
                });
                if epoch == self.epoch && self.client.is_some() {
                    tracing::warn!(
                        target = %self.config.target,
                        "connection lost: {error}; reconnecting in {retry_in:?}"
                    );
                    self.client = None;
                    self.session.on_disconnected();
                } else {
                    tracing::debug!(
                        target = %self.config.target,
                        "cannot connect: {error}; retrying in {retry_in:?}"
                    );
                }
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Incoming(Incoming::Publish(publish)) => {
                let actions = {
                    let registry = self.registry.read();
                    self.session.on_incoming(
                        &publish.topic,
                        &publish.payload,
                        &*registry,
                        self.now(),
                    )
                };
                for action in actions {
                    self.dispatch(action);
                }
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => self.session.on_outgoing_publish(pkid),
            Event::Incoming(Incoming::PubAck(ack)) => self.session.on_puback(ack.pkid, self.now()),
            Event::Incoming(Incoming::SubAck(ack))
                if ack.return_codes.contains(&SubscribeReasonCode::Failure) =>
            {
                tracing::error!(
                    "the broker refused a subscription: commands or desired properties will not arrive"
                );
            }
            _ => {}
        }
    }

    /// The status from the session's counters: what its heartbeats carry too.
    fn publish_status(&self) {
        let c = self.session.counters();
        self.status.send_if_modified(|s| {
            let before = *s;
            s.stored_messages = c.stored_messages;
            s.queued_messages = c.queued_messages;
            s.queued_bytes = c.queued_bytes;
            s.stored_records = c.stored_records;
            s.dropped_messages = c.dropped_messages;
            s.quarantined_records = c.quarantined_records;
            s.corrupt_records = c.corrupt_records;
            s.store_errors = c.store_errors;
            s.store = c.store;
            s.clock = c.clock;
            s.link_issue = c.link_issue;
            *s != before
        });
    }

    fn on_app_request(&mut self, request: AppRequest) {
        match request {
            AppRequest::Telemetry { item, done: None } => {
                if let Err(e) = self.session.push_telemetry(item, self.now()) {
                    tracing::error!("telemetry refused: {e}");
                }
            }
            AppRequest::Telemetry {
                item,
                done: Some(done),
            } => {
                let id = self.wait_for(done);
                if let Err(e) = self.session.push_telemetry_awaited(item, self.now(), id) {
                    if let Some(done) = self.waiters.remove(&id) {
                        let _ = done.send(Err(e));
                    }
                }
            }
            AppRequest::Flush(done) => {
                let id = self.wait_for(done);
                self.session.flush(self.now(), id);
            }
            AppRequest::Reported(value) => {
                if let Err(e) = self.session.push_reported(value, self.now()) {
                    tracing::error!("reported properties refused: {e}");
                }
            }
            AppRequest::Custom(publish) => self.session.push_custom(publish),
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
                        let limit =
                            command_limit(&request, self.config.command_timeout, self.now());
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

    /// Moves requests to rumqttc while connected, within the in-flight window.
    fn drain(&mut self) {
        let Some(client) = &self.client else {
            return;
        };
        while let Some((request, token)) = self.session.next_request() {
            let sent = match &request {
                Request::Subscribe(filters) => client.try_subscribe_many(
                    filters
                        .iter()
                        .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce)),
                ),
                Request::Publish(p) => client.try_publish(
                    p.topic.clone(),
                    QoS::AtLeastOnce,
                    false,
                    Vec::from(p.payload.clone()),
                ),
            };
            if sent.is_err() {
                // Closed (the connection just failed: the Lost message follows) or full.
                break;
            }
            self.session.handed(token);
        }
    }

    /// Flushes telemetry, gives queued messages a few seconds to be acknowledged,
    /// disconnects, and leaves what is still unacknowledged in the store.
    async fn shutdown(
        &mut self,
        net_rx: &mut mpsc::Receiver<NetMsg>,
        app_rx: &mut mpsc::Receiver<AppRequest>,
    ) {
        while let Ok(request) = app_rx.try_recv() {
            if !matches!(request, AppRequest::PropertyRegistered(_)) {
                self.on_app_request(request);
            }
        }
        self.session.flush_telemetry(self.now());
        self.drain();
        self.run_store_ops();
        let grace = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while self.client.is_some() && !self.session.is_idle() {
            tokio::select! {
                msg = net_rx.recv() => match msg {
                    Some(NetMsg::Event { event: Event::Incoming(Incoming::Publish(_)), .. }) => {}
                    Some(msg) => self.on_net(msg),
                    None => break,
                },
                replies = self.store.replies(), if self.store.is_busy() => {
                    self.on_store_replies(replies);
                }
                _ = tokio::time::sleep_until(grace) => {
                    tracing::warn!(
                        queued = self.session.queued(),
                        "shutting down with messages not acknowledged: they stay queued"
                    );
                    break;
                }
            }
            self.session.on_timer(self.now());
            self.drain();
            self.run_store_ops();
            self.answer_waiters();
        }
        if let Some(client) = self.client.take() {
            if client.try_disconnect().is_ok() {
                let until = tokio::time::Instant::now() + Duration::from_secs(1);
                loop {
                    tokio::select! {
                        msg = net_rx.recv() => match msg {
                            Some(NetMsg::Event { event: Event::Outgoing(Outgoing::Disconnect), .. })
                            | Some(NetMsg::Lost { .. })
                            | None => break,
                            Some(_) => {}
                        },
                        _ = tokio::time::sleep_until(until) => break,
                    }
                }
            }
        }
        self.session.close(self.now());
        // What is left goes to the store before the device stops.
        self.run_store_ops();
        while self.store.is_busy() {
            let replies = self.store.replies().await;
            self.on_store_replies(replies);
            self.run_store_ops();
        }
        // The rest (flushes waiting for a PUBACK) get `Closed` when the driver goes.
        self.answer_waiters();
        tracing::info!(device = %self.config.device_id, "stopped");
    }
}

/// How long a command may run, from its receipt on the monotonic clock: the default
/// timeout, shortened by the request deadline when the wall clock is set (an unset
/// clock cannot judge a deadline).
fn command_limit(request: &CommandRequest, default: Duration, now: Now) -> Duration {
    if request.deadline_unix_ms <= 0 || !now.synced {
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

#[cfg(test)]
mod tests;
