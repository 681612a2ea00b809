//! Load through `mir local` (the real binary, release build): telemetry throughput from
//! 10 SDK devices into the store with nothing lost, command round-trip latency through
//! the HTTP API, and the hub's peak memory.
//!
//! `cargo bench -p mir-cli --bench hub` (prints a Markdown table for BENCHMARKS.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use mir_device_sdk::{LogLevel, Mir, SdkError};
use mir_proto::examples::weather::{ActivateHvacCmd, ActivateHvacResp, Env, DESCRIPTOR_SET};
use serde_json::{json, Value};

const DEVICES: usize = 10;
const PER_DEVICE: usize = 20_000;
const ROUND_TRIPS: usize = 1_000;

fn vm(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn device(target: &str, id: &str) -> Mir {
    let mir = Mir::builder()
        .device_id(id)
        .target(target)
        .schema(DESCRIPTOR_SET)
        .log_level(LogLevel::Error)
        .queue_capacity(50_000)
        // The local hub has no AWS limits to pace for; the queue in memory.
        .memory_only()
        .unpaced()
        .build()
        .expect("device");
    mir.handle_command(|_: ActivateHvacCmd| async {
        Ok::<_, String>(ActivateHvacResp { success: true })
    });
    let (_tx, mut rx) = tokio::sync::watch::channel(false);
    std::mem::forget(_tx);
    let _running = mir
        .launch(async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await
        .expect("launch");
    mir.wait_connected(Duration::from_secs(10))
        .await
        .expect("connected");
    mir
}

async fn stored(http: &reqwest::Client, api: &str) -> u64 {
    let v: Value = http
        .get(format!("{api}/v1/telemetry"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["messages"].as_array().unwrap().iter())
        .map(|m| m["count"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Command::new(env!("CARGO_BIN_EXE_mir"))
        .args([
            "local",
            "--http-port",
            "0",
            "--mqtt-port",
            "0",
            "--mqtts-port",
            "0",
            "--log-level",
            "error",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let endpoints: Value = loop {
        if let Ok(t) = std::fs::read_to_string(dir.path().join("endpoints.json")) {
            if let Ok(v) = serde_json::from_str(&t) {
                break v;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let api = endpoints["http"].as_str().unwrap().to_string();
    let mqtt = endpoints["mqtt"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let idle_kb = vm(hub.id(), "VmRSS:");

    // Telemetry: 10 devices, PER_DEVICE readings each, as fast as the SDK queues allow.
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        devices.push(device(&mqtt, &format!("bench-{i}")).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
        - 3_600_000_000_000;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (d, mir) in devices.iter().enumerate() {
        let mir = mir.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_DEVICE {
                let env = Env {
                    ts: t0 + (i * DEVICES + d) as i64 * 1000,
                    temperature: i as i32,
                    pressure: 1000,
                    humidity: 40,
                    wind_speed: 1.0,
                    raining: false,
                    station: "bench".into(),
                };
                loop {
                    match mir.send_telemetry(&env).await {
                        Ok(()) => break,
                        Err(SdkError::QueueFull { .. }) => {
                            tokio::time::sleep(Duration::from_millis(2)).await
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = (DEVICES * PER_DEVICE) as u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut count = 0;
    while Instant::now() < deadline {
        count = stored(&http, &api).await;
        if count >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    let rate = count as f64 / elapsed.as_secs_f64();
    let peak_after_tlm = vm(hub.id(), "VmHWM:");

    // Command round trips through the HTTP API to one device.
    let mut lat = Vec::with_capacity(ROUND_TRIPS);
    let body = json!({"targets": {"ids": ["bench-0"]}, "name": "schema.v1.ActivateHVACCmd", "payload": {"durationSec": 0}});
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        let v: Value = http
            .post(format!("{api}/v1/commands"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        lat.push(t.elapsed());
        assert_eq!(v["results"][0]["status"], "SUCCESS", "{v}");
    }
    lat.sort();
    let p =
        |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    let peak = vm(hub.id(), "VmHWM:");
    let _ = hub.kill();
    let _ = hub.wait();

    println!("| metric | result | target |");
    println!("|---|---|---|");
    println!(
        "| telemetry stored / sent | {count} / {total} ({}) | none lost |",
        if count == total { "none lost" } else { "LOST" }
    );
    println!("| telemetry throughput, {DEVICES} devices, SDK -> broker -> rules -> store | {rate:.0} msgs/s ({:.1} s) | >= 20,000 msgs/s |", elapsed.as_secs_f64());
    println!("| command round trip p50 / p99 ({ROUND_TRIPS} via HTTP API) | {:.2} ms / {:.2} ms | < 5 ms / < 20 ms |", p(0.50), p(0.99));
    println!(
        "| hub RSS idle / peak after telemetry / peak overall | {} MB / {} MB / {} MB | reported |",
        idle_kb / 1024,
        peak_after_tlm / 1024,
        peak / 1024
    );
    assert_eq!(count, total, "telemetry lost");
}
