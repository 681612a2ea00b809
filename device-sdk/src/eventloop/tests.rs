//! The event loop's timers on tokio's paused clock, with a device that stays offline
//! (nobody listens on its target) and an in-memory store: the telemetry linger, the
//! writes left at shutdown, command time limits, and when sends and flushes return.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use mir_proto::wire::{CommandRequest, CommandResponseStatus};
use tokio::{
    sync::{mpsc, Notify},
    time::Instant,
};

use super::*;
use crate::{
    config::{Persistence, StoreOptions},
    handlers::raw_command_fn,
    store::{RecordKind, Store, StoreError},
    test_support::SharedStore,
    Mir, SdkError,
};

/// A launched device whose target refuses connections (it reconnects only once an
/// hour), over an in-memory store.
struct Offline {
    mir: Mir,
    store: SharedStore,
    stop: Arc<Notify>,
    running: crate::Running,
}

/// A device whose target refuses connections, not launched yet.
fn offline_device(linger: Duration, persistence: Persistence, store: &SharedStore) -> Mir {
    let options = StoreOptions {
        persistence_type: Some(persistence),
        ..Default::default()
    };
    offline_device_with(
        crate::Builder::default().telemetry_linger(linger),
        options,
        store,
    )
}

/// [`offline_device`] from `builder`, with these store options.
fn offline_device_with(builder: crate::Builder, options: StoreOptions, store: &SharedStore) -> Mir {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = builder
        .device_id("paused")
        .target(format!("mqtt://127.0.0.1:{port}"))
        .backoff(Duration::from_secs(3600), Duration::from_secs(3600))
        .store(options)
        .env_vars(Vec::<(String, String)>::new())
        .resolve()
        .expect("valid");
    Mir::new(config, Some(store.boxed()))
}

impl Offline {
    async fn start(linger: Duration) -> Self {
        Self::start_with(linger, Persistence::IfOffline).await
    }

    async fn start_with(linger: Duration, persistence: Persistence) -> Self {
        let store = SharedStore::default();
        let mir = offline_device(linger, persistence, &store);
        Self::launch(mir, store).await
    }

    async fn launch(mir: Mir, store: SharedStore) -> Self {
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
        .await
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
            .await
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
        unix_ns: 1_800_000_000_000_000_000,
        synced: true,
    };
    let now_ms = now.unix_ns / 1_000_000;
    let default = Duration::from_secs(10);
    let with_deadline = |deadline_unix_ms| CommandRequest {
        deadline_unix_ms,
        ..Default::default()
    };
    assert_eq!(command_limit(&with_deadline(0), default, now), default);
    // An unset clock cannot judge the deadline: the default, from receipt.
    let unset = Now {
        synced: false,
        ..now
    };
    assert_eq!(
        command_limit(&with_deadline(now_ms + 1_000), default, unset),
        default
    );
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

// ---- when sends and flushes return ----

#[tokio::test(start_paused = true)]
async fn with_always_a_send_returns_once_its_message_is_in_the_store_not_at_the_linger() {
    let linger = Duration::from_secs(60);
    let dev = Offline::start_with(linger, Persistence::Always).await;
    let start = Instant::now();
    dev.mir
        .send_telemetry_raw("schema.v1.Env", env())
        .await
        .expect("stored");
    assert!(start.elapsed() < linger, "{:?}", start.elapsed());
    let stats = dev.store.lock().stats();
    assert_eq!(
        (stats.records, stats.messages),
        (1, 1),
        "committed on return"
    );
    dev.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_always_sends_queued_together_share_one_commit() {
    let dev = Offline::start_with(Duration::from_millis(50), Persistence::Always).await;
    // Queued at the call, in order, before the event loop runs again.
    let sends: Vec<_> = (0..200)
        .map(|_| dev.mir.send_telemetry_raw("schema.v1.Env", env()))
        .collect();
    for send in sends {
        send.await.expect("stored");
    }
    assert_eq!(dev.store.appends(), 1, "one commit for 200 sends");
    assert_eq!(dev.store.lock().stats().messages, 200);
    let seqs: Vec<u64> = dev.store.items().iter().map(|i| i.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "in call order");
    dev.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_always_a_failing_store_fails_the_send_with_its_error_and_keeps_the_message() {
    let dev = Offline::start_with(Duration::from_millis(50), Persistence::Always).await;
    dev.store.fail_appends(true);
    let sent = dev.mir.send_telemetry_raw("schema.v1.Env", env()).await;
    let Err(SdkError::NotStored { source }) = sent else {
        panic!("NotStored expected: {sent:?}")
    };
    assert!(
        matches!(source.as_ref(), StoreError::Database { reason, .. } if reason == "appends fail"),
        "{source:?}"
    );
    assert_eq!(dev.mir.status().queued_messages, 1, "still queued");
    dev.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_always_a_send_before_launch_is_refused_and_not_queued() {
    let store = SharedStore::default();
    let mir = offline_device(Duration::from_millis(50), Persistence::Always, &store);
    let sent = mir.send_telemetry_raw("schema.v1.Env", env()).await;
    assert!(matches!(sent, Err(SdkError::NotLaunched)), "{sent:?}");
    assert!(matches!(mir.flush().await, Err(SdkError::NotLaunched)));
    let mir = Offline::launch(mir, store.clone()).await.stop().await;
    assert_eq!(store.lock().stats().records, 0, "nothing was accepted");
    assert_eq!(mir.status().queued_messages, 0);
}

#[tokio::test(start_paused = true)]
async fn with_always_in_memory_only_a_send_returns_at_once_even_before_launch() {
    let mir = crate::Builder::default()
        .device_id("no-folder")
        .target("mqtt://127.0.0.1:9")
        .memory_only()
        .store(StoreOptions {
            persistence_type: Some(Persistence::Always),
            ..Default::default()
        })
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("valid");
    mir.send_telemetry_raw("schema.v1.Env", env())
        .await
        .expect("queued in memory");
}

#[tokio::test(start_paused = true)]
async fn with_ifoffline_a_send_returns_before_its_message_is_stored() {
    let dev = Offline::start(Duration::from_millis(50)).await;
    let start = Instant::now();
    dev.mir
        .send_telemetry_raw("schema.v1.Env", env())
        .await
        .expect("queued");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(dev.store.lock().stats().records, 0, "in the open batch");
    dev.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_ifoffline_a_flush_returns_once_offline_telemetry_is_committed() {
    let linger = Duration::from_secs(60);
    let dev = Offline::start_with(linger, Persistence::IfOffline).await;
    let start = Instant::now();
    for _ in 0..3 {
        dev.mir
            .send_telemetry_raw("schema.v1.Env", env())
            .await
            .expect("queued");
    }
    dev.mir.flush().await.expect("flushed");
    assert!(start.elapsed() < linger, "{:?}", start.elapsed());
    let stats = dev.store.lock().stats();
    assert_eq!((stats.records, stats.messages), (1, 3));
    dev.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_always_a_flush_returns_once_a_reported_property_is_committed() {
    let dev = Offline::start_with(Duration::from_millis(50), Persistence::Always).await;
    dev.mir
        .send_properties_raw("schema.v1.DataRateStatus", Bytes::from_static(b"\x08\x05"))
        .expect("queued");
    dev.mir.flush().await.expect("flushed");
    let stored = dev.store.lock().read_after(None, 10).expect("read");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].kind, RecordKind::Reported);
    dev.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_flush_still_waiting_when_the_event_loop_stops_fails_with_closed() {
    // Without storage, offline telemetry is safe only once acknowledged: never here.
    let dev = Offline::start_with(Duration::from_millis(50), Persistence::NoStorage).await;
    dev.mir
        .send_telemetry_raw("schema.v1.Env", env())
        .await
        .expect("queued");
    let mir = dev.mir.clone();
    let flush = tokio::spawn(async move { mir.flush().await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!flush.is_finished(), "waits for a PUBACK");
    dev.stop().await;
    let flushed = flush.await.expect("joined");
    assert!(matches!(flushed, Err(SdkError::Closed)), "{flushed:?}");
}

#[tokio::test(start_paused = true)]
async fn with_always_a_message_with_no_room_at_the_stores_cap_fails_with_store_full() {
    let store = SharedStore::default();
    let options = StoreOptions {
        persistence_type: Some(Persistence::Always),
        max_bytes: Some(10),
        ..Default::default()
    };
    let mir = offline_device_with(crate::Builder::default(), options, &store);
    let dev = Offline::launch(mir, store).await;
    let sent = dev.mir.send_telemetry_raw("schema.v1.Env", env()).await;
    assert!(matches!(sent, Err(SdkError::StoreFull)), "{sent:?}");
    assert_eq!(dev.store.lock().stats().records, 0);
    assert_eq!(dev.mir.status().dropped_messages, 1);
    dev.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_always_a_send_whose_future_is_dropped_is_still_committed() {
    let dev = Offline::start_with(Duration::from_millis(50), Persistence::Always).await;
    drop(dev.mir.send_telemetry_raw("schema.v1.Env", env()));
    dev.mir.flush().await.expect("flushed");
    assert_eq!(dev.store.lock().stats().messages, 1);
    dev.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_flush_waits_for_room_in_a_full_queue_instead_of_failing() {
    let store = SharedStore::default();
    let options = StoreOptions {
        persistence_type: Some(Persistence::IfOffline),
        ..Default::default()
    };
    let mir = offline_device_with(crate::Builder::default().queue_capacity(1), options, &store);
    let dev = Offline::launch(mir, store).await;
    // The event loop has not run since: the one place in the queue is taken.
    dev.mir
        .send_telemetry_raw("schema.v1.Env", env())
        .await
        .expect("queued");
    let full = dev.mir.send_telemetry_raw("schema.v1.Env", env()).await;
    assert!(
        matches!(full, Err(SdkError::QueueFull { capacity: 1 })),
        "{full:?}"
    );
    dev.mir.flush().await.expect("flushed once there was room");
    assert_eq!(dev.store.lock().stats().messages, 1);
    dev.stop().await;
}
