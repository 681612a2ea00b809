//! Resident memory of a device process, for `benches/sdk.rs`.
//!
//! ```sh
//! rss_probe idle   <mqtt://host:port> [mt]          # connected, idle 3 s, prints VmRSS
//! rss_probe queued <mqtt://host:port> <n> <store>   # offline, n messages queued on disk
//! ```
//! Prints `RSS_KB <kB>` (VmRSS of /proc/self/status) and `HWM_KB <kB>` (VmHWM, the peak).

use std::time::Duration;

use mir_device_sdk::{Mir, Persistence, StoreOptions};
use mir_proto::examples::weather::{Env, DESCRIPTOR_SET};

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn probe(args: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    let mode = args.first().cloned().unwrap_or_default();
    let target = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "mqtt://127.0.0.1:1883".into());
    match mode.as_str() {
        "idle" => {
            let mir = Mir::builder()
                .device_id("rss-idle")
                .target(target)
                .schema(DESCRIPTOR_SET)
                .memory_only()
                .env_vars(Vec::<(String, String)>::new())
                .build()?;
            let _running = mir.launch(std::future::pending()).await?;
            mir.wait_connected(Duration::from_secs(10)).await?;
            for ts in 0..10 {
                mir.send_telemetry(&Env {
                    ts,
                    ..Default::default()
                })
                .await?;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        "queued" => {
            let n: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(100_000);
            let store = args.get(3).cloned().unwrap_or_else(|| ".rss-store".into());
            let mir = Mir::builder()
                .device_id("rss-queued")
                .target(target)
                .schema(DESCRIPTOR_SET)
                .store(StoreOptions {
                    folder_path: Some(store.into()),
                    persistence_type: Some(Persistence::IfOffline),
                    // Delivery is under test here, not the disk cap (the machine's disk may be >85% full).
                    disk_space_limit: Some(100.0),
                    ..Default::default()
                })
                .env_vars(Vec::<(String, String)>::new())
                .build()?;
            let _running = mir.launch(std::future::pending()).await?;
            let mut sent = 0;
            while sent < n {
                let env = Env {
                    ts: sent as i64,
                    temperature: 21,
                    station: "roof".into(),
                    ..Default::default()
                };
                match mir.send_telemetry(&env).await {
                    Ok(()) => sent += 1,
                    Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
            mir.wait_for_status(Duration::from_secs(120), |s| s.stored_messages >= n)
                .await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            println!("QUEUED {}", mir.status().queued_messages);
        }
        other => return Err(format!("unknown mode {other:?}").into()),
    }
    println!("RSS_KB {}", status_kb("VmRSS:"));
    println!("HWM_KB {}", status_kb("VmHWM:"));
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let multi = args.iter().any(|a| a == "mt");
    let runtime = if multi {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(probe(args))
}
