//! The hub delivers like AWS: invocations run concurrently and in any order, and with
//! chaos on they are also duplicated and delayed. Devices here are raw MQTT clients
//! (rumqttc, no SDK) that publish in whatever order they like. The chaos seed is
//! random unless `MIR_CHAOS_SEED` is set, and printed, so that a failing run replays.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use rumqttc_ring::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::json;

use mir_hub::{config::ChaosConfig, Hub, HubConfig};
use mir_proto::{
    examples::weather,
    wire::{DesiredProperties, TelemetryBatch, TelemetryItem},
};
use mir_shared::{
    ports::TelemetryQuery,
    testing::{env, hello_event},
};

fn chaos(duplicate_percent: u8) -> ChaosConfig {
    let seed = std::env::var("MIR_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("chaos seed {seed} (replay with MIR_CHAOS_SEED={seed})");
    ChaosConfig {
        enabled: true,
        seed: Some(seed),
        duplicate_percent,
        max_delay_ms: 2_000,
    }
}

async fn hub(chaos: ChaosConfig) -> (Hub, tempfile::TempDir, tokio::sync::oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let config = HubConfig {
        data_dir: dir.path().to_path_buf(),
        mqtt_port: 0,
        mqtts_port: 0,
        http_port: 0,
        log_level: "warn".into(),
        chaos,
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
    o.set_keep_alive(Duration::from_secs(30));
    AsyncClient::new(o, 256)
}

/// Polls the event loop until `want` matches an incoming packet, for at most `within`.
async fn until(
    ev: &mut EventLoop,
    within: Duration,
    what: &str,
    mut want: impl FnMut(&Packet) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, ev.poll()).await {
            Ok(Ok(Event::Incoming(p))) if want(&p) => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("connection failed while waiting for {what}: {e}"),
            Err(_) => panic!("{what} did not happen within {within:?}"),
        }
    }
}

fn batch(items: &[(i64, i32, u64)]) -> Bytes {
    TelemetryBatch {
        items: items
            .iter()
            .map(|(ts, temperature, seq)| TelemetryItem {
                name: "schema.v1.Env".into(),
                payload: env(*ts, *temperature).encode_to_vec().into(),
                seq: *seq,
                sent_at_ns: 0,
                clock_unsynced: false,
            })
            .collect(),
    }
    .encode_to_vec()
    .into()
}

async fn stored(hub: &Hub, id: &str) -> Vec<(u64, i64, String)> {
    let rows = hub
        .core
        .ports
        .telemetry_reader()
        .unwrap()
        .query(&TelemetryQuery::new(id, "schema.v1.Env", 0).limit(1_000))
        .await
        .unwrap()
        .items;
    let mut out: Vec<_> = rows
        .iter()
        .map(|r| {
            let t = r
                .values
                .iter()
                .find(|(k, _)| &**k == "temperature")
                .map(|(_, v)| v.to_json().to_string())
                .unwrap_or_default();
            (r.seq, r.time_ns, t)
        })
        .collect();
    out.sort();
    out
}

async fn eventually_stored(hub: &Hub, id: &str, n: usize) -> Vec<(u64, i64, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = stored(hub, id).await;
        if rows.len() >= n || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_and_a_desired_request_published_before_hello_are_all_served() {
    let (hub, _dir, _stop) = hub(chaos(10)).await;
    // An operator set a desired property before the device ever said hello.
    let http = reqwest::Client::new();
    let created = http
        .post(format!("http://{}/v1/devices", hub.http_addr))
        .json(&json!({
            "meta": {"name": "raw1"},
            "spec": {"deviceId": "raw1"},
            "properties": {"desired": {"schema.v1.DataRateProp": {"sec": 7}}}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());

    let (c, mut ev) = client(&hub, "raw1");
    until(&mut ev, Duration::from_secs(10), "CONNACK", |p| {
        matches!(p, Packet::ConnAck(_))
    })
    .await;
    c.subscribe("mir/raw1/cfg/desired", QoS::AtLeastOnce)
        .await
        .unwrap();
    until(&mut ev, Duration::from_secs(10), "SUBACK", |p| {
        matches!(p, Packet::SubAck(_))
    })
    .await;

    // Back to back: telemetry, the desired request, and only then the schema.
    let t0 = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let points = [(t0, 21, 1), (t0 + 1_000, 22, 2), (t0 + 2_000, 23, 3)];
    c.publish("mir/raw1/tlm", QoS::AtLeastOnce, false, batch(&points))
        .await
        .unwrap();
    c.publish(
        "mir/raw1/cfg/desired/get",
        QoS::AtLeastOnce,
        false,
        Vec::new(),
    )
    .await
    .unwrap();
    let hello = hello_event("raw1", 0).payload_bytes().unwrap();
    c.publish("mir/raw1/hello", QoS::AtLeastOnce, false, hello)
        .await
        .unwrap();

    let mut sec = None;
    until(
        &mut ev,
        Duration::from_secs(5),
        "the desired properties",
        |p| {
            let Packet::Publish(m) = p else { return false };
            if m.topic != "mir/raw1/cfg/desired" {
                return false;
            }
            let msg = DesiredProperties::decode(m.payload.clone()).unwrap();
            sec = msg
                .properties
                .iter()
                .find(|p| p.name == "schema.v1.DataRateProp")
                .map(|p| {
                    weather::DataRateProp::decode(p.payload.clone())
                        .unwrap()
                        .sec
                });
            sec.is_some()
        },
    )
    .await;
    assert_eq!(sec, Some(7));
    // Keep the connection served while the telemetry's retries run.
    let driver = tokio::spawn(async move { while ev.poll().await.is_ok() {} });

    let rows = eventually_stored(&hub, "raw1", 3).await;
    let want: Vec<_> = points
        .iter()
        .map(|(ts, t, seq)| (*seq, *ts, t.to_string()))
        .collect();
    assert_eq!(rows, want, "every point, once, with its values");
    driver.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invocation_delivered_twice_and_out_of_order_stores_each_point_once() {
    let (hub, dir, _stop) = hub(chaos(100)).await;
    let (c, mut ev) = client(&hub, "dup1");
    until(&mut ev, Duration::from_secs(10), "CONNACK", |p| {
        matches!(p, Packet::ConnAck(_))
    })
    .await;
    let hello = hello_event("dup1", 0).payload_bytes().unwrap();
    c.publish("mir/dup1/hello", QoS::AtLeastOnce, false, hello)
        .await
        .unwrap();
    let t0 = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let points: Vec<(i64, i32, u64)> = (1..=40u64)
        .map(|seq| (t0 + seq as i64 * 1_000, 20 + seq as i32, seq))
        .collect();
    for chunk in points.chunks(4) {
        c.publish("mir/dup1/tlm", QoS::AtLeastOnce, false, batch(chunk))
            .await
            .unwrap();
    }
    let driver = tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    let rows = eventually_stored(&hub, "dup1", points.len()).await;
    let want: Vec<_> = points
        .iter()
        .map(|(ts, t, seq)| (*seq, *ts, t.to_string()))
        .collect();
    assert_eq!(rows, want, "each point exactly once");
    let letters =
        std::fs::read_to_string(dir.path().join("dead-letters.jsonl")).unwrap_or_default();
    assert_eq!(letters, "", "nothing dead-lettered");
    driver.abort();
}
