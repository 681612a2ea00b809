//! What the hub promises about delivery, each tested so that it fails when it becomes
//! false: failed rule invocations are retried twice and then dead-lettered with their
//! event; one a retry cannot fix is dead-lettered at once and recorded as an event; a
//! QoS 1 publish is acknowledged when the hub accepted it (as AWS IoT does, before the
//! rule's function runs) and a stopping hub still runs what it accepted; a command
//! queued for an offline persistent session reaches the device when it comes back; the
//! stale-heartbeat sweep runs on its own and marks a silent device offline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use rumqttc_ring::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::Value;

use mir_hub::core::{Core, DeadLetters, Rules};
use mir_hub::{Hub, HubConfig};
use mir_proto::wire::{TelemetryBatch, TelemetryItem};
use mir_shared::{
    adapters::{embedded::EmbeddedStore, memory::RecordingPublisher},
    ports::{Ports, TelemetryQuery},
    routes::RoutesTable,
    testing::{env, hello_event},
};

fn core(dir: &std::path::Path, publisher: Arc<RecordingPublisher>) -> Core {
    let store = EmbeddedStore::open(&dir.join("mir.redb")).unwrap();
    Core::new(
        Ports {
            publisher: Some(publisher),
            ..Ports::with_stores(store.clone())
        },
        Rules::from_routes(&RoutesTable::load().unwrap()).unwrap(),
        Some(store),
        DeadLetters::new(dir.join("dead-letters.jsonl")),
    )
}

fn dead_letters(dir: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("dead-letters.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn batch(ts_ns: i64, seq: u64, sent_at_ns: i64) -> Bytes {
    TelemetryBatch {
        items: vec![TelemetryItem {
            name: "schema.v1.Env".into(),
            payload: env(ts_ns, 21).encode_to_vec().into(),
            seq,
            sent_at_ns,
            clock_unsynced: false,
        }],
    }
    .encode_to_vec()
    .into()
}

#[tokio::test(start_paused = true)]
async fn a_retryable_failure_is_retried_twice_then_dead_lettered_with_its_event() {
    let dir = tempfile::tempdir().unwrap();
    let publisher = Arc::new(RecordingPublisher::new());
    let core = core(dir.path(), publisher.clone());
    // Telemetry from a device whose schema the platform does not have: retryable.
    core.on_device_message("w1", "mir/w1/tlm", &batch(1, 1, 0))
        .await;
    // Each of the three attempts asks the device for its schema.
    let asks = publisher
        .published()
        .iter()
        .filter(|(topic, _)| topic == "mir/w1/hello/get")
        .count();
    assert_eq!(asks, 3, "one invocation and two retries");
    let letters = dead_letters(dir.path());
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["function"], "telemetry");
    assert_eq!(letters[0]["retryable"], true);
    assert_eq!(letters[0]["event"]["deviceId"], "w1");
    assert!(
        letters[0]["event"]["payload"].is_string(),
        "the original event"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_a_retry_cannot_fix_is_dead_lettered_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let publisher = Arc::new(RecordingPublisher::new());
    let core = core(dir.path(), publisher.clone());
    core.on_device_message("w1", "mir/w1/hb", &Bytes::from_static(&[0xff, 0xff]))
        .await;
    let letters = dead_letters(dir.path());
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["function"], "heartbeat");
    assert_eq!(letters[0]["retryable"], false);
    assert!(
        letters[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("malformed Heartbeat")),
        "{letters:?}"
    );
    // And, as a Lambda does, it is recorded in the event feed.
    let events = core
        .ports
        .events()
        .unwrap()
        .list(
            &mir_shared::domain::EventFilter {
                device_id: Some("w1".into()),
                ..Default::default()
            },
            &mir_shared::domain::PageRequest::default(),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].reason,
        mir_shared::domain::EventReason::InvalidMessage
    );
    assert!(
        events[0]
            .message
            .starts_with("heartbeat refused a message: malformed Heartbeat"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_replayed_message_without_its_own_time_keeps_the_time_the_device_accepted_it() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path(), Arc::new(RecordingPublisher::new()));
    let hello = hello_event("w1", 1_000);
    core.on_device_message("w1", "mir/w1/hello", &hello.payload_bytes().unwrap().into())
        .await;
    // Accepted by the SDK two days ago while offline, replayed now; `ts` unset (0).
    let accepted = chrono::Utc::now() - chrono::Duration::days(2);
    let accepted_ns = accepted.timestamp_nanos_opt().unwrap();
    core.on_device_message("w1", "mir/w1/tlm", &batch(0, 7, accepted_ns))
        .await;
    let rows = core
        .ports
        .telemetry_reader()
        .unwrap()
        .query(&TelemetryQuery::new("w1", "schema.v1.Env", 0).limit(10))
        .await
        .unwrap()
        .items;
    assert_eq!(rows.len(), 1, "{:?}", dead_letters(dir.path()));
    assert_eq!(
        rows[0].time_ns, accepted_ns,
        "the device's time, not the receive time"
    );
}

async fn hub(
    stale_after_secs: u64,
    sweep_interval_secs: u64,
) -> (Hub, tempfile::TempDir, tokio::sync::oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let config = HubConfig {
        data_dir: dir.path().to_path_buf(),
        mqtt_port: 0,
        mqtts_port: 0,
        http_port: 0,
        stale_after_secs,
        sweep_interval_secs,
        ..HubConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let hub = Hub::start(config, async move {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    (hub, dir, stop)
}

fn client(hub: &Hub, id: &str, clean: bool) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", hub.mqtt_addr.port());
    o.set_clean_session(clean);
    o.set_keep_alive(Duration::from_secs(30));
    AsyncClient::new(o, 64)
}

/// Polls the event loop until `want` matches an incoming packet (at most `secs`).
async fn until(ev: &mut EventLoop, secs: u64, what: &str, mut want: impl FnMut(&Packet) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "timed out waiting for {what}");
        match tokio::time::timeout(left, ev.poll()).await {
            Ok(Ok(Event::Incoming(p))) if want(&p) => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("connection failed while waiting for {what}: {e}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

async fn eventually<F: std::future::Future<Output = bool>>(
    secs: u64,
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_publish_is_stored_even_when_the_hub_stops_right_after() {
    let (hub, _dir, stop) = hub(90, 30).await;
    let (c, mut ev) = client(&hub, "w1", true);
    until(&mut ev, 10, "CONNACK", |p| matches!(p, Packet::ConnAck(_))).await;
    let hello = hello_event("w1", 1).payload_bytes().unwrap();
    c.publish("mir/w1/hello", QoS::AtLeastOnce, false, hello)
        .await
        .unwrap();
    until(&mut ev, 10, "PUBACK of hello", |p| {
        matches!(p, Packet::PubAck(_))
    })
    .await;
    let core = hub.core.clone();
    eventually(10, "the schema stored", || async {
        core.ports
            .schemas()
            .unwrap()
            .get("w1")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let base = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    for seq in 1..=20u64 {
        c.publish(
            "mir/w1/tlm",
            QoS::AtLeastOnce,
            false,
            batch(base + seq as i64, seq, 0),
        )
        .await
        .unwrap();
    }
    let mut acks = 0;
    until(&mut ev, 10, "20 PUBACKs", |p| {
        acks += usize::from(matches!(p, Packet::PubAck(_)));
        acks == 20
    })
    .await;
    // Acknowledged (as AWS IoT does) before the rule's function ran; the hub stops now,
    // and finishes the invocations it accepted before it stops.
    stop.send(()).unwrap();
    hub.stopped().await;
    let rows = core
        .ports
        .telemetry_reader()
        .unwrap()
        .query(&TelemetryQuery::new("w1", "schema.v1.Env", 0).limit(100))
        .await
        .unwrap()
        .items;
    let mut seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_queued_while_a_persistent_session_is_offline_reaches_the_device() {
    let (hub, _dir, _stop) = hub(90, 30).await;
    let (c, mut ev) = client(&hub, "p1", false);
    until(&mut ev, 10, "CONNACK", |p| matches!(p, Packet::ConnAck(_))).await;
    c.subscribe("mir/p1/cmd/req", QoS::AtLeastOnce)
        .await
        .unwrap();
    until(&mut ev, 10, "SUBACK", |p| matches!(p, Packet::SubAck(_))).await;
    c.disconnect().await.unwrap();
    while ev.poll().await.is_ok() {}
    drop((c, ev));
    // While it is away, the platform publishes a command to it.
    let publisher = hub.core.ports.publisher().unwrap();
    let sent = publisher
        .publish("mir/p1/cmd/req", Bytes::from_static(b"cmd-1"))
        .await;
    // The broker takes it for the persistent session.
    sent.expect("queued for the offline persistent session");
    let (_c, mut ev) = client(&hub, "p1", false);
    until(&mut ev, 10, "the queued command", |p| {
        matches!(p, Packet::Publish(m) if m.topic == "mir/p1/cmd/req" && m.payload.as_ref() == b"cmd-1")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_runs_by_itself_and_marks_a_silent_device_offline() {
    let (hub, _dir, _stop) = hub(1, 1).await;
    let (_c, mut ev) = client(&hub, "s1", true);
    until(&mut ev, 10, "CONNACK", |p| matches!(p, Packet::ConnAck(_))).await;
    let twins = hub.core.ports.twins().unwrap();
    eventually(10, "online on connect", || async {
        twins
            .get("s1")
            .await
            .unwrap()
            .is_some_and(|t| t.value.status.online)
    })
    .await;
    // Still connected, but no heartbeat: the next sweeps mark it offline.
    let driver = tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    eventually(10, "offline after the stale sweep", || async {
        twins
            .get("s1")
            .await
            .unwrap()
            .is_some_and(|t| !t.value.status.online)
    })
    .await;
    let events = hub
        .core
        .ports
        .events()
        .unwrap()
        .list(
            &mir_shared::domain::EventFilter {
                device_id: Some("s1".into()),
                ..Default::default()
            },
            &mir_shared::domain::PageRequest::default(),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(
        events[0].reason,
        mir_shared::domain::EventReason::DeviceOffline
    );
    driver.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_dead_letters_cannot_be_written_no_publish_is_acknowledged() {
    let (hub, dir, _stop) = hub(90, 30).await;
    // The dead-letter file cannot be opened: a directory stands in its place.
    let letters = dir.path().join("dead-letters.jsonl");
    std::fs::create_dir(&letters).unwrap();
    let (c, mut ev) = client(&hub, "dl1", true);
    // A heartbeat that is not protobuf: refused at once, and its dead letter fails.
    c.publish(
        "mir/dl1/hb",
        QoS::AtLeastOnce,
        false,
        vec![0xff, 0xff, 0xff],
    )
    .await
    .unwrap();
    until(&mut ev, 10, "the PUBACK of the first", |p| {
        matches!(p, Packet::PubAck(_))
    })
    .await;
    eventually(10, "the failed dead letter", || async {
        hub.core
            .metrics
            .render()
            .contains("mir_hub_dead_letter_write_failures_total 1")
    })
    .await;
    // The next publish is not acknowledged: the connection closes instead.
    c.publish("mir/dl1/hb", QoS::AtLeastOnce, false, vec![0xff])
        .await
        .unwrap();
    let mut acked = false;
    let mut closed = false;
    for _ in 0..20 {
        match tokio::time::timeout(Duration::from_secs(5), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked = true,
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed && !acked, "acked {acked}, closed {closed}");
    // Once the file can be written again, publishes are acknowledged again.
    std::fs::remove_dir(&letters).unwrap();
    let (c, mut ev) = client(&hub, "dl1", true);
    c.publish("mir/dl1/hb", QoS::AtLeastOnce, false, vec![0xff])
        .await
        .unwrap();
    until(&mut ev, 10, "a PUBACK again", |p| {
        matches!(p, Packet::PubAck(_))
    })
    .await;
}
