//! A board without a real-time clock: its clock starts at 1970 and is set later (NTP),
//! while the device is offline with records buffered.

mod support;

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use mir_device_sdk::{ClockState, Mir, Persistence, StoreOptions, WallClock};
use mir_proto::{
    examples::weather::Env,
    wire::{TelemetryBatch, TelemetryItem},
};
use prost::{Message, Name};
use support::{launch, net::free_port, TestBroker, WAIT};

/// A clock that counts from wherever it was last set.
#[derive(Debug, Clone)]
struct BoardClock {
    base_ns: Arc<AtomicI64>,
    started: Instant,
}

impl BoardClock {
    /// Starts at the Unix epoch, as a board without a battery-backed clock does.
    fn at_1970() -> Self {
        Self {
            base_ns: Arc::new(AtomicI64::new(0)),
            started: Instant::now(),
        }
    }

    fn elapsed_ns(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_nanos()).expect("short test")
    }

    /// NTP sets the clock to the real time.
    fn set_to_now(&self) {
        self.base_ns
            .store(real_now_ns() - self.elapsed_ns(), Ordering::SeqCst);
    }
}

impl WallClock for BoardClock {
    fn unix_ns(&self) -> i64 {
        self.base_ns.load(Ordering::SeqCst) + self.elapsed_ns()
    }
}

fn real_now_ns() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos(),
    )
    .expect("fits")
}

fn device(target: String, dir: &std::path::Path, clock: &BoardClock) -> Mir {
    Mir::builder()
        .device_id("no-rtc")
        .target(target)
        .wall_clock(clock.clone())
        .telemetry_linger(Duration::from_millis(10))
        .connect_interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .store(StoreOptions {
            folder_path: Some(dir.to_path_buf()),
            persistence_type: Some(Persistence::IfOffline),
            disk_space_limit: Some(100.0),
            ..Default::default()
        })
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build")
}

async fn send(mir: &Mir, ts: std::ops::Range<i64>) {
    for t in ts {
        mir.send_telemetry(&Env {
            ts: t,
            ..Default::default()
        })
        .await
        .expect("queued");
    }
    mir.flush().await.expect("stored");
}

/// The items the broker received, by `Env.ts`.
fn items(broker: &TestBroker) -> Vec<(i64, TelemetryItem)> {
    let mut out: Vec<(i64, TelemetryItem)> = broker
        .recorder
        .on("mir/no-rtc/tlm")
        .into_iter()
        .flat_map(|b| TelemetryBatch::decode(b).expect("batch").items)
        .filter(|i| i.name == Env::full_name())
        .map(|i| (Env::decode(i.payload.clone()).expect("env").ts, i))
        .collect();
    out.sort_by_key(|(ts, _)| *ts);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_that_starts_at_1970_and_jumps_while_offline_loses_nothing_and_sends_real_or_unsynced_times(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let target = format!("mqtt://127.0.0.1:{port}");
    let started_ns = real_now_ns();

    // Run 1: offline at 1970, three messages stored; NTP sets the clock; three more.
    let clock = BoardClock::at_1970();
    let dev = launch(device(target.clone(), dir.path(), &clock)).await;
    send(&dev.mir, 1..4).await;
    assert_eq!(dev.mir.status().clock, ClockState::Unsynced);
    clock.set_to_now();
    send(&dev.mir, 4..7).await;
    dev.mir
        .wait_for_status(WAIT, |s| {
            s.clock == ClockState::Synced && s.stored_messages == 6
        })
        .await
        .expect("nothing deleted when the clock jumped");
    // The broker comes up: the 1970 items leave with their real times.
    let mut broker = TestBroker::start_on(format!("127.0.0.1:{port}").parse().expect("addr")).await;
    dev.mir
        .wait_for_status(WAIT, |s| s.connected && s.stored_records == 0)
        .await
        .expect("replayed");
    let got = items(&broker);
    assert_eq!(
        got.iter().map(|(ts, _)| *ts).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    let now = real_now_ns();
    for (ts, item) in &got {
        assert!(!item.clock_unsynced, "ts {ts}: given its real time");
        assert!(
            item.sent_at_ns >= started_ns - 1_000_000_000 && item.sent_at_ns <= now,
            "ts {ts}: {} is the time it was sent, between {started_ns} and {now}",
            item.sent_at_ns
        );
    }
    dev.stop().await;
    broker.stop().await;

    // Run 2: rebooted at 1970, offline again: three messages stored.
    let clock = BoardClock::at_1970();
    let dev = launch(device(target.clone(), dir.path(), &clock)).await;
    send(&dev.mir, 7..10).await;
    dev.stop().await;

    // Run 3: booted with the clock set. Retention (one week) runs at boot and keeps
    // the records of 1970; they leave marked unsynced (the cloud stores them at their
    // receive time), as the jump of an earlier run is unknown.
    let clock = BoardClock::at_1970();
    clock.set_to_now();
    broker.restart().await;
    let dev = launch(device(target, dir.path(), &clock)).await;
    dev.mir
        .wait_for_status(WAIT, |s| s.connected && s.stored_records == 0)
        .await
        .expect("replayed");
    let late: Vec<(i64, TelemetryItem)> = items(&broker)
        .into_iter()
        .filter(|(ts, _)| *ts >= 7)
        .collect();
    assert_eq!(
        late.iter().map(|(ts, _)| *ts).collect::<Vec<_>>(),
        vec![7, 8, 9]
    );
    assert!(late.iter().all(|(_, i)| i.clock_unsynced), "{late:?}");
    assert_eq!(
        dev.mir.status().dropped_messages,
        0,
        "retention deleted nothing"
    );
    dev.stop().await;
}
