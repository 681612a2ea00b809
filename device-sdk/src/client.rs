//! The device handle: registration of handlers, sends, launch and status.

use std::{
    fmt::{self, Display},
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use mir_proto::{
    topics::CustomRoute,
    wire::{PropertyValue, TelemetryItem},
    DeviceId, MAX_PAYLOAD_BYTES,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    config::{Builder, Config, Persistence, Target},
    eventloop,
    handlers::{
        command_fn, property_fn, raw_command_fn, raw_property_fn, CommandFn, PropertyFn,
        SharedRegistry,
    },
    session::{check_item_fits, Publish},
    store::Store,
    SdkError, Status, StoreHealth,
};

/// Where the event loop answers a caller that waits on it.
pub(crate) type Done = oneshot::Sender<Result<(), SdkError>>;

/// What the application hands to the event loop (sends never wait for room: `try_send`).
#[derive(Debug)]
pub(crate) enum AppRequest {
    /// A telemetry message; `done` (with [`Persistence::Always`] over a store) is
    /// answered once it is committed.
    Telemetry {
        item: TelemetryItem,
        done: Option<Done>,
    },
    Reported(PropertyValue),
    PropertyRegistered(String),
    /// A message on a custom device route ([`Mir::send_custom`]), checked already.
    Custom(Publish),
    /// [`Mir::flush`].
    Flush(Done),
}

struct Inner {
    config: Arc<Config>,
    /// Sends wait for the store's commit ([`Persistence::Always`] over a store).
    commits: bool,
    store: Mutex<Option<Box<dyn Store>>>,
    /// Where the queue lives (whether the store could be opened).
    store_health: StoreHealth,
    tx: mpsc::Sender<AppRequest>,
    rx: Mutex<Option<mpsc::Receiver<AppRequest>>>,
    registry: SharedRegistry,
    status: watch::Sender<Status>,
    launched: AtomicBool,
}

/// A Mir device. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct Mir {
    inner: Arc<Inner>,
}

impl fmt::Debug for Mir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mir")
            .field("device_id", &self.inner.config.device_id)
            .field("target", &self.inner.config.target)
            .field("status", &self.status())
            .finish()
    }
}

impl Mir {
    /// Starts configuring a device.
    pub fn builder() -> Builder {
        Builder::default()
    }

    #[cfg(test)]
    pub(crate) fn new(config: Config, store: Option<Box<dyn Store>>) -> Self {
        let health = if store.is_some() {
            StoreHealth::Durable
        } else {
            StoreHealth::MemoryOnly
        };
        Self::with_store_health(config, store, health)
    }

    /// A device whose queue is in `store` (or memory), in the state `health`.
    pub(crate) fn with_store_health(
        config: Config,
        store: Option<Box<dyn Store>>,
        health: StoreHealth,
    ) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let (status, _) = watch::channel(Status {
            store: health,
            ..Status::default()
        });
        let commits = config.persistence == Persistence::Always && store.is_some();
        Self {
            inner: Arc::new(Inner {
                commits,
                store_health: health,
                config: Arc::new(config),
                store: Mutex::new(store),
                tx,
                rx: Mutex::new(Some(rx)),
                registry: SharedRegistry::default(),
                status,
                launched: AtomicBool::new(false),
            }),
        }
    }

    /// The device id (with its prefix): MQTT client id and thing name.
    pub fn device_id(&self) -> &DeviceId {
        &self.inner.config.device_id
    }

    pub fn target(&self) -> &Target {
        &self.inner.config.target
    }

    /// Registers the handler of command `Req` (by `Req::full_name()`). It runs in its
    /// own task; `Ok(resp)` is answered SUCCESS with `resp`, `Err(e)` ERROR with
    /// `e.to_string()`. Register before [`Mir::launch`] so that no command finds the
    /// device without its handler.
    pub fn handle_command<Req, Resp, F, Fut, E>(&self, handler: F) -> &Self
    where
        Req: prost::Message + prost::Name + Default + Send + 'static,
        Resp: prost::Message + prost::Name + Send + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        self.register_command(
            Req::full_name(),
            command_fn::<Req, Resp, F, Fut, E>(handler),
        )
    }

    /// Registers the handler of command `name` for messages known only at run time (e.g.
    /// built with prost-reflect, as `mir swarm` does): it gets the encoded request and
    /// answers the full name and the encoded bytes of its response.
    pub fn handle_command_raw<F, Fut, E>(&self, name: &str, handler: F) -> &Self
    where
        F: Fn(Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(String, Bytes), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        self.register_command(name.to_string(), raw_command_fn(handler))
    }

    fn register_command(&self, name: String, f: CommandFn) -> &Self {
        self.inner.registry.write().add_command(name, f);
        self
    }

    /// Registers the handler of desired property `P` (by `P::full_name()`), called
    /// with each new value in order, on the SDK's property task: keep it short (spawn
    /// long work). A handler registered after launch gets the newest value received.
    pub fn handle_properties<P, F>(&self, handler: F) -> &Self
    where
        P: prost::Message + prost::Name + Default + 'static,
        F: Fn(P) + Send + Sync + 'static,
    {
        self.register_property(P::full_name(), property_fn::<P, F>(handler))
    }

    /// Registers the handler of desired property `name` for messages known only at run
    /// time: it gets the encoded value.
    pub fn handle_properties_raw<F>(&self, name: &str, handler: F) -> &Self
    where
        F: Fn(Bytes) + Send + Sync + 'static,
    {
        self.register_property(name.to_string(), raw_property_fn(handler))
    }

    fn register_property(&self, name: String, f: PropertyFn) -> &Self {
        self.inner.registry.write().add_property(name.clone(), f);
        if self.inner.launched.load(Ordering::SeqCst)
            && self
                .inner
                .tx
                .try_send(AppRequest::PropertyRegistered(name.clone()))
                .is_err()
        {
            tracing::warn!(name, "queue full: the handler gets the next desired update");
        }
        self
    }

    /// Sends a telemetry message: it is accepted (given its `seq` and `sent_at_ns`)
    /// and queued at once, in call order, and the returned future says what became of
    /// it. It never waits for the network or for room in the queue (a full queue is
    /// [`SdkError::QueueFull`]).
    ///
    /// - [`Persistence::Always`] with a store folder: the future resolves once the
    ///   message is committed to the offline store (one redb commit, fsync'd): from then
    ///   on it survives the process being killed and is replayed, with the same `seq`
    ///   and `sent_at_ns`, until the broker acknowledges it. Messages sent while a
    ///   commit runs share the next one, so concurrent sends cost one commit per round,
    ///   not one each (the linger does not apply). Errors: [`SdkError::NotStored`] (the
    ///   write failed: still queued, in memory only), [`SdkError::StoreFull`] (no room
    ///   at the store's cap: dropped), [`SdkError::NotLaunched`] (nothing accepted: the
    ///   commit needs the event loop).
    /// - [`Persistence::IfOffline`], [`Persistence::NoStorage`], or no store folder: the
    ///   future resolves at once; the message joins the current batch, sent within the
    ///   linger (default 50 ms) or as soon as the batch is full, and nothing about it is
    ///   durable yet (see [`Mir::flush`]).
    pub fn send_telemetry<M: prost::Message + prost::Name>(&self, msg: &M) -> SendTelemetry {
        self.send_telemetry_raw(&M::full_name(), msg.encode_to_vec().into())
    }

    /// Sends a telemetry message given by its full name and encoded bytes (a message
    /// known only at run time), as [`Mir::send_telemetry`] does.
    pub fn send_telemetry_raw(&self, name: &str, payload: Bytes) -> SendTelemetry {
        let (sent_at_ns, synced) = crate::clock::read(&*self.inner.config.clock);
        let item = TelemetryItem {
            name: name.to_string(),
            payload,
            seq: 0,
            sent_at_ns,
            clock_unsynced: !synced,
        };
        if let Err(e) = check_item_fits(&item) {
            return SendTelemetry::ready(Err(e));
        }
        if !self.inner.commits {
            let done = None;
            return SendTelemetry::ready(self.try_send(AppRequest::Telemetry { item, done }));
        }
        if !self.inner.launched.load(Ordering::SeqCst) {
            return SendTelemetry::ready(Err(SdkError::NotLaunched));
        }
        let (tx, rx) = oneshot::channel();
        let done = Some(tx);
        match self.try_send(AppRequest::Telemetry { item, done }) {
            Ok(()) => SendTelemetry::waiting(rx),
            Err(e) => SendTelemetry::ready(Err(e)),
        }
    }

    /// Closes the open telemetry batch and waits until every telemetry message and
    /// reported property accepted before the call is safe: committed to the offline
    /// store, or acknowledged by the broker (or dropped by a documented cap, counted
    /// in [`Status::dropped_messages`]). With [`Persistence::Always`] that is the commit
    /// of the last batch (or the PUBACK of a record whose write failed); with [`Persistence::IfOffline`] it is the broker's PUBACK while
    /// online (or the write to the store if the connection drops first) and the
    /// store's commit while offline; with [`Persistence::NoStorage`] or no store folder
    /// only the PUBACK. It may wait as long as the device is offline: bound it with a
    /// timeout. Waits for room in the queue; [`SdkError::NotLaunched`] before launch,
    /// [`SdkError::Closed`] if the event loop stops first.
    pub async fn flush(&self) -> Result<(), SdkError> {
        if !self.inner.launched.load(Ordering::SeqCst) {
            return Err(SdkError::NotLaunched);
        }
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(AppRequest::Flush(tx))
            .await
            .map_err(|_| SdkError::Closed)?;
        rx.await.unwrap_or(Err(SdkError::Closed))
    }

    /// Reports a property (`ReportedProperties` with one value, time = now). Never
    /// blocks: it is queued at once, and kept like telemetry until acknowledged (with
    /// [`Persistence::Always`] its record is written with the next commit; await
    /// [`Mir::flush`] to know it is).
    pub fn send_properties<M: prost::Message + prost::Name>(
        &self,
        msg: &M,
    ) -> Result<(), SdkError> {
        self.send_properties_raw(&M::full_name(), msg.encode_to_vec().into())
    }

    /// Reports a property given by its full name and encoded bytes. Never blocks.
    pub fn send_properties_raw(&self, name: &str, payload: Bytes) -> Result<(), SdkError> {
        let value = PropertyValue {
            name: name.to_string(),
            payload,
            updated_at_ns: crate::clock::read(&*self.inner.config.clock).0,
            version: 0,
        };
        self.try_send(AppRequest::Reported(value))
    }

    /// Sends `payload` as is on the device's custom route `x/{module}/{route}`
    /// (`mir/{id}/x/{module}/{route}`, QoS 1), for a server-side module subscribed to
    /// it; the platform stores nothing of it. Never blocks.
    ///
    /// Custom messages never go to the offline store: they are sent only while the
    /// device is connected. Called while not connected (or before [`Mir::launch`]) it
    /// is refused with [`SdkError::NotConnected`] (or [`SdkError::NotLaunched`]) and
    /// nothing is sent. A message accepted is kept in memory until the broker
    /// acknowledges it, and sent again after a reconnect if the connection drops first
    /// (lost only if the process stops first, or when more than 1024 control messages
    /// wait, the oldest custom one being dropped first); [`Mir::flush`] does not wait
    /// for them, and shutdown gives them the same grace as telemetry. Other errors:
    /// [`SdkError::InvalidCustomRoute`] (a name not 1 to 32 of `a-z`, `0-9`, `-`
    /// starting with a letter), [`SdkError::PayloadTooLarge`] (payload and topic over
    /// [`MAX_PAYLOAD_BYTES`]), [`SdkError::QueueFull`].
    pub fn send_custom(&self, module: &str, route: &str, payload: Bytes) -> Result<(), SdkError> {
        let route = CustomRoute::new(module, route)?;
        let topic = route.for_device(&self.inner.config.device_id);
        // AWS IoT Core counts the topic with the payload.
        let size = payload.len() + topic.len();
        if size > MAX_PAYLOAD_BYTES {
            return Err(SdkError::PayloadTooLarge {
                name: topic,
                size,
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        if !self.inner.launched.load(Ordering::SeqCst) {
            return Err(SdkError::NotLaunched);
        }
        if !self.is_connected() {
            return Err(SdkError::NotConnected);
        }
        self.try_send(AppRequest::Custom(Publish { topic, payload }))
    }

    fn try_send(&self, request: AppRequest) -> Result<(), SdkError> {
        self.inner.tx.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SdkError::QueueFull {
                capacity: self.inner.config.queue_capacity,
            },
            mpsc::error::TrySendError::Closed(_) => SdkError::Closed,
        })
    }

    /// Spawns the event loop on the current tokio runtime: it connects, reconnects
    /// after errors, and runs until `shutdown` completes, then flushes telemetry and
    /// disconnects (within a few seconds).
    pub async fn launch<S>(&self, shutdown: S) -> Result<Running, SdkError>
    where
        S: Future<Output = ()> + Send + 'static,
    {
        if self.inner.launched.swap(true, Ordering::SeqCst) {
            return Err(SdkError::AlreadyLaunched);
        }
        let rx = self
            .inner
            .rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or(SdkError::AlreadyLaunched)?;
        let store = self
            .inner
            .store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let task = tokio::spawn(eventloop::run(
            Arc::clone(&self.inner.config),
            store,
            self.inner.store_health,
            self.inner.registry.clone(),
            rx,
            self.inner.status.clone(),
            Box::pin(shutdown),
        ));
        Ok(Running { task })
    }

    /// The current connection status.
    pub fn status(&self) -> Status {
        *self.inner.status.borrow()
    }

    pub fn is_connected(&self) -> bool {
        self.status().connected
    }

    /// Waits until the device is connected (returns at once if it is).
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), SdkError> {
        self.wait_for_status(timeout, |s| s.connected).await
    }

    /// Waits until the device is connected after at least `n` connections since launch
    /// (`n = 2`: reconnected once).
    pub async fn wait_connects(&self, n: u64, timeout: Duration) -> Result<(), SdkError> {
        self.wait_for_status(timeout, |s| s.connected && s.connects >= n)
            .await
    }

    /// Waits (at most `timeout`) until the status satisfies `done`.
    pub async fn wait_for_status(
        &self,
        timeout: Duration,
        done: impl FnMut(&Status) -> bool,
    ) -> Result<(), SdkError> {
        let mut rx = self.inner.status.subscribe();
        let reached =
            tokio::time::timeout(timeout, async move { rx.wait_for(done).await.map(|_| ()) }).await;
        match reached {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SdkError::Closed),
            Err(_) => Err(SdkError::ConnectTimeout(timeout)),
        }
    }
}

/// The future of [`Mir::send_telemetry`]: the message is queued already; it resolves
/// once it is committed to the offline store ([`Persistence::Always`]), else at once.
/// Dropping it does not withdraw the message.
#[must_use = "the message is queued; await the send to know it is stored (persistence: always)"]
#[derive(Debug)]
pub struct SendTelemetry {
    state: SendState,
}

#[derive(Debug)]
enum SendState {
    Ready(Option<Result<(), SdkError>>),
    Waiting(oneshot::Receiver<Result<(), SdkError>>),
}

impl SendTelemetry {
    fn ready(result: Result<(), SdkError>) -> Self {
        Self {
            state: SendState::Ready(Some(result)),
        }
    }

    fn waiting(rx: oneshot::Receiver<Result<(), SdkError>>) -> Self {
        Self {
            state: SendState::Waiting(rx),
        }
    }
}

impl Future for SendTelemetry {
    type Output = Result<(), SdkError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            // Polled again after it resolved: the answer was given.
            SendState::Ready(result) => Poll::Ready(result.take().unwrap_or(Err(SdkError::Closed))),
            // The event loop stopped before answering.
            SendState::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|answer| answer.unwrap_or(Err(SdkError::Closed))),
        }
    }
}

/// The launched event loop.
#[derive(Debug)]
pub struct Running {
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Waits until the event loop has stopped (after the shutdown future completed).
    pub async fn wait(self) -> Result<(), SdkError> {
        self.task.await?;
        Ok(())
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}
