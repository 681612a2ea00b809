//! A device process killed (SIGKILL) while offline keeps its queue: restarted on the
//! same store, it replays everything once the broker is reachable.
//!
//! The device runs as a child process: this test binary again, running only
//! `child_device` with `MIR_SDK_TEST_CHILD` set.

mod support;

use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use mir_device_sdk::{Mir, Persistence, SdkError, StoreOptions};
use mir_proto::{examples::weather::Env, wire::TelemetryBatch};
use prost::Message;
use support::TestBroker;

const DEVICE: &str = "killed";
const FIRST: i64 = 3_000;
const SECOND: i64 = 500;

/// The device process: sends `MIR_SDK_TEST_COUNT` messages from `MIR_SDK_TEST_FROM`,
/// prints `STORED n` once they are all in the store, then runs until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_device() {
    let Ok(store) = std::env::var("MIR_SDK_TEST_CHILD") else {
        return; // Only as a child.
    };
    let target = std::env::var("MIR_SDK_TEST_TARGET").expect("target");
    let from: i64 = std::env::var("MIR_SDK_TEST_FROM")
        .expect("from")
        .parse()
        .expect("number");
    let count: i64 = std::env::var("MIR_SDK_TEST_COUNT")
        .expect("count")
        .parse()
        .expect("number");
    let builder = Mir::builder()
        .device_id(DEVICE)
        .target(target)
        .telemetry_linger(Duration::from_millis(20))
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .connect_interval(Duration::from_millis(100));
    let mir = if std::env::var_os("MIR_SDK_TEST_DEFAULT_STORE").is_some() {
        // No store setting at all: the default folder ($XDG_STATE_HOME, set by the
        // parent to `store`). Delivery is under test, not the disk cap (the
        // machine's disk may be over 85 % full).
        builder.env_vars([("MIR__LOCAL_STORE__DISK_SPACE_LIMIT", "100")])
    } else {
        builder
            .store(StoreOptions {
                folder_path: Some(store.into()),
                persistence_type: Some(Persistence::IfOffline),
                // Delivery is under test here, not the disk cap (the machine's disk may be >85% full).
                disk_space_limit: Some(100.0),
                ..Default::default()
            })
            .env_vars(Vec::<(String, String)>::new())
    }
    .build()
    .expect("build");
    let _running = mir.launch(std::future::pending()).await.expect("launch");
    // The event loop opens the store in the background: wait (bounded) until the
    // status counts what the earlier processes left there (`from` messages), then
    // note what it holds (the parent checks it).
    let left = u64::try_from(from).expect("from >= 0");
    let opened = mir
        .wait_for_status(Duration::from_secs(10), |s| s.stored_messages >= left)
        .await;
    let before = mir.status().stored_messages;
    let late = if opened.is_err() { " (timed out)" } else { "" };
    println!("CHILD STARTED with {before} stored{late}");
    let mut ts = from;
    let deadline = Instant::now() + Duration::from_secs(30);
    while ts < from + count {
        assert!(Instant::now() < deadline);
        match mir
            .send_telemetry(&Env {
                ts,
                ..Default::default()
            })
            .await
        {
            Ok(()) => ts += 1,
            Err(SdkError::QueueFull { .. }) => tokio::time::sleep(Duration::from_millis(1)).await,
            Err(e) => panic!("send failed: {e}"),
        }
    }
    let want = before + count as u64;
    mir.wait_for_status(Duration::from_secs(30), |s| {
        s.connected || s.stored_messages >= want
    })
    .await
    .expect("stored");
    println!("STORED {}", mir.status().stored_messages);
    // Run until killed (bounded).
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// How the child finds its store.
#[derive(Clone, Copy)]
enum StoreSetting {
    /// `localStore.folderPath` is the folder.
    Folder,
    /// No setting: the default folder, under `$XDG_STATE_HOME` = the folder.
    Default,
}

fn spawn_child(
    store: &std::path::Path,
    target: &str,
    from: i64,
    count: i64,
) -> (Child, mpsc::Receiver<String>) {
    spawn_child_with(store, StoreSetting::Folder, target, from, count)
}

fn spawn_child_with(
    store: &std::path::Path,
    setting: StoreSetting,
    target: &str,
    from: i64,
    count: i64,
) -> (Child, mpsc::Receiver<String>) {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    if let StoreSetting::Default = setting {
        command
            .env("MIR_SDK_TEST_DEFAULT_STORE", "1")
            .env("XDG_STATE_HOME", store);
    }
    let mut child = command
        .args(["child_device", "--exact", "--nocapture", "--test-threads=1"])
        .env("MIR_SDK_TEST_CHILD", store)
        .env("MIR_SDK_TEST_TARGET", target)
        .env("MIR_SDK_TEST_FROM", from.to_string())
        .env("MIR_SDK_TEST_COUNT", count.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child device");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_line(rx: &mpsc::Receiver<String>, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(prefix) => return line,
            Ok(_) => {}
            Err(e) => panic!("no {prefix:?} from the child: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_killed_while_offline_replays_its_queue_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A free port, nobody listening yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let target = format!("mqtt://127.0.0.1:{port}");

    // 1. Offline, 3,000 messages into the store, then SIGKILL.
    let (mut child, rx) = spawn_child(dir.path(), &target, 0, FIRST);
    let stored = wait_line(&rx, "STORED");
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    println!("first process: {stored}, killed");

    // 2. Restarted on the same store, still offline: 500 more.
    let (mut child, rx) = spawn_child(dir.path(), &target, FIRST, SECOND);
    let started = wait_line(&rx, "CHILD STARTED");
    println!("second process: {started}");
    assert!(
        started.contains(&format!("with {FIRST} stored")),
        "the killed process's queue is on disk: {started}"
    );
    wait_line(&rx, "STORED");

    // 3. The broker comes up: everything is replayed.
    let broker = TestBroker::start_on(format!("127.0.0.1:{port}").parse().expect("addr")).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (ts, raw) = loop {
        let mut ts = HashSet::new();
        let mut raw = 0;
        for batch in broker.recorder.on(&format!("mir/{DEVICE}/tlm")) {
            for item in TelemetryBatch::decode(batch).expect("batch").items {
                raw += 1;
                ts.insert(Env::decode(item.payload).expect("env").ts);
            }
        }
        if ts.len() as i64 >= FIRST + SECOND || Instant::now() > deadline {
            break (ts, raw);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    println!(
        "replayed after restart: {} distinct of {}, raw {raw}",
        ts.len(),
        FIRST + SECOND
    );
    assert_eq!(ts.len() as i64, FIRST + SECOND);
    assert!((0..FIRST + SECOND).all(|t| ts.contains(&t)));
    assert_eq!(
        raw,
        ts.len(),
        "nothing was acknowledged before: no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_device_killed_while_offline_delivers_what_it_accepted_after_a_restart() {
    const ACCEPTED: i64 = 300;
    let state = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let target = format!("mqtt://127.0.0.1:{port}");

    // No store setting, offline: 300 messages accepted, then SIGKILL.
    let (mut child, rx) =
        spawn_child_with(state.path(), StoreSetting::Default, &target, 0, ACCEPTED);
    wait_line(&rx, "STORED");
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let folder = state.path().join("mir").join("devices").join(DEVICE);
    assert!(
        folder.join("store.redb").is_file(),
        "the queue is on disk in the standard per-device folder"
    );

    // Restarted (nothing more to send), the broker up: everything is delivered.
    let broker = TestBroker::start_on(format!("127.0.0.1:{port}").parse().expect("addr")).await;
    let (mut child, rx) =
        spawn_child_with(state.path(), StoreSetting::Default, &target, ACCEPTED, 0);
    let started = wait_line(&rx, "CHILD STARTED");
    assert!(
        started.contains(&format!("with {ACCEPTED} stored")),
        "the killed process's queue is on disk: {started}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let ts = loop {
        let mut ts = HashSet::new();
        for batch in broker.recorder.on(&format!("mir/{DEVICE}/tlm")) {
            for item in TelemetryBatch::decode(batch).expect("batch").items {
                ts.insert(Env::decode(item.payload).expect("env").ts);
            }
        }
        if ts.len() as i64 >= ACCEPTED || Instant::now() > deadline {
            break ts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert_eq!(ts, (0..ACCEPTED).collect::<HashSet<_>>());
}
