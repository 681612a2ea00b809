//! Benchmarks of the SDK in the field (a plain binary, `harness = false`), loopback
//! only: the time to notice a dead link (a proxy that stops forwarding without
//! closing) for two keep-alives, and the pace of a replay from the store with the
//! default pacing.
//!
//! ```sh
//! cargo bench -p mir-device-sdk --bench field
//! ```

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use mir_broker::{Broker, BrokerConfig, ClientInfo, DisconnectReason, Hooks};
use mir_device_sdk::{Mir, Persistence, StoreOptions};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// When each publish arrived, and its size (payload and topic).
#[derive(Default)]
struct Arrivals(Mutex<Vec<(Instant, usize)>>);

#[async_trait::async_trait]
impl Hooks for Arrivals {
    async fn on_connect(&self, _: &ClientInfo) {}
    async fn on_disconnect(&self, _: &ClientInfo, _: DisconnectReason) {}
    async fn on_publish(
        &self,
        _: &ClientInfo,
        topic: &str,
        payload: Bytes,
    ) -> Result<(), mir_broker::HookError> {
        if topic.ends_with("/tlm") {
            let mut a = self.0.lock().unwrap_or_else(|e| e.into_inner());
            a.push((Instant::now(), payload.len() + topic.len()));
        }
        Ok(())
    }
}

async fn broker(hooks: Arc<dyn Hooks>) -> (Broker, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = BrokerConfig {
        plain: Some("127.0.0.1:0".parse().expect("addr")),
        ..Default::default()
    };
    let broker = Broker::start(config, hooks, async move {
        let _ = stopped.await;
    })
    .await
    .expect("broker");
    let addr = broker.plain_addr().expect("plain");
    (broker, addr, stop)
}

/// Forwards to `upstream` until `dead` is set; then swallows everything, closing
/// nothing (a link that died without a FIN or RST).
async fn blackhole_proxy(upstream: SocketAddr, dead: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let d1 = Arc::clone(&dead);
            let d2 = Arc::clone(&dead);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if !d1.load(Ordering::SeqCst) && sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                // Keep the socket open: the device must find out by itself.
                std::future::pending::<()>().await;
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if !d2.load(Ordering::SeqCst) && cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                std::future::pending::<()>().await;
            });
        }
    });
    addr
}

/// Seconds from the link dying to the status saying disconnected.
async fn dead_link(keep_alive: Duration) -> f64 {
    let (_broker, upstream, _stop) = broker(Arc::new(Arrivals::default())).await;
    let dead = Arc::new(AtomicBool::new(false));
    let proxy = blackhole_proxy(upstream, Arc::clone(&dead)).await;
    let mir = Mir::builder()
        .device_id("dead-link")
        .target(format!("mqtt://{proxy}"))
        .memory_only()
        .keep_alive(keep_alive)
        // No heartbeat traffic in the way: only MQTT pings keep the link.
        .heartbeat_interval(Duration::from_secs(3600))
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build");
    let _running = mir.launch(std::future::pending()).await.expect("launch");
    mir.wait_connected(Duration::from_secs(10))
        .await
        .expect("connects");
    // Let the connect burst settle, then the link dies.
    tokio::time::sleep(Duration::from_millis(500)).await;
    dead.store(true, Ordering::SeqCst);
    let died = Instant::now();
    mir.wait_for_status(keep_alive * 4, |s| !s.connected)
        .await
        .expect("noticed");
    died.elapsed().as_secs_f64()
}

/// The most publishes and bytes that arrived within any one second, and the average
/// rates over the replay.
fn rates(arrivals: &[(Instant, usize)]) -> (usize, usize, f64, f64) {
    let (mut max_n, mut max_b) = (0, 0);
    for (i, (t, _)) in arrivals.iter().enumerate() {
        let window: Vec<_> = arrivals[i..]
            .iter()
            .take_while(|(u, _)| u.duration_since(*t) < Duration::from_secs(1))
            .collect();
        max_n = max_n.max(window.len());
        max_b = max_b.max(window.iter().map(|(_, b)| b).sum());
    }
    let span = match (arrivals.first(), arrivals.last()) {
        (Some(a), Some(b)) => b.0.duration_since(a.0).as_secs_f64().max(1e-3),
        _ => 1e-3,
    };
    let bytes: usize = arrivals.iter().map(|(_, b)| b).sum();
    (
        max_n,
        max_b,
        arrivals.len() as f64 / span,
        bytes as f64 / span,
    )
}

/// Records stored offline (`count` telemetry messages of `size` bytes, each flushed as
/// its own record when `one_per_record`), then replayed with the default pacing.
async fn replay(count: usize, size: usize, one_per_record: bool) -> (usize, usize, f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let arrivals = Arc::new(Arrivals::default());
    let (_broker, upstream, _stop) = broker(arrivals.clone()).await;
    // Offline first: a proxy that is dead from the start keeps the device away.
    let dead = Arc::new(AtomicBool::new(true));
    let gate = blackhole_proxy(upstream, Arc::clone(&dead)).await;
    let mir = Mir::builder()
        .device_id("replay-pace")
        .target(format!("mqtt://{gate}"))
        .keep_alive(Duration::from_secs(1))
        .connect_interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(100), Duration::from_millis(200))
        .store(StoreOptions {
            folder_path: Some(dir.path().to_path_buf()),
            persistence_type: Some(Persistence::IfOffline),
            disk_space_limit: Some(100.0),
            ..Default::default()
        })
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build");
    let _running = mir.launch(std::future::pending()).await.expect("launch");
    let payload = Bytes::from(vec![7u8; size]);
    for _ in 0..count {
        while let Err(e) = mir.send_telemetry_raw("bench.Blob", payload.clone()).await {
            assert!(
                matches!(e, mir_device_sdk::SdkError::QueueFull { .. }),
                "send: {e}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if one_per_record {
            // Closes the batch: one message per record.
            mir.flush().await.expect("stored");
        }
    }
    mir.flush().await.expect("stored");
    let stored = mir.status().stored_records;
    // The link comes alive: replay.
    dead.store(false, Ordering::SeqCst);
    mir.wait_for_status(Duration::from_secs(600), |s| {
        s.connected && s.stored_records == 0 && s.queued_messages == 0
    })
    .await
    .expect("replayed");
    let a = arrivals.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!("  {stored} records, {} publishes arrived", a.len());
    rates(&a)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for keep_alive in [Duration::from_secs(5), Duration::from_secs(30)] {
            let secs = dead_link(keep_alive).await;
            println!("dead link noticed, keep-alive {keep_alive:?}: {secs:.1} s");
        }
        println!("replay of 400 small records (one message each, ~60 bytes):");
        let (n, b, avg_n, avg_b) = replay(400, 16, true).await;
        println!(
            "  max in 1 s: {n} publishes, {} KiB; average {avg_n:.0} publishes/s, {:.0} KiB/s",
            b / 1024,
            avg_b / 1024.0
        );
        println!("replay of 4 MB in full batches (4,000 messages of 1 KB):");
        let (n, b, avg_n, avg_b) = replay(4000, 1000, false).await;
        println!(
            "  max in 1 s: {n} publishes, {} KiB; average {avg_n:.1} publishes/s, {:.0} KiB/s",
            b / 1024,
            avg_b / 1024.0
        );
    });
}
