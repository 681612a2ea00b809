//! Who may reach a hub bound beyond loopback: the HTTP API answers only requests with
//! its bearer token and one of its own host names (`/healthz` needs no token), and the
//! plain MQTT port stays on loopback. `/metrics` shows the counters moving as a device
//! publishes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use prost::Message;
use rumqttc_ring::{AsyncClient, Event, MqttOptions, Packet, QoS};

use mir_hub::{config::AccessConfig, Hub, HubConfig};
use mir_proto::wire::Heartbeat;

const TOKEN: &str = "test-token-0123456789";

async fn open_hub() -> (Hub, tempfile::TempDir, tokio::sync::oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let config = HubConfig {
        data_dir: dir.path().to_path_buf(),
        bind: "0.0.0.0".parse().unwrap(),
        mqtt_port: 0,
        mqtts_port: 0,
        http_port: 0,
        access: AccessConfig {
            api_token: Some(TOKEN.into()),
            ..AccessConfig::default()
        },
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

fn url(hub: &Hub, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", hub.http_addr.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_bound_beyond_loopback_answers_only_its_token_and_its_own_names() {
    let (hub, _dir, _stop) = open_hub().await;
    assert!(
        hub.mqtt_addr.ip().is_loopback(),
        "plain MQTT stays on loopback: {}",
        hub.mqtt_addr
    );
    assert!(
        hub.mqtts_addr.ip().is_unspecified(),
        "mTLS on the bind address"
    );
    let http = reqwest::Client::new();
    let devices = url(&hub, "/v1/devices");

    let none = http.get(&devices).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(
        none.headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some("Bearer")
    );
    let body: serde_json::Value = none.json().await.unwrap();
    assert_eq!(
        body["error"],
        "this hub needs Authorization: Bearer <token> (access.apiToken)"
    );
    let wrong = http
        .get(&devices)
        .bearer_auth("not-the-token-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = http.get(&devices).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let rebound = http
        .get(&devices)
        .bearer_auth(TOKEN)
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 421, "a DNS-rebinding name is refused");

    let health = http.get(url(&hub, "/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let metrics = http.get(url(&hub, "/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 401, "metrics need the token");
}

async fn scrape(hub: &Hub) -> String {
    reqwest::Client::new()
        .get(url(hub, "/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_move_as_a_device_publishes() {
    let (hub, _dir, _stop) = open_hub().await;
    let before = scrape(&hub).await;
    let mut opts = MqttOptions::new("m1", "127.0.0.1", hub.mqtt_addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(opts, 10);
    let hb = Heartbeat {
        interval_sec: 30,
        ..Default::default()
    };
    client
        .publish("mir/m1/hb", QoS::AtLeastOnce, false, hb.encode_to_vec())
        .await
        .unwrap();
    // Until the PUBACK: the hub has accepted the heartbeat.
    for _ in 0..50 {
        match tokio::time::timeout(Duration::from_secs(5), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => break,
            Ok(Ok(_)) => {}
            other => panic!("no PUBACK: {other:?}"),
        }
    }
    let mut after = String::new();
    for _ in 0..100 {
        after = scrape(&hub).await;
        if value(&after, "mir_hub_invocations_total{function=\"heartbeat\"}") >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hb_in = "mir_hub_messages_in_total{kind=\"hb\"}";
    assert_eq!(value(&before, hb_in), 0.0, "{before}");
    assert_eq!(value(&after, hb_in), 1.0, "{after}");
    assert!(
        value(&after, "mir_hub_invocations_total{function=\"heartbeat\"}") >= 1.0,
        "{after}"
    );
    assert!(
        value(&after, "mir_hub_store_seconds_count")
            > value(&before, "mir_hub_store_seconds_count"),
        "each scrape probes the store: {after}"
    );
    assert!(
        after.contains("mir_broker_sessions{state=\"online\"} 1"),
        "{after}"
    );
}
