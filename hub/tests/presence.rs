//! Presence through the whole hub (broker, rules emulation, HTTP API), with raw MQTT
//! clients: a device that reconnects 100 times in quick succession ends online, and a
//! device deleted while it keeps sending heartbeats stays deleted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use prost::Message;
use rumqttc_ring::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::Value;

use mir_hub::{Hub, HubConfig};
use mir_proto::wire::Heartbeat;

async fn hub() -> (Hub, tempfile::TempDir, tokio::sync::oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let config = HubConfig {
        data_dir: dir.path().to_path_buf(),
        mqtt_port: 0,
        mqtts_port: 0,
        http_port: 0,
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

fn client(hub: &Hub, id: &str) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", hub.mqtt_addr.port());
    o.set_clean_session(true);
    o.set_keep_alive(Duration::from_secs(30));
    AsyncClient::new(o, 64)
}

/// Polls until the CONNACK (at most 10 s).
async fn connected(ev: &mut EventLoop) {
    let wait = async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return,
                Ok(_) => {}
                Err(e) => panic!("connection failed before its CONNACK: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("a CONNACK within 10 s");
}

/// `GET /v1/devices/{id}`: the status code and the body.
async fn get_device(http: &reqwest::Client, hub: &Hub, id: &str) -> (u16, Value) {
    let url = format!("http://{}/v1/devices/{id}", hub.http_addr);
    let resp = http.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn online(http: &reqwest::Client, hub: &Hub, id: &str) -> bool {
    let (status, body) = get_device(http, hub, id).await;
    status == 200 && body["status"]["online"] == true
}

/// Polls `check` every 50 ms until it holds; panics naming `what` after `secs`.
async fn eventually<F: std::future::Future<Output = bool>>(
    secs: u64,
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reconnects_of_one_device_in_quick_succession_end_with_the_device_online() {
    let (hub, _dir, _stop) = hub().await;
    let http = reqwest::Client::new();
    // Each connection takes over the client id from the one before, which the broker
    // closes with DUPLICATE_CLIENTID; the replaced client is dropped, never polled again
    // (a polled one would reconnect).
    let mut current: Option<(AsyncClient, EventLoop)> = None;
    for _ in 0..100 {
        let (c, mut ev) = client(&hub, "storm");
        connected(&mut ev).await;
        drop(current.replace((c, ev)));
    }
    let (_c, mut ev) = current.expect("the last connection");
    let driver = tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    eventually(10, "the device online after the storm", || {
        online(&http, &hub, "storm")
    })
    .await;
    // Every lifecycle event has been handled by now or is late: none may take it offline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, twin) = get_device(&http, &hub, "storm").await;
    assert_eq!(status, 200, "{twin}");
    assert_eq!(twin["status"]["online"], true, "{twin}");
    let session = &twin["status"]["session"];
    assert!(session["version"].as_u64().is_some_and(|v| v > 0), "{twin}");
    assert!(
        session.get("disconnectedAt").is_none(),
        "the latest connection is still open: {twin}"
    );
    // A replaced connection's DUPLICATE_CLIENTID disconnect delivered late (AWS sends
    // it unordered), stamped after the latest connect: the device stays online.
    let latest = session["version"].as_u64().unwrap();
    hub.core
        .on_presence(
            mir_proto::topics::PresenceKind::Disconnected,
            "storm",
            "a-replaced-session",
            latest - 1,
            Some("DUPLICATE_CLIENTID"),
            chrono::Utc::now(),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, twin) = get_device(&http, &hub, "storm").await;
    assert_eq!(twin["status"]["online"], true, "{twin}");
    assert_eq!(twin["status"]["session"]["version"], latest, "{twin}");
    assert!(
        hub.core.dead_letters.path().metadata().is_err(),
        "no dead letters"
    );
    driver.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_deleted_while_it_keeps_sending_heartbeats_stays_deleted() {
    let (hub, _dir, _stop) = hub().await;
    let http = reqwest::Client::new();
    let created = http
        .post(format!("http://{}/v1/devices", hub.http_addr))
        .json(&serde_json::json!({"spec": {"deviceId": "hb1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let (c, mut ev) = client(&hub, "hb1");
    connected(&mut ev).await;
    // Heartbeats every 20 ms, QoS 1: each PUBACK comes after the heartbeat was handled.
    let acks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = acks.clone();
    let driver = tokio::spawn(async move {
        while let Ok(e) = ev.poll().await {
            if matches!(e, Event::Incoming(Packet::PubAck(_))) {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let sender = tokio::spawn(async move {
        for n in 0..2_000u64 {
            let hb = Heartbeat {
                sent_at_ns: 0,
                uptime_sec: n,
                queued: 0,
                ..Default::default()
            }
            .encode_to_vec();
            if c.publish("mir/hb1/hb", QoS::AtLeastOnce, false, hb)
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    eventually(10, "hb1 online from its heartbeats", || {
        online(&http, &hub, "hb1")
    })
    .await;

    let deleted = http
        .delete(format!("http://{}/v1/devices/hb1", hub.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 200);
    let acked_at_delete = acks.load(std::sync::atomic::Ordering::SeqCst);
    // For 3 s of heartbeats (bounded), the device stays deleted.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        let (status, body) = get_device(&http, &hub, "hb1").await;
        assert_eq!(status, 404, "re-created by a heartbeat: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let handled_after = acks.load(std::sync::atomic::Ordering::SeqCst) - acked_at_delete;
    assert!(
        handled_after >= 50,
        "only {handled_after} heartbeats handled after the delete"
    );
    let (status, body) = get_device(&http, &hub, "hb1").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["error"], "device hb1 does not exist",
        "the not-found answer"
    );
    let list: Value = http
        .get(format!("http://{}/v1/devices", hub.http_addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["devices"], serde_json::json!([]), "{list}");
    // Ignored, not failed: nothing dead-lettered.
    let letters = std::fs::read_to_string(hub.core.dead_letters.path()).unwrap_or_default();
    assert!(letters.is_empty(), "{letters}");
    sender.abort();
    driver.abort();
}
