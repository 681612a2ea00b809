//! The SDK in the field, against misbehaving peers on loopback: a broker that kicks
//! the device right after every CONNACK, a record that makes the connection drop,
//! stores that fail, commands delivered twice; and the heartbeat that tells the cloud.

mod support;

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use mir_device_sdk::{
    store::{Record, Store, StoreError, StoreStats},
    BuildError, ClockState, LinkIssue, Mir, Persistence, StoreHealth, StoreOptions, WallClock,
};
use mir_proto::{
    examples::weather::{ActivateHvacCmd, ActivateHvacResp, Env, DESCRIPTOR_SET},
    wire::{heartbeat, CommandRequest, CommandResponse, Heartbeat, TelemetryBatch},
    MAX_PAYLOAD_BYTES,
};
use prost::{Message, Name};
use support::{
    launch, launch_connected,
    net::{free_port, CuttingProxy, KickingBroker, KickingProxy, SilentProxy},
    wait_until, TestBroker, WAIT,
};

/// Every `Env.ts` the broker received on `mir/{id}/tlm`, with repeats.
fn received_ts(broker: &TestBroker, id: &str) -> Vec<i64> {
    broker
        .recorder
        .on(&format!("mir/{id}/tlm"))
        .into_iter()
        .flat_map(|b| TelemetryBatch::decode(b).expect("batch").items)
        .filter(|i| i.name == Env::full_name())
        .map(|i| Env::decode(i.payload).expect("env").ts)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_kicks_after_every_connack_gets_one_connect_a_second_a_growing_backoff_and_a_named_cause(
) {
    let broker = KickingBroker::start().await;
    let mir = Mir::builder()
        .device_id("kicked")
        .target(broker.target())
        .schema(DESCRIPTOR_SET)
        .memory_only()
        .backoff(Duration::from_secs(1), Duration::from_secs(8))
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build");
    let dev = launch(mir).await;
    dev.mir
        .wait_for_status(Duration::from_secs(30), |s| {
            matches!(
                s.link_issue,
                Some(LinkIssue::DroppedAfterConnect { in_a_row }) if in_a_row >= 3
            )
        })
        .await
        .expect("the status names the likely cause");
    let status = dev.mir.status();
    assert!(!status.connected);
    // After three kicks the delay is drawn in [2 s, 4 s]: the backoff kept growing.
    let retry_in = status.retry_in.expect("a retry is planned");
    assert!(retry_in >= Duration::from_secs(2), "{retry_in:?}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while broker.connects().len() < 4 {
        assert!(tokio::time::Instant::now() < deadline, "4 connects");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connects = broker.connects();
    let gaps: Vec<Duration> = connects.windows(2).map(|w| w[1] - w[0]).collect();
    // At most one CONNECT per second (the broker sees them a few µs apart from when
    // they left), and a later gap is longer than an earlier one.
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(995)),
        "{gaps:?}"
    );
    assert!(gaps[2] > gaps[0], "{gaps:?}");
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_makes_the_broker_drop_the_connection_is_quarantined_and_the_rest_is_delivered(
) {
    const MARKER: &[u8] = b"POISON-PILL-RECORD";
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mir = Mir::builder()
        .device_id("poisoned")
        .target(format!("mqtt://127.0.0.1:{port}"))
        .connect_interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .store(StoreOptions {
            folder_path: Some(dir.path().to_path_buf()),
            persistence_type: Some(Persistence::IfOffline),
            disk_space_limit: Some(100.0),
            ..Default::default()
        })
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build");
    let dev = launch(mir).await;
    // Offline: three records in the store, the poison between two good ones.
    let env = |ts| Env {
        ts,
        ..Default::default()
    };
    for ts in 0..10 {
        dev.mir.send_telemetry(&env(ts)).await.expect("queued");
    }
    dev.mir.flush().await.expect("stored");
    dev.mir
        .send_telemetry_raw("test.Poison", Bytes::from_static(MARKER))
        .await
        .expect("queued");
    dev.mir.flush().await.expect("stored");
    for ts in 10..20 {
        dev.mir.send_telemetry(&env(ts)).await.expect("queued");
    }
    dev.mir.flush().await.expect("stored");
    assert_eq!(dev.mir.status().stored_records, 3);

    // The broker comes up behind a proxy that cuts the connection on the poison.
    let broker = TestBroker::start().await;
    let proxy = CuttingProxy::start_on(
        format!("127.0.0.1:{port}").parse().expect("addr"),
        broker.addr,
        MARKER,
    )
    .await;
    dev.mir
        .wait_for_status(Duration::from_secs(30), |s| {
            s.quarantined_records == 1 && s.stored_records == 0 && s.connected
        })
        .await
        .expect("quarantined, and the store empties");
    let ts: BTreeSet<i64> = received_ts(&broker, "poisoned").into_iter().collect();
    assert_eq!(ts, (0..20).collect::<BTreeSet<_>>());
    // The heartbeat of the connection after the quarantine tells the cloud.
    wait_until("a heartbeat reporting the quarantine", || {
        broker
            .recorder
            .on("mir/poisoned/hb")
            .into_iter()
            .any(|b| Heartbeat::decode(b).expect("hb").quarantined_records == 1)
    })
    .await;
    // The first cut finds the records in flight together (no attempt counted: they
    // then leave one at a time); then three attempts of the poison alone.
    let cuts = proxy.cuts();
    assert!((3..=4).contains(&cuts), "{cuts} cuts");
    dev.stop().await;
    let store = mir_device_sdk::store::RedbStore::open(dir.path()).expect("reopen");
    assert_eq!(
        store.quarantined().expect("count"),
        1,
        "kept in the quarantine"
    );
    assert_eq!(store.stats().records, 0);
}

/// A store whose every operation fails.
#[derive(Debug, Default)]
struct BrokenDisk;

fn broken() -> StoreError {
    StoreError::Database {
        path: "/broken".into(),
        reason: "input/output error".into(),
    }
}

impl Store for BrokenDisk {
    fn append(&mut self, _: &[Record]) -> Result<(), StoreError> {
        Err(broken())
    }
    fn read_after(&self, _: Option<u64>, _: usize) -> Result<Vec<Record>, StoreError> {
        Err(broken())
    }
    fn remove(&mut self, _: &[u64]) -> Result<(), StoreError> {
        Err(broken())
    }
    fn expire(&mut self, _: i64) -> Result<StoreStats, StoreError> {
        Err(broken())
    }
    fn drop_oldest(&mut self, _: u64) -> Result<StoreStats, StoreError> {
        Err(broken())
    }
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }
    fn disk_used_percent(&self) -> Option<f64> {
        None
    }
    fn get_meta(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Err(broken())
    }
    fn put_meta(&mut self, _: &str, _: &[u8]) -> Result<(), StoreError> {
        Err(broken())
    }
    fn scan_meta(&self, _: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Err(broken())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_writes_all_fail_keeps_the_device_running_within_its_memory_bound() {
    let bound = 2 * MAX_PAYLOAD_BYTES;
    let mir = Mir::builder()
        .device_id("broken-disk")
        .target(format!("mqtt://127.0.0.1:{}", free_port()))
        .telemetry_linger(Duration::from_millis(5))
        .max_queued_bytes(bound)
        .store_backend(|| Ok(BrokenDisk))
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build");
    let dev = launch(mir).await;
    // 1 MB of telemetry while offline, four times the memory bound.
    let payload = Bytes::from(vec![7u8; 1000]);
    let mut sent = 0;
    for _ in 0..200 {
        for _ in 0..5 {
            match dev
                .mir
                .send_telemetry_raw("test.Blob", payload.clone())
                .await
            {
                Ok(()) => sent += 1,
                Err(mir_device_sdk::SdkError::QueueFull { .. }) => {}
                Err(e) => panic!("send: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let s = dev.mir.status();
        assert!(s.queued_bytes <= bound as u64, "{s:?}");
    }
    dev.mir
        .wait_for_status(WAIT, |s| {
            s.store == StoreHealth::Failing && s.dropped_messages > 0 && s.store_errors > 0
        })
        .await
        .expect("the status says the store fails and what was dropped");
    let s = dev.mir.status();
    assert!(s.queued_bytes <= bound as u64, "{s:?}");
    assert!(s.queued_messages + s.dropped_messages <= sent, "{s:?}");
    assert!(!dev.running.is_finished(), "still running");
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_folder_that_cannot_be_created_starts_the_device_on_memory_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Not a directory: creating the folder fails, even for root (read-only media
    // fail the same way).
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let folder = file.join("store");
    let builder = || {
        let broker_less = format!("mqtt://127.0.0.1:{}", free_port());
        Mir::builder()
            .device_id("no-disk")
            .target(broker_less)
            .env_vars(Vec::<(String, String)>::new())
    };
    let mir = builder()
        .store(StoreOptions {
            folder_path: Some(folder.clone()),
            ..Default::default()
        })
        .build()
        .expect("the device starts");
    assert_eq!(mir.status().store, StoreHealth::Unavailable);
    let dev = launch(mir).await;
    dev.mir
        .send_telemetry(&Env::default())
        .await
        .expect("queued in memory");
    dev.mir
        .wait_for_status(WAIT, |s| s.queued_messages == 1)
        .await
        .expect("queued");
    assert_eq!(dev.mir.status().store, StoreHealth::Unavailable);
    dev.stop().await;

    // Made fatal by localStore.required.
    let err = builder()
        .store(StoreOptions {
            folder_path: Some(folder),
            required: Some(true),
            ..Default::default()
        })
        .build()
        .expect_err("required");
    assert!(
        matches!(
            err,
            BuildError::Store(StoreError::CreateDir { ref path, .. }) if path.ends_with("store")
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_delivered_twice_runs_its_handler_once_and_both_deliveries_get_the_same_response()
{
    let broker = TestBroker::start().await;
    let mir = support::device(&broker, "twice").build().expect("build");
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    mir.handle_command(move |_: ActivateHvacCmd| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok::<_, String>(ActivateHvacResp { success: n == 1 }) }
    });
    let dev = launch_connected(mir).await;
    broker.recorder.wait_on("mir/twice/hello", 1).await;
    let request = CommandRequest {
        id: "cmd-42".into(),
        name: ActivateHvacCmd::full_name(),
        payload: ActivateHvacCmd { duration_sec: 1 }.encode_to_vec().into(),
        deadline_unix_ms: 0,
    };
    broker
        .publish("mir/twice/cmd/req", request.encode_to_vec())
        .await;
    let first = broker.recorder.wait_on("mir/twice/cmd/resp", 1).await;
    broker
        .publish("mir/twice/cmd/req", request.encode_to_vec())
        .await;
    let both = broker.recorder.wait_on("mir/twice/cmd/resp", 2).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler ran once");
    assert_eq!(both[0], first[0]);
    assert_eq!(both[1], both[0], "the same response to both deliveries");
    let response = CommandResponse::decode(both[1].clone()).expect("response");
    assert_eq!(response.id, "cmd-42");
    let resp = ActivateHvacResp::decode(response.payload).expect("payload");
    assert!(resp.success, "the first run's answer");
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_redelivered_while_its_handler_runs_gets_the_response_once_it_finishes() {
    let broker = TestBroker::start().await;
    let mir = support::device(&broker, "slow-cmd").build().expect("build");
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    mir.handle_command(move |_: ActivateHvacCmd| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, String>(ActivateHvacResp { success: true })
        }
    });
    let dev = launch_connected(mir).await;
    broker.recorder.wait_on("mir/slow-cmd/hello", 1).await;
    let request = CommandRequest {
        id: "cmd-7".into(),
        name: ActivateHvacCmd::full_name(),
        payload: Bytes::new(),
        deadline_unix_ms: 0,
    };
    for _ in 0..2 {
        broker
            .publish("mir/slow-cmd/cmd/req", request.encode_to_vec())
            .await;
    }
    let both = broker.recorder.wait_on("mir/slow-cmd/cmd/resp", 2).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(both[0], both[1]);
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_goes_silent_without_closing_is_noticed_through_the_keep_alive() {
    let broker = TestBroker::start().await;
    let proxy = SilentProxy::start(broker.addr).await;
    let mir = Mir::builder()
        .device_id("silent-link")
        .target(format!("mqtt://{}", proxy.addr))
        .schema(DESCRIPTOR_SET)
        .memory_only()
        .keep_alive(Duration::from_secs(1))
        // Only MQTT's pings probe the link.
        .heartbeat_interval(Duration::from_secs(3600))
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build");
    let dev = launch_connected(mir).await;
    broker.recorder.wait_on("mir/silent-link/hello", 1).await;
    proxy.go_silent();
    dev.mir
        .wait_for_status(WAIT, |s| {
            !s.connected && s.link_issue == Some(LinkIssue::ConnectionLost)
        })
        .await
        .expect("the dead link noticed");
    dev.stop().await;
}

/// A time source that says its (correct) time is not synchronised yet.
#[derive(Debug)]
struct NotSynced;

impl WallClock for NotSynced {
    fn unix_ns(&self) -> i64 {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock");
        i64::try_from(since.as_nanos()).expect("fits")
    }
    fn is_synced(&self) -> Option<bool> {
        Some(false)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_carries_the_status_of_the_device_store_clock_and_link() {
    let broker = TestBroker::start().await;
    // Three connections kicked right after their CONNACK, then a stable one.
    let proxy = KickingProxy::start(broker.addr, 3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let mir = Mir::builder()
        .device_id("hb-status")
        .target(format!("mqtt://{}", proxy.addr))
        .schema(DESCRIPTOR_SET)
        .store(StoreOptions {
            folder_path: Some(file.join("store")),
            ..Default::default()
        })
        .wall_clock(NotSynced)
        .heartbeat_interval(Duration::from_millis(500))
        .connect_interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build");
    let dev = launch(mir).await;
    let kicked = Some(LinkIssue::DroppedAfterConnect { in_a_row: 3 });
    dev.mir
        .wait_for_status(WAIT, |s| s.connected && s.link_issue == kicked)
        .await
        .expect("connected after three kicks");
    assert_eq!(proxy.kicked(), 3);
    let status = dev.mir.status();
    assert_eq!(status.store, StoreHealth::Unavailable);
    assert_eq!(status.clock, ClockState::Unsynced);

    // The next heartbeat, sent after the status was read.
    let topic = "mir/hb-status/hb";
    let seen = broker.recorder.on(topic).len();
    let beats = broker.recorder.wait_on(topic, seen + 1).await;
    let hb = Heartbeat::decode(beats[seen].clone()).expect("hb");
    assert_eq!(
        dev.mir.status(),
        status,
        "the status did not change meanwhile"
    );
    assert_eq!(hb.store_state(), heartbeat::StoreState::Unavailable);
    assert_eq!(hb.clock_state(), heartbeat::ClockState::Unsynced);
    assert_eq!(hb.link_issue(), heartbeat::LinkIssue::DroppedAfterConnect);
    assert_eq!(hb.dropped_after_connect_in_a_row, 3);
    assert_eq!(
        (
            hb.queued,
            hb.queued_bytes,
            hb.quarantined_records,
            hb.store_errors,
            hb.dropped_messages,
            hb.corrupt_records
        ),
        (
            status.queued_messages,
            status.queued_bytes,
            status.quarantined_records,
            status.store_errors,
            status.dropped_messages,
            status.corrupt_records
        )
    );
    dev.stop().await;
}
