//! Custom device routes on the hub: a device's message on its own route
//! (`mir/{id}/x/{module}/{route}`), published by a raw MQTT client (not the SDK), reaches a
//! module watching `GET /v1/routes/watch` with the device's bytes; a publish on another
//! device's route is refused and reaches nobody.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine;
use rumqttc_ring::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::Value;

use mir_hub::{Hub, HubConfig};

const WAIT: Duration = Duration::from_secs(10);

async fn hub() -> (Hub, tempfile::TempDir, tokio::sync::oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let config = HubConfig {
        data_dir: dir.path().to_path_buf(),
        mqtt_port: 0,
        mqtts_port: 0,
        http_port: 0,
        log_level: "warn".into(),
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
    AsyncClient::new(o, 16)
}

/// Polls until `want` (or the connection ends: `false`).
async fn until(ev: &mut EventLoop, mut want: impl FnMut(&Packet) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, ev.poll()).await {
            Ok(Ok(Event::Incoming(p))) if want(&p) => return true,
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return false,
            Err(_) => panic!("nothing happened within {WAIT:?}"),
        }
    }
}

/// An SSE watcher of `/v1/routes/watch?<query>`: the `data:` lines, parsed.
struct Watcher {
    response: reqwest::Response,
    buffer: String,
}

impl Watcher {
    async fn open(hub: &Hub, query: &str) -> (reqwest::StatusCode, Watcher) {
        let url = format!("http://{}/v1/routes/watch?{query}", hub.http_addr);
        let response = reqwest::get(url).await.unwrap();
        (
            response.status(),
            Watcher {
                response,
                buffer: String::new(),
            },
        )
    }

    async fn next(&mut self) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim)
                    .collect();
                if !data.is_empty() {
                    return Some(serde_json::from_str(&data).unwrap());
                }
                continue;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(_) | Err(_) => return None,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_on_a_devices_own_route_reaches_the_module_watching_it_with_its_bytes() {
    let (hub, _dir, _stop) = hub().await;
    let (status, mut watcher) = Watcher::open(&hub, "module=alerts&route=door").await;
    assert_eq!(status, 200);
    let (device, mut ev) = client(&hub, "pump-1");
    assert!(until(&mut ev, |p| matches!(p, Packet::ConnAck(_))).await);
    // Another module's route, and another route of the module: not for this watcher.
    for topic in ["mir/pump-1/x/billing/door", "mir/pump-1/x/alerts/window"] {
        device
            .publish(topic, QoS::AtLeastOnce, false, vec![9])
            .await
            .unwrap();
        assert!(until(&mut ev, |p| matches!(p, Packet::PubAck(_))).await);
    }
    device
        .publish(
            "mir/pump-1/x/alerts/door",
            QoS::AtLeastOnce,
            false,
            vec![1, 2, 3],
        )
        .await
        .unwrap();
    assert!(until(&mut ev, |p| matches!(p, Packet::PubAck(_))).await);
    let got = watcher.next().await.expect("the module got the message");
    assert_eq!(got["deviceId"], "pump-1");
    assert_eq!(got["clientId"], "pump-1");
    assert_eq!(
        (got["module"].as_str(), got["route"].as_str()),
        (Some("alerts"), Some("door"))
    );
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(got["payload"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, vec![1, 2, 3]);
    assert!(got["receivedAt"].as_i64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_publishing_on_another_devices_route_is_cut_off_and_reaches_nobody() {
    let (hub, _dir, _stop) = hub().await;
    let mut rx = hub.core.custom_routes.subscribe();
    let (device, mut ev) = client(&hub, "pump-1");
    assert!(until(&mut ev, |p| matches!(p, Packet::ConnAck(_))).await);
    device
        .publish("mir/pump-2/x/alerts/door", QoS::AtLeastOnce, false, vec![1])
        .await
        .unwrap();
    assert!(
        !until(&mut ev, |p| matches!(p, Packet::PubAck(_))).await,
        "the broker ends the connection instead of acknowledging"
    );
    assert!(matches!(
        rx.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Empty)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_without_a_module_is_refused_with_the_reason() {
    let (hub, _dir, _stop) = hub().await;
    let (status, watcher) = Watcher::open(&hub, "route=door").await;
    assert_eq!(status, 400);
    let body = watcher.response.text().await.unwrap();
    assert!(body.contains("module is required"), "{body}");
}
