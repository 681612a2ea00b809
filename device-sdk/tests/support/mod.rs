//! Test support: an embedded broker that records what devices publish, and device builders.
#![allow(dead_code)]

pub mod net;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use mir_broker::{Broker, BrokerConfig, BrokerHandle, ClientInfo, DisconnectReason, Hooks, QoS};
use mir_device_sdk::{Builder, Mir, Running};
use mir_proto::examples::weather::DESCRIPTOR_SET;
use tokio::sync::oneshot;

pub const WAIT: Duration = Duration::from_secs(10);

/// One publish received by the broker.
#[derive(Debug, Clone)]
pub struct Received {
    pub client_id: String,
    pub topic: String,
    pub payload: Bytes,
}

/// Records publishes and connections.
#[derive(Debug, Default)]
pub struct Recorder {
    publishes: Mutex<Vec<Received>>,
    connects: Mutex<Vec<String>>,
    disconnects: Mutex<Vec<(String, DisconnectReason)>>,
}

#[async_trait::async_trait]
impl Hooks for Recorder {
    async fn on_connect(&self, c: &ClientInfo) {
        lock(&self.connects).push(c.client_id.clone());
    }
    async fn on_disconnect(&self, c: &ClientInfo, r: DisconnectReason) {
        lock(&self.disconnects).push((c.client_id.clone(), r));
    }
    async fn on_publish(
        &self,
        c: &ClientInfo,
        topic: &str,
        payload: Bytes,
    ) -> Result<(), mir_broker::HookError> {
        lock(&self.publishes).push(Received {
            client_id: c.client_id.clone(),
            topic: topic.to_string(),
            payload,
        });
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Recorder {
    /// Payloads published on `topic` so far.
    pub fn on(&self, topic: &str) -> Vec<Bytes> {
        lock(&self.publishes)
            .iter()
            .filter(|r| r.topic == topic)
            .map(|r| r.payload.clone())
            .collect()
    }

    /// Every topic published on so far, in order of arrival.
    pub fn topics(&self) -> Vec<String> {
        lock(&self.publishes)
            .iter()
            .map(|r| r.topic.clone())
            .collect()
    }

    pub fn connects(&self) -> usize {
        lock(&self.connects).len()
    }

    pub fn disconnects(&self) -> Vec<(String, DisconnectReason)> {
        lock(&self.disconnects).clone()
    }

    /// Waits (bounded) until at least `n` payloads arrived on `topic`; returns them.
    pub async fn wait_on(&self, topic: &str, n: usize) -> Vec<Bytes> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = self.on(topic);
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited {WAIT:?} for {n} messages on {topic}, got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Polls `done` every 10 ms until it holds; fails the test after [`WAIT`].
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {WAIT:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A broker on 127.0.0.1 that can be stopped and restarted on the same port.
pub struct TestBroker {
    pub recorder: Arc<Recorder>,
    pub addr: SocketAddr,
    broker: Option<Broker>,
    stop: Option<oneshot::Sender<()>>,
}

impl TestBroker {
    pub async fn start() -> Self {
        Self::start_at(
            "127.0.0.1:0".parse().expect("addr"),
            Arc::new(Recorder::default()),
        )
        .await
    }

    /// A broker on a given address (a port chosen earlier).
    pub async fn start_on(addr: SocketAddr) -> Self {
        Self::start_at(addr, Arc::new(Recorder::default())).await
    }

    async fn start_at(addr: SocketAddr, recorder: Arc<Recorder>) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let config = BrokerConfig {
            plain: Some(addr),
            ..Default::default()
        };
        let hooks: Arc<dyn Hooks> = recorder.clone();
        let broker = Broker::start(config, hooks, async move {
            let _ = stopped.await;
        })
        .await
        .expect("broker starts");
        let addr = broker.plain_addr().expect("plain listener");
        Self {
            recorder,
            addr,
            broker: Some(broker),
            stop: Some(stop),
        }
    }

    pub fn handle(&self) -> BrokerHandle {
        self.broker.as_ref().expect("running").handle()
    }

    pub fn target(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>) {
        self.handle()
            .publish(topic, payload.into(), QoS::AtLeastOnce)
            .await
            .expect("broker publish");
    }

    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(broker) = self.broker.take() {
            tokio::time::timeout(WAIT, broker.stopped())
                .await
                .expect("broker stops");
        }
    }

    /// Stops and starts again on the same port, keeping the recorder.
    pub async fn restart(&mut self) {
        self.stop().await;
        let recorder = Arc::clone(&self.recorder);
        let addr = self.addr;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            // The port can take a moment to be free again.
            let config = BrokerConfig {
                plain: Some(addr),
                ..Default::default()
            };
            let (stop, stopped) = oneshot::channel::<()>();
            let hooks: Arc<dyn Hooks> = recorder.clone();
            match Broker::start(config, hooks, async move {
                let _ = stopped.await;
            })
            .await
            {
                Ok(broker) => {
                    self.broker = Some(broker);
                    self.stop = Some(stop);
                    return;
                }
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "restart failed: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// A weather device for `broker`, batching for 20 ms, its queue in memory only (an
/// explicit choice: the default is on disk), reconnecting every 100 ms at most.
pub fn device(broker: &TestBroker, id: &str) -> Builder {
    Mir::builder()
        .device_id(id)
        .target(broker.target())
        .schema(DESCRIPTOR_SET)
        .memory_only()
        .connect_interval(Duration::from_millis(100))
        .telemetry_linger(Duration::from_millis(20))
}

/// A launched device and the trigger that stops it.
pub struct Launched {
    pub mir: Mir,
    pub running: Running,
    stop: oneshot::Sender<()>,
}

impl Launched {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.running.wait())
            .await
            .expect("device stops in time")
            .expect("device stops cleanly");
    }
}

pub async fn launch(mir: Mir) -> Launched {
    let (stop, stopped) = oneshot::channel::<()>();
    let running = mir
        .launch(async move {
            let _ = stopped.await;
        })
        .await
        .expect("launch");
    Launched { mir, running, stop }
}

/// Launches and waits for the first connection.
pub async fn launch_connected(mir: Mir) -> Launched {
    let launched = launch(mir).await;
    launched.mir.wait_connected(WAIT).await.expect("connects");
    launched
}
