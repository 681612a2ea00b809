//! Benchmarks of the device SDK (a plain binary, `harness = false`): offline-store
//! append rate, replay rate after reconnect, resident memory. Loopback only, short.
//!
//! ```sh
//! cargo build --release -p mir-device-sdk --example rss_probe
//! cargo bench -p mir-device-sdk --bench sdk
//! ```

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use mir_broker::{Broker, BrokerConfig, ClientInfo, DisconnectReason, Hooks};
use mir_device_sdk::{
    store::{Record, RecordKind, RedbStore, Store},
    Mir, Persistence, StoreOptions,
};
use mir_proto::{
    examples::weather::Env,
    wire::{TelemetryBatch, TelemetryItem},
};
use prost::{Message, Name};

/// Counts telemetry items the broker accepts.
#[derive(Default)]
struct Counter {
    items: AtomicU64,
}

#[async_trait::async_trait]
impl Hooks for Counter {
    async fn on_connect(&self, _: &ClientInfo) {}
    async fn on_disconnect(&self, _: &ClientInfo, _: DisconnectReason) {}
    async fn on_publish(
        &self,
        _: &ClientInfo,
        topic: &str,
        payload: Bytes,
    ) -> Result<(), mir_broker::HookError> {
        if topic.ends_with("/tlm") {
            if let Ok(b) = TelemetryBatch::decode(payload) {
                self.items
                    .fetch_add(b.items.len() as u64, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

async fn broker(
    addr: SocketAddr,
    hooks: Arc<Counter>,
) -> (Broker, tokio::sync::oneshot::Sender<()>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let hooks: Arc<dyn Hooks> = hooks;
    let b = Broker::start(
        BrokerConfig {
            plain: Some(addr),
            ..Default::default()
        },
        hooks,
        async move {
            let _ = stopped.await;
        },
    )
    .await
    .expect("broker");
    (b, stop)
}

fn env(i: u64) -> Env {
    Env {
        ts: 1_700_000_000_000_000_000 + i as i64,
        temperature: (i % 40) as i32,
        pressure: 1013,
        humidity: 40,
        wind_speed: 3.5,
        raining: false,
        station: "roof".into(),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// Raw store: `batch` one-message records per commit.
fn store_append(n: u64, per_commit: u64) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = RedbStore::open(dir.path()).expect("open");
    let payload: Bytes = TelemetryItem {
        name: Env::full_name(),
        payload: env(1).encode_to_vec().into(),
        seq: 1,
        sent_at_ns: 1,
        clock_unsynced: false,
    }
    .encode_to_vec()
    .into();
    let started = Instant::now();
    let mut key = 1;
    while key <= n {
        let records: Vec<Record> = (0..per_commit)
            .map(|i| Record {
                key: key + i,
                kind: RecordKind::Telemetry,
                created_ns: 1,
                messages: 1,
                payload: payload.clone(),
            })
            .collect();
        store.append(&records).expect("append");
        key += per_commit;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// `persistence: always`, device offline: `senders` tasks send `count` messages in
/// all, each awaiting its commit. Returns msgs/s and the records written (one per
/// commit, as the batch closes when the store is free).
async fn always_rate(senders: u64, count: u64) -> (f64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mir = Mir::builder()
        .device_id("bench-always")
        .target(format!("mqtt://127.0.0.1:{}", free_port()))
        .backoff(Duration::from_secs(3600), Duration::from_secs(3600))
        .store(StoreOptions {
            folder_path: Some(dir.path().to_path_buf()),
            persistence_type: Some(Persistence::Always),
            disk_space_limit: Some(100.0),
            ..Default::default()
        })
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build");
    let _running = mir.launch(std::future::pending()).await.expect("launch");
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (mir, next) = (mir.clone(), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                while mir.send_telemetry(&env(i)).await.is_err() {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    (rate, mir.status().stored_records)
}

fn rss_probe() -> Option<PathBuf> {
    // target/release/deps/sdk-xxxx -> target/release/examples/rss_probe
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("examples").join("rss_probe");
    p.is_file().then_some(p)
}

fn run_probe(probe: &PathBuf, args: &[&str]) -> String {
    let out = Command::new(probe)
        .args(args)
        .output()
        .expect("rss_probe runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let kb = |k: &str| {
        text.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string()
    };
    format!("RSS {} kB (peak {} kB)", kb("RSS_KB"), kb("HWM_KB"))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let n: u64 = std::env::var("MIR_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!("# mir-device-sdk benchmarks (n = {n})");

    // 1. The raw store, one message per record.
    for per_commit in [1u64, 100, 1000] {
        let count = if per_commit == 1 { 2_000 } else { n };
        let rate = store_append(count, per_commit);
        println!(
            "store append, 1 message/record, {per_commit:>4} records/commit: {rate:>10.0} msgs/s"
        );
    }

    rt.block_on(async {
        // 2. Through the SDK, offline: send_telemetry -> batches -> redb.
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let target = format!("mqtt://127.0.0.1:{port}");
        let mir = Mir::builder()
            .device_id("bench")
            .target(target.clone())
            .backoff(Duration::from_millis(50), Duration::from_millis(100))
            .connect_interval(Duration::from_millis(100))
            // The raw replay rate; benches/field.rs measures the default pacing.
            .unpaced()
            .store(StoreOptions {
                folder_path: Some(dir.path().to_path_buf()),
                persistence_type: Some(Persistence::IfOffline),
            // Delivery is under test here, not the disk cap (the machine's disk may be >85% full).
            disk_space_limit: Some(100.0),
                ..Default::default()
            })
            .env_vars(Vec::<(String, String)>::new())
            .build()
            .expect("build");
        let _running = mir.launch(std::future::pending()).await.expect("launch");
        let started = Instant::now();
        let mut sent = 0;
        while sent < n {
            match mir.send_telemetry(&env(sent)).await {
                Ok(()) => sent += 1,
                Err(_) => tokio::task::yield_now().await,
            }
        }
        mir.wait_for_status(Duration::from_secs(300), |s| s.stored_messages >= n)
            .await
            .expect("stored");
        let took = started.elapsed();
        let status = mir.status();
        println!(
            "SDK offline append (send_telemetry -> batch -> redb commit): {n} msgs in {took:.2?} = {:.0} msgs/s, {} records, {} bytes on disk",
            n as f64 / took.as_secs_f64(),
            status.stored_records,
            std::fs::metadata(dir.path().join("store.redb")).map(|m| m.len()).unwrap_or(0),
        );

        // 2b. persistence: always, every send awaiting its commit (group commit).
        for (senders, count) in [(1u64, 2_000u64), (16, 20_000), (256, 50_000)] {
            let (rate, records) = always_rate(senders, count).await;
            println!(
                "SDK always (send_telemetry(..).await = committed), {senders:>3} senders: {count} msgs = {rate:>8.0} msgs/s, {records} records, one per commit ({:.1} msgs/commit)",
                count as f64 / records.max(1) as f64
            );
        }

        // 3. Replay after the broker comes up.
        let counter = Arc::new(Counter::default());
        let started = Instant::now();
        let (_broker, _stop) = broker(format!("127.0.0.1:{port}").parse().expect("addr"), Arc::clone(&counter)).await;
        mir.wait_connected(Duration::from_secs(10)).await.expect("connects");
        let connected = started.elapsed();
        let deadline = Instant::now() + Duration::from_secs(300);
        while counter.items.load(Ordering::Relaxed) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = started.elapsed();
        mir.wait_for_status(Duration::from_secs(60), |s| s.stored_records == 0)
            .await
            .expect("store empties");
        let emptied = started.elapsed();
        println!(
            "replay after reconnect: {} msgs at the broker in {took:.2?} ({connected:.2?} to connect) = {:.0} msgs/s; store empty after {emptied:.2?}",
            counter.items.load(Ordering::Relaxed),
            counter.items.load(Ordering::Relaxed) as f64 / took.as_secs_f64(),
        );

        // 4. Resident memory of a small device process.
        match rss_probe() {
            None => println!(
                "RSS: build the probe first: cargo build --release -p mir-device-sdk --example rss_probe"
            ),
            Some(probe) => {
                let idle = run_probe(&probe, &["idle", &target]);
                println!("RSS idle connected device (current-thread runtime): {idle}");
                let idle_mt = run_probe(&probe, &["idle", &target, "mt"]);
                println!("RSS idle connected device (2-worker runtime): {idle_mt}");
                let qdir = tempfile::tempdir().expect("tempdir");
                let offline = format!("mqtt://127.0.0.1:{}", free_port());
                let store = qdir.path().to_string_lossy().to_string();
                let queued = run_probe(&probe, &["queued", &offline, &n.to_string(), &store]);
                println!("RSS with {n} messages queued offline (current-thread runtime): {queued}");
            }
        }
    });
}
