//! Nothing accepted is lost when a device process dies: an SDK device with
//! `persistence: always` is SIGKILLed while it streams telemetry, restarted on the same
//! store, and every message its `send_telemetry(..).await` had returned `Ok` for ends up
//! in the hub's telemetry store exactly once.
//!
//! The device is a separate process: this test binary again, running only
//! [`child_device`] with `MIR_KILL_CHILD` set (without it that test returns at once).
//! It prints `ACCEPTED n` after each send of counter `n` returned `Ok`; the parent reads
//! those lines, kills the child mid-stream (`Child::kill` sends SIGKILL), starts it again,
//! and checks the store through the CLI. Every message carries the same device time, so
//! the platform tells them apart by `seq` alone: a restarted device that reused a
//! sequence number would overwrite an older message, and a replay that changed one would
//! store a message twice. Only the final contents of the store are checked, not the
//! order in which the hub handled anything.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        atomic::{AtomicI32, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use mir_device_sdk::{LogLevel, Mir, Persistence, SdkError, StoreOptions};
use mir_proto::examples::weather::{Env, DESCRIPTOR_SET};

use crate::{now_ns, support::*};

const DEVICE: &str = "killed-always";
/// Concurrent senders in the child: their messages share the store's commits.
const SENDERS: usize = 4;
/// The first process is killed once this many sends were accepted.
const KILL_AFTER: usize = 300;
/// At most this many sends in the first process (it must still be streaming when killed).
const FIRST_COUNT: i32 = 4_000;
/// The second process sends these counters after its restart (the replay comes first).
const SECOND_FROM: i32 = 1_000_000;
const SECOND_COUNT: i32 = 60;

fn var<T: std::str::FromStr>(name: &str) -> T {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is set by the parent"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

/// The device process (only with `MIR_KILL_CHILD`, the store folder): connects, waits
/// for `GO` on stdin, sends `MIR_KILL_COUNT` messages from counter `MIR_KILL_FROM` with
/// `SENDERS` concurrent senders and prints `ACCEPTED n` after each `Ok`; then flushes,
/// prints `FLUSHED` and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_device() {
    let Ok(store) = std::env::var("MIR_KILL_CHILD") else {
        return; // Only as the parent's child.
    };
    let target: String = var("MIR_KILL_TARGET");
    let from: i32 = var("MIR_KILL_FROM");
    let count: i32 = var("MIR_KILL_COUNT");
    let ts: i64 = var("MIR_KILL_TS");
    let mir = Mir::builder()
        .device_id(DEVICE)
        .target(target)
        .schema(DESCRIPTOR_SET)
        .log_level(LogLevel::Warn)
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .store(StoreOptions {
            folder_path: Some(PathBuf::from(store)),
            persistence_type: Some(Persistence::Always),
            // Delivery is under test, not the disk cap (the machine's disk may be full).
            disk_space_limit: Some(100.0),
            ..Default::default()
        })
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("the child device builds");
    let _running = mir.launch(std::future::pending()).await.expect("launch");
    mir.wait_connected(Duration::from_secs(10))
        .await
        .expect("the child device connects");
    // After the harness's `test kill::child_device ... `, on the same line.
    println!("CONNECTED");
    let go = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .expect("stdin reader");
    assert_eq!(go.expect("stdin").trim(), "GO");

    let deadline = Instant::now() + Duration::from_secs(30);
    let next = Arc::new(AtomicI32::new(from));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        let (mir, next) = (mir.clone(), Arc::clone(&next));
        senders.spawn(async move {
            loop {
                let counter = next.fetch_add(1, Ordering::SeqCst);
                if counter >= from + count {
                    return;
                }
                let env = Env {
                    ts,
                    temperature: counter,
                    station: "kill".into(),
                    ..Default::default()
                };
                loop {
                    assert!(Instant::now() < deadline, "the child streams too slowly");
                    match mir.send_telemetry(&env).await {
                        Ok(()) => break,
                        Err(SdkError::QueueFull { .. }) => {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(e) => panic!("send of {counter} failed: {e}"),
                    }
                }
                println!("ACCEPTED {counter}");
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.expect("a sender");
    }
    tokio::time::timeout(Duration::from_secs(20), mir.flush())
        .await
        .expect("flushed in time")
        .expect("flushed");
    println!("FLUSHED");
    // Until killed (bounded, should the parent be gone).
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// A child device process, SIGKILLed on drop.
struct DeviceProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// The child's stderr.
    log: PathBuf,
    /// The last lines of its stdout other than `ACCEPTED` (the SDK logs there too).
    said: Vec<String>,
    /// Counters whose send returned `Ok`, as printed so far.
    accepted: Vec<i32>,
}

impl DeviceProcess {
    fn spawn(hub: &TestHub, store: &Path, log: PathBuf, from: i32, count: i32, ts: i64) -> Self {
        let exe = std::env::current_exe().expect("the test binary");
        let log_file = std::fs::File::create(&log).expect("the child's log file");
        let mut child = Command::new(exe)
            .args(["kill::child_device", "--exact", "--nocapture"])
            .args(["--test-threads=1", "--include-ignored"])
            .env("MIR_KILL_CHILD", store)
            .env("MIR_KILL_TARGET", hub.mqtt())
            .env("MIR_KILL_FROM", from.to_string())
            .env("MIR_KILL_COUNT", count.to_string())
            .env("MIR_KILL_TS", ts.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn the child device");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("the child's stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    // A line cut short by the kill is not a line.
                    Ok(_) if line.last() == Some(&b'\n') => {
                        let text = String::from_utf8_lossy(&line).trim().to_string();
                        if tx.send(text).is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
            log,
            said: Vec::new(),
            accepted: Vec::new(),
        }
    }

    fn take(&mut self, line: &str) {
        if let Some(n) = line.strip_prefix("ACCEPTED ") {
            self.accepted
                .push(n.parse().unwrap_or_else(|_| panic!("bad line {line:?}")));
        } else {
            if self.said.len() >= 50 {
                self.said.remove(0);
            }
            self.said.push(line.to_string());
        }
    }

    /// Reads lines until `done` holds for one (bounded).
    fn until(&mut self, what: &str, mut done: impl FnMut(&Self, &str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|e| {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!(
                    "no {what} from the child device ({e}); {} sends accepted; its output:\n{}\n{log}",
                    self.accepted.len(),
                    self.said.join("\n")
                )
            });
            self.take(&line);
            if done(self, &line) {
                return;
            }
        }
    }

    fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("the child's stdin");
        stdin.write_all(b"GO\n").expect("write GO");
        stdin.flush().expect("flush GO");
    }

    /// SIGKILL, then the lines printed before it.
    fn kill(mut self) -> Vec<i32> {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.take(&line);
        }
        std::mem::take(&mut self.accepted)
    }
}

impl Drop for DeviceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stored points of the device's `schema.v1.Env` series, as the hub counts them.
fn series_count(hub: &TestHub) -> u64 {
    let list = hub.json(&["tlm", "list", &format!("{DEVICE}/default")]);
    let devices = list["devices"].as_array().cloned().unwrap_or_default();
    devices
        .iter()
        .flat_map(|d| d["messages"].as_array().cloned().unwrap_or_default())
        .find(|m| m["measure"] == "schema.v1.Env")
        .and_then(|m| m["count"].as_u64())
        .unwrap_or(0)
}

/// Counter -> how many stored points carry it.
fn stored(hub: &TestHub) -> BTreeMap<i32, usize> {
    let rows = hub.json(&[
        "tlm",
        "query",
        &format!("{DEVICE}/default"),
        "-n",
        "schema.v1.Env",
        "--since",
        "1h",
        "--limit",
        "10000",
    ]);
    let mut counts = BTreeMap::new();
    for row in rows["rows"].as_array().expect("rows") {
        let counter = row["values"]["temperature"].as_i64().expect("a counter");
        *counts
            .entry(i32::try_from(counter).expect("i32"))
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_killed_while_streaming_with_persistence_always_stores_each_accepted_message_once()
{
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // One device time for every message: only `seq` tells them apart.
    let ts = now_ns() - 60_000_000_000;

    // 1. Streaming, killed after some hundreds of accepted sends.
    let mut first = DeviceProcess::spawn(
        &hub,
        &store,
        dir.path().join("first.log"),
        0,
        FIRST_COUNT,
        ts,
    );
    first.until("CONNECTED", |_, line| line.ends_with("CONNECTED"));
    // The schema is stored before any telemetry is sent (a concurrent hub may handle
    // a batch before the Hello that came first).
    eventually(Duration::from_secs(10), "the schema in the twin", || {
        hub.twin(&format!("{DEVICE}/default"))["status"]["schema"]["packageNames"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    })
    .await;
    first.go();
    first.until("accepted sends", |p, _| p.accepted.len() >= KILL_AFTER);
    let mut accepted = first.kill();
    let killed_at = accepted.len();
    assert!(
        killed_at < FIRST_COUNT as usize,
        "killed mid-stream: {killed_at} of {FIRST_COUNT} accepted"
    );

    // 2. Restarted on the same store: it replays what it kept, then sends more.
    let mut second = DeviceProcess::spawn(
        &hub,
        &store,
        dir.path().join("second.log"),
        SECOND_FROM,
        SECOND_COUNT,
        ts,
    );
    second.until("CONNECTED", |_, line| line.ends_with("CONNECTED"));
    second.go();
    second.until("FLUSHED", |_, line| line.ends_with("FLUSHED"));
    accepted.extend(std::mem::take(&mut second.accepted));

    // 3. Every accepted message is stored, each once.
    let want: BTreeSet<i32> = accepted.iter().copied().collect();
    assert_eq!(want.len(), accepted.len(), "each counter accepted once");
    let mut counts = BTreeMap::new();
    // The series count is one small read: the full query (heavy on the localstack
    // profile) runs once the count says everything may be there.
    // Locally this takes about a second; the localstack profile on moto stores some
    // 20-40 points a second.
    let started = Instant::now();
    let mut reported = Instant::now();
    eventually(
        Duration::from_secs(45),
        "every accepted message stored",
        || {
            let count = series_count(&hub);
            let missing = if count >= want.len() as u64 {
                counts = stored(&hub);
                want.iter().filter(|c| !counts.contains_key(c)).count()
            } else {
                want.len() - usize::try_from(count).unwrap()
            };
            if missing > 0 && reported.elapsed() >= Duration::from_secs(5) {
                reported = Instant::now();
                eprintln!(
                "after {:?}: {missing} of {} accepted messages not stored yet; dead letters:\n{}",
                started.elapsed(),
                want.len(),
                hub.dead_letters()
            );
            }
            missing == 0
        },
    )
    .await;
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    // Sends cut short by the kill (committed, not yet printed) may be stored too; no
    // other message may appear.
    let unknown: Vec<_> = counts
        .keys()
        .filter(|c| {
            !(0..FIRST_COUNT).contains(*c)
                && !(SECOND_FROM..SECOND_FROM + SECOND_COUNT).contains(*c)
        })
        .collect();
    assert!(unknown.is_empty(), "never sent: {unknown:?}");
    println!(
        "killed after {killed_at} accepted sends; {} accepted in all, {} stored, each once",
        want.len(),
        counts.len()
    );
    drop(second);
}
