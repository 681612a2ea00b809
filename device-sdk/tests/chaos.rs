//! Chaos: a device streams 20,000 QoS 1 telemetry messages while the broker is stopped
//! and restarted twice; the broker ends with all 20,000 (by sequence number). Loopback
//! only, bounded in time.

mod support;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use mir_device_sdk::{Mir, Persistence, SdkError, StoreOptions};
use mir_proto::{examples::weather::Env, wire::TelemetryBatch};
use prost::Message;
use support::{launch, TestBroker};

const TOTAL: usize = 20_000;
const DEVICE: &str = "chaos";

/// (seq -> payload) of every telemetry item the broker accepted, and the raw count.
fn received(broker: &TestBroker) -> (HashMap<u64, bytes::Bytes>, usize) {
    let mut by_seq = HashMap::new();
    let mut raw = 0;
    for batch in broker.recorder.on(&format!("mir/{DEVICE}/tlm")) {
        for item in TelemetryBatch::decode(batch).expect("batch decodes").items {
            raw += 1;
            if let Some(previous) = by_seq.insert(item.seq, item.payload.clone()) {
                assert_eq!(previous, item.payload, "a duplicate is an exact redelivery");
            }
        }
    }
    (by_seq, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_messages_survive_two_broker_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = TestBroker::start().await;
    let mir = Mir::builder()
        .device_id(DEVICE)
        .target(broker.target())
        .telemetry_linger(Duration::from_millis(20))
        .backoff(Duration::from_millis(50), Duration::from_millis(400))
        .connect_interval(Duration::from_millis(100))
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
    let dev = launch(mir).await;
    dev.mir
        .wait_connected(support::WAIT)
        .await
        .expect("connects");

    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let mut sent = 0usize;
    let mut restarts = 0;
    let mut queue_full = 0u64;
    while sent < TOTAL {
        assert!(Instant::now() < deadline, "sending took too long");
        // 50 messages every 10 ms: about 4 s of streaming.
        for _ in 0..50 {
            if sent == TOTAL {
                break;
            }
            let env = Env {
                ts: sent as i64,
                temperature: (sent % 100) as i32,
                ..Default::default()
            };
            match dev.mir.send_telemetry(&env).await {
                Ok(()) => sent += 1,
                Err(SdkError::QueueFull { .. }) => {
                    queue_full += 1;
                    break;
                }
                Err(e) => panic!("send failed: {e}"),
            }
        }
        if (restarts == 0 && sent >= 5_000) || (restarts == 1 && sent >= 12_000) {
            restarts += 1;
            broker.stop().await;
            // Keep streaming while the broker is away: until the device has seen it
            // go, then 2,000 more messages (bounded in time).
            let away = Instant::now() + Duration::from_secs(20);
            let mut offline = 0usize;
            while (dev.mir.is_connected() || offline < 2_000) && sent < TOTAL {
                assert!(
                    Instant::now() < away,
                    "the device did not see the broker go"
                );
                let connected = dev.mir.is_connected();
                for _ in 0..50 {
                    let env = Env {
                        ts: sent as i64,
                        ..Default::default()
                    };
                    match dev.mir.send_telemetry(&env).await {
                        Ok(()) => {
                            sent += 1;
                            offline += usize::from(!connected);
                        }
                        Err(SdkError::QueueFull { .. }) => {
                            queue_full += 1;
                            break;
                        }
                        Err(e) => panic!("send failed: {e}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            broker.restart().await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(restarts, 2);

    // Everything arrives, bounded.
    let wait_until = Instant::now() + Duration::from_secs(60);
    let (by_seq, raw) = loop {
        let (by_seq, raw) = received(&broker);
        if by_seq.len() >= TOTAL || Instant::now() > wait_until {
            break (by_seq, raw);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let status = dev.mir.status();
    println!(
        "chaos: sent {TOTAL}, distinct seq at the broker {}, raw items {raw}, duplicates {}, \
         connects {}, dropped {}, queue-full retries {queue_full}, {:?}",
        by_seq.len(),
        raw - by_seq.len(),
        status.connects,
        status.dropped_messages,
        started.elapsed()
    );
    assert_eq!(by_seq.len(), TOTAL, "every message arrived");
    let mut seqs: Vec<u64> = by_seq.keys().copied().collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs[TOTAL - 1] - seqs[0],
        (TOTAL - 1) as u64,
        "one contiguous sequence"
    );
    // Every message's content arrived (ts = 0..20,000).
    let mut ts: Vec<i64> = by_seq
        .values()
        .map(|p| Env::decode(p.clone()).expect("env").ts)
        .collect();
    ts.sort_unstable();
    assert!(ts.iter().enumerate().all(|(i, t)| *t == i as i64));
    assert!(status.connects >= 3, "{status:?}");
    assert_eq!(status.dropped_messages, 0);
    // Duplicates can only be whole batches the broker accepted just before it
    // stopped, without its PUBACK reaching the device: at most the window (100 batches).
    assert!(
        raw - by_seq.len() <= TOTAL / 2,
        "{} duplicates",
        raw - by_seq.len()
    );
    dev.stop().await;
}
