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

use mir_proto::{
    wire::{PropertyValue, TelemetryItem},
    DeviceId,
};
use tokio::sync::{mpsc, watch};

use crate::{
    config::{Builder, Config, Target},
    eventloop,
    handlers::{command_fn, property_fn, SharedRegistry},
    session::{check_item_fits, unix_ns},
    SdkError,
};

/// What the application hands to the event loop (never blocking: `try_send`).
#[derive(Debug)]
pub(crate) enum AppRequest {
    Telemetry(TelemetryItem),
    Reported(PropertyValue),
    PropertyRegistered(String),
}

/// Connection status, as seen by the event loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    pub connected: bool,
    /// Successful connections (ConnAck) since launch.
    pub connects: u64,
}

struct Inner {
    config: Arc<Config>,
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

    pub(crate) fn new(config: Config) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let (status, _) = watch::channel(Status::default());
        Self {
            inner: Arc::new(Inner {
                config: Arc::new(config),
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
        self.inner.registry.write().add_command(
            Req::full_name(),
            command_fn::<Req, Resp, F, Fut, E>(handler),
        );
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
        let name = P::full_name();
        self.inner
            .registry
            .write()
            .add_property(name.clone(), property_fn::<P, F>(handler));
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
        let item = TelemetryItem {
            name: M::full_name(),
            payload: msg.encode_to_vec().into(),
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
        let value = PropertyValue {
            name: M::full_name(),
            payload: msg.encode_to_vec().into(),
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
        let task = tokio::spawn(eventloop::run(
            Arc::clone(&self.inner.config),
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
        self.wait_status(timeout, |s| s.connected).await
    }

    /// Waits until the device is connected after at least `n` connections since launch
    /// (`n = 2`: reconnected once).
    pub async fn wait_connects(&self, n: u64, timeout: Duration) -> Result<(), SdkError> {
        self.wait_status(timeout, |s| s.connected && s.connects >= n)
            .await
    }

    async fn wait_status(
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
