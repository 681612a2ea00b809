//! The event loop's timers on tokio's paused clock, with a device that stays offline
//! (nobody listens on its target) and an in-memory store: the telemetry linger, the
//! writes left at shutdown, command time limits.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use mir_proto::wire::{CommandRequest, CommandResponseStatus};
use tokio::{
    sync::{mpsc, Notify},
    time::Instant,
};

use super::*;
use crate::{handlers::raw_command_fn, test_support::SharedStore, Mir, SdkError};

/// A launched device whose target refuses connections (it reconnects only once an
/// hour), over an in-memory store.
struct Offline {
    mir: Mir,
    store: SharedStore,
    stop: Arc<Notify>,
    running: crate::Running,
}

impl Offline {
    async fn start(linger: Duration) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = crate::Builder::default()
            .device_id("paused")
            .target(format!("mqtt://127.0.0.1:{port}"))
            .telemetry_linger(linger)
            .backoff(Duration::from_secs(3600), Duration::from_secs(3600))
            .env_vars(Vec::<(String, String)>::new())
            .resolve()
            .expect("valid");
        let store = SharedStore::default();
        let mir = Mir::new(config, Some(store.boxed()));
        let stop = Arc::new(Notify::new());
        let stopped = Arc::clone(&stop);
        let running = mir
            .launch(async move { stopped.notified().await })
            .await
            .expect("launch");
        Self {
            mir,
            store,
            stop,
            running,
        }
    }

    async fn stop(self) -> Mir {
        self.stop.notify_one();
        self.running.wait().await.expect("stops");
        self.mir
    }
}

fn env() -> Bytes {
    Bytes::from_static(b"\x08\x15")
}

#[tokio::test(start_paused = true)]
async fn offline_telemetry_leaves_its_batch_at_the_linger_and_goes_to_the_store() {
    let dev = Offline::start(Duration::from_millis(50)).await;
    let (mir, store) = (&dev.mir, &dev.store);
    let start = Instant::now();
    mir.send_telemetry_raw("schema.v1.Env", env())
        .expect("queued");
    mir.wait_for_status(Duration::from_secs(1), |s| s.queued_messages == 1)
        .await
        .expect("in the open batch");
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(store.lock().stats().records, 0, "the batch is still open");
    mir.wait_for_status(Duration::from_secs(1), |s| s.stored_messages == 1)
        .await
        .expect("stored");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(50) && waited < Duration::from_millis(100),
        "{waited:?}"
    );
    assert_eq!(store.lock().stats().messages, 1);
    assert!(!mir.is_connected());
    dev.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stopping_writes_what_is_left_to_the_store_before_the_event_loop_ends() {
    let dev = Offline::start(Duration::from_secs(60)).await;
    let store = dev.store.clone();
    for _ in 0..3 {
        dev.mir
            .send_telemetry_raw("schema.v1.Env", env())
            .expect("queued");
    }
    dev.mir
        .wait_for_status(Duration::from_secs(1), |s| s.queued_messages == 3)
        .await
        .expect("in the open batch");
    assert_eq!(store.lock().stats().records, 0);
    let mir = dev.stop().await;
    let stats = store.lock().stats();
    assert_eq!((stats.records, stats.messages), (1, 3), "one batch on disk");
    assert_eq!(mir.status().stored_messages, 3);
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_connection_times_out_on_the_clock() {
    let dev = Offline::start(Duration::from_millis(50)).await;
    let start = Instant::now();
    let waited = dev.mir.wait_connected(Duration::from_secs(30)).await;
    assert!(
        matches!(waited, Err(SdkError::ConnectTimeout(d)) if d == Duration::from_secs(30)),
        "{waited:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    dev.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_command_handler_past_its_limit_is_answered_timeout_at_the_limit() {
    let handler = raw_command_fn(|_payload: Bytes| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, String>(("schema.v1.SlowResp".to_string(), Bytes::new()))
    });
    let (done, mut answers) = mpsc::channel(1);
    let request = CommandRequest {
        id: "slow".into(),
        name: "schema.v1.SlowCmd".into(),
        ..Default::default()
    };
    let start = Instant::now();
    run_command(handler, request, Duration::from_secs(10), done).await;
    let response = answers.recv().await.expect("answered");
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(response.id, "slow");
    assert_eq!(response.status, CommandResponseStatus::Timeout as i32);
    assert_eq!(
        response.error,
        "the handler of schema.v1.SlowCmd did not finish within 10s"
    );
}

#[test]
fn a_request_deadline_shortens_the_command_limit() {
    let now = Now {
        mono: std::time::Instant::now(),
        unix_ns: 1_700_000_000_000_000_000,
    };
    let now_ms = now.unix_ns / 1_000_000;
    let default = Duration::from_secs(10);
    let with_deadline = |deadline_unix_ms| CommandRequest {
        deadline_unix_ms,
        ..Default::default()
    };
    assert_eq!(command_limit(&with_deadline(0), default, now), default);
    assert_eq!(
        command_limit(&with_deadline(now_ms + 3_000), default, now),
        Duration::from_secs(3)
    );
    assert_eq!(
        command_limit(&with_deadline(now_ms + 60_000), default, now),
        default
    );
    assert_eq!(
        command_limit(&with_deadline(now_ms - 1), default, now),
        Duration::ZERO
    );
}
