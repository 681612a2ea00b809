//! The device handle: registration of handlers, sends, launch and status.

use std::{
    fmt::{self, Display},
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use mir_proto::{
    wire::{PropertyValue, TelemetryItem},
    DeviceId,
};
use tokio::sync::{mpsc, watch};

use crate::{
    config::{Builder, Config, Target},
    eventloop,
    handlers::{
        command_fn, property_fn, raw_command_fn, raw_property_fn, CommandFn, PropertyFn,
        SharedRegistry,
    },
    session::{check_item_fits, unix_ns},
    store::Store,
    SdkError,
};

/// What the application hands to the event loop (never blocking: `try_send`).
#[derive(Debug)]
pub(crate) enum AppRequest {
    Telemetry(TelemetryItem),
    Reported(PropertyValue),
    PropertyRegistered(String),
}

/// Connection and queue status, as seen by the event loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    pub connected: bool,
    /// Successful connections (ConnAck) since launch.
    pub connects: u64,
    /// Telemetry messages not yet acknowledged by the broker (open batch, memory, store).
    pub queued_messages: u64,
    /// Records (telemetry batches, reported properties) in the offline store.
    pub stored_records: u64,
    /// Telemetry messages dropped since launch (retention, disk cap, memory cap).
    pub dropped_messages: u64,
    /// Telemetry messages in the offline store.
    pub stored_messages: u64,
}

struct Inner {
    config: Arc<Config>,
    store: Mutex<Option<Box<dyn Store>>>,
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

    pub(crate) fn new(config: Config, store: Option<Box<dyn Store>>) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let (status, _) = watch::channel(Status::default());
        Self {
            inner: Arc::new(Inner {
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

    /// Sends a telemetry message. Never blocks: the message joins the current batch,
    /// sent within the linger (default 50 ms) or as soon as the batch is full.
    pub fn send_telemetry<M: prost::Message + prost::Name>(&self, msg: &M) -> Result<(), SdkError> {
        self.send_telemetry_raw(&M::full_name(), msg.encode_to_vec().into())
    }

    /// Sends a telemetry message given by its full name and encoded bytes (a message
    /// known only at run time). Never blocks.
    pub fn send_telemetry_raw(&self, name: &str, payload: Bytes) -> Result<(), SdkError> {
        let item = TelemetryItem {
            name: name.to_string(),
            payload,
            seq: 0,
            sent_at_ns: unix_ns(),
        };
        check_item_fits(&item)?;
        self.try_send(AppRequest::Telemetry(item))
    }

    /// Reports a property (`ReportedProperties` with one value, time = now). Never blocks.
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
            updated_at_ns: unix_ns(),
            version: 0,
        };
        self.try_send(AppRequest::Reported(value))
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
