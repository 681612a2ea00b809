//! The device streams: a device's heartbeats and hellos, handed to the hub's core as the
//! broker would (`Core::on_device_message`), come out of `GET /v1/heartbeats/watch` and
//! `GET /v1/schemas/watch` once the `heartbeat` or `hello` function handled them, with
//! the device's labels, filtered (`deviceId`, `namespace`, `labels`), each id once per
//! connection; a failed or ignored message does not; a bad query is a 400 naming the
//! cause; a watcher behind the channel gets `lagged`; the bearer token; a stream ends
//! when its client goes or the hub shuts down.
//! In-process through the router, no socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use http_body_util::BodyExt;
use prost::Message as _;
use serde_json::Value;

use mir_hub::{
    config::AccessConfig,
    feed::devices::{Handled, Publication},
};
use mir_proto::topics::DeviceTopic;
use mir_proto::wire::{
    heartbeat::{ClockState, StoreState},
    Compression, Heartbeat, Hello,
};
use mir_shared::{domain::feed::LAGGED, ports::TwinStore, schema};

mod support;

use support::{App, TOKEN, WAIT};

const QUIET: Duration = Duration::from_millis(300);

fn heartbeat(sent_at_ns: i64, uptime_sec: u64) -> Bytes {
    Heartbeat {
        sent_at_ns,
        uptime_sec,
        queued: 2,
        interval_sec: 30,
        store_state: StoreState::MemoryOnly as i32,
        clock_state: ClockState::Synced as i32,
        ..Default::default()
    }
    .encode_to_vec()
    .into()
}

fn hello(sent_at_ns: i64) -> Bytes {
    Hello {
        schema: schema::compress(mir_proto::examples::weather::DESCRIPTOR_SET).into(),
        compression: Compression::Zlib as i32,
        sdk_version: "test-sdk".into(),
        sent_at_ns,
        heartbeat_interval_sec: 30,
    }
    .encode_to_vec()
    .into()
}

impl App {
    /// A device's message, as the broker hands it to the rules emulation.
    async fn device_sends(&self, id: &str, suffix: &str, payload: Bytes) {
        self.core
            .on_device_message(id, &format!("mir/{id}/{suffix}"), &payload)
            .await;
    }
}

/// The `{"error": ...}` of a refused watch.
async fn refusal(app: &App, uri: &str) -> (StatusCode, String) {
    let (status, sse) = app.stream(uri, &[]).await;
    let body = sse.body.collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap();
    (
        status,
        json["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn each_handled_heartbeat_is_streamed_with_its_status_and_labels_filtered_by_device() {
    let app = App::open();
    app.device("w1", "lab", &[("site", "roof")]).await;
    let (status, mut w1) = app.stream("/v1/heartbeats/watch?deviceId=w1", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, mut all) = app.stream("/v1/heartbeats/watch", &[]).await;
    let (_, mut roof) = app
        .stream("/v1/heartbeats/watch?labels=site%3Droof", &[])
        .await;
    let (_, mut default_ns) = app
        .stream("/v1/heartbeats/watch?namespace=default", &[])
        .await;

    app.device_sends("w1", "hb", heartbeat(1_000, 5)).await;
    let first = w1.next(WAIT).await.unwrap();
    assert_eq!(first.id, "w1/hb/1000");
    assert_eq!(first.event, "", "the default event");
    assert_eq!(first.data["deviceId"], "w1");
    assert_eq!(first.data["name"], "w1");
    assert_eq!(first.data["namespace"], "lab");
    assert_eq!(first.data["labels"]["site"], "roof");
    assert_eq!(first.data["status"]["uptimeSec"], 5);
    assert_eq!(first.data["status"]["queued"], 2);
    assert_eq!(first.data["status"]["intervalSec"], 30);
    assert_eq!(
        first.data["status"]["storeState"],
        "STORE_STATE_MEMORY_ONLY"
    );
    assert_eq!(first.data["status"]["clockState"], "CLOCK_STATE_SYNCED");
    let twin = TwinStore::get(&app.store, "w1").await.unwrap().unwrap();
    let time: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(first.data["time"].clone()).unwrap();
    assert_eq!(
        Some(time),
        twin.value.status.last_heartbeat,
        "the time the hub received it, as the twin stores it"
    );

    // Delivered twice (a redelivery): the same id, sent once per connection.
    let mut raw = app.core.device_streams.subscribe_heartbeats();
    app.device_sends("w1", "hb", heartbeat(2_000, 6)).await;
    app.device_sends("w1", "hb", heartbeat(2_000, 6)).await;
    // An unknown device: auto-provisioned in `default` by the function.
    app.device_sends("w2", "hb", heartbeat(3_000, 1)).await;
    // An empty heartbeat carries no status.
    app.device_sends("w1", "hb", Bytes::new()).await;

    assert_eq!(w1.next(WAIT).await.unwrap().id, "w1/hb/2000");
    let empty = w1.next(WAIT).await.unwrap();
    assert!(empty.id.starts_with("w1/hb/"), "{}", empty.id);
    assert!(empty.data.get("status").is_none(), "{}", empty.data);
    assert!(w1.next(QUIET).await.is_none(), "not w2's, not twice");

    let ids = all.ids(4).await;
    assert_eq!(ids[..3], ["w1/hb/1000", "w1/hb/2000", "w2/hb/3000"]);
    assert!(all.next(QUIET).await.is_none());
    assert_eq!(roof.ids(3).await[..2], ["w1/hb/1000", "w1/hb/2000"]);
    let w2 = default_ns.next(WAIT).await.unwrap();
    assert_eq!(w2.id, "w2/hb/3000");
    assert_eq!(w2.data["name"], "w2");
    assert!(default_ns.next(QUIET).await.is_none());

    // The channel had it twice.
    let twice: Vec<String> = [raw.recv().await.unwrap(), raw.recv().await.unwrap()]
        .iter()
        .map(|p| p.id.clone())
        .collect();
    assert_eq!(twice, ["w1/hb/2000", "w1/hb/2000"]);
}

#[tokio::test]
async fn a_schema_announcement_names_the_packages_and_messages_the_hub_stored() {
    let app = App::open();
    let (status, mut w1) = app.stream("/v1/schemas/watch?deviceId=w1", &[]).await;
    assert_eq!(status, StatusCode::OK);
    app.device_sends("w2", "hello", hello(5)).await;
    app.device_sends("w1", "hello", hello(7)).await;
    let m = w1.next(WAIT).await.unwrap();
    assert_eq!(m.id, "w1/hello/7");
    assert_eq!(m.data["deviceId"], "w1");
    assert_eq!(m.data["namespace"], "default", "auto-provisioned");
    assert_eq!(m.data["sdkVersion"], "test-sdk");
    assert_eq!(m.data["telemetry"], serde_json::json!(["schema.v1.Env"]));
    assert_eq!(
        m.data["commands"],
        serde_json::json!(["schema.v1.ActivateHVACCmd"])
    );
    assert_eq!(
        m.data["config"],
        serde_json::json!(["schema.v1.DataRateProp"])
    );
    let twin = TwinStore::get(&app.store, "w1").await.unwrap().unwrap();
    let stored = twin.value.status.schema;
    assert_eq!(
        m.data["packageNames"],
        serde_json::to_value(&stored.package_names).unwrap()
    );
    assert_eq!(
        stored.package_names,
        ["google.protobuf", "mir.device.v1", "schema.v1"]
    );
    let time: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(m.data["time"].clone()).unwrap();
    assert_eq!(Some(time), stored.last_schema_fetch);
    assert!(w1.next(QUIET).await.is_none(), "not w2's");
}

#[tokio::test]
async fn a_failed_or_ignored_device_message_is_not_streamed() {
    let app = App::open();
    app.device("gone", "lab", &[]).await;
    TwinStore::delete(&app.store, "gone", chrono::Utc::now())
        .await
        .unwrap();
    let (_, mut heartbeats) = app.stream("/v1/heartbeats/watch", &[]).await;
    let (_, mut schemas) = app.stream("/v1/schemas/watch", &[]).await;
    // Malformed: the functions refuse them (dead-lettered).
    app.device_sends("w1", "hb", Bytes::from_static(&[0xff, 0xff]))
        .await;
    app.device_sends("w1", "hello", Bytes::from_static(&[0xff, 0xff]))
        .await;
    // A deleted device's heartbeat: the function ignores it.
    app.device_sends("gone", "hb", heartbeat(1, 1)).await;
    app.device_sends("w1", "hb", heartbeat(2, 1)).await;
    assert_eq!(heartbeats.next(WAIT).await.unwrap().id, "w1/hb/2");
    assert!(heartbeats.next(QUIET).await.is_none());
    assert!(schemas.next(QUIET).await.is_none());
}

#[tokio::test]
async fn a_bad_device_stream_query_is_a_400_naming_the_cause() {
    let app = App::open();
    assert_eq!(
        refusal(&app, "/v1/heartbeats/watch?labels=novalue").await,
        (
            StatusCode::BAD_REQUEST,
            "label \"novalue\" must be key=value".to_string()
        )
    );
    assert_eq!(
        refusal(&app, "/v1/schemas/watch?message=schema.v1.Env").await,
        (
            StatusCode::BAD_REQUEST,
            "unknown query parameter \"message\" (deviceId, namespace, labels)".to_string()
        )
    );
}

#[tokio::test]
async fn a_heartbeat_watcher_behind_the_channel_is_told_it_lagged_and_its_stream_ends() {
    let app = App::new(4, AccessConfig::default());
    let (_, mut sse) = app.stream("/v1/heartbeats/watch", &[]).await;
    // The watcher does not read: its buffer fills and the channel (4) overflows.
    for i in 1..=200 {
        app.device_sends("w1", "hb", heartbeat(i, 1)).await;
    }
    let mut last = None;
    while let Some(m) = sse.next(WAIT).await {
        last = Some(m);
    }
    let last = last.expect("messages");
    assert_eq!(last.event, LAGGED);
    let missed = last.data.as_u64().expect("how many it missed");
    assert!(missed > 0 && missed < 200, "{missed}");
}

#[tokio::test]
async fn the_device_streams_need_the_hubs_bearer_token() {
    let app = App::new(
        mir_hub::feed::FEED_CAPACITY,
        AccessConfig {
            api_token: Some(TOKEN.into()),
            ..AccessConfig::default()
        },
    );
    let bearer = format!("Bearer {TOKEN}");
    for path in ["/v1/heartbeats/watch", "/v1/schemas/watch"] {
        let (status, _) = app.stream(path, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let (status, _) = app
            .stream(path, &[("authorization", bearer.as_str())])
            .await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn the_device_streams_end_when_the_hub_shuts_down() {
    let app = App::open();
    let (_, mut heartbeats) = app.stream("/v1/heartbeats/watch", &[]).await;
    let (_, mut schemas) = app.stream("/v1/schemas/watch", &[]).await;
    app.shutdown.cancel();
    let ended = tokio::time::timeout(WAIT, async {
        while heartbeats.body.frame().await.is_some() {}
        while schemas.body.frame().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "a stream did not end");
}

#[tokio::test]
async fn a_device_stream_ends_when_its_client_goes() {
    let app = App::open();
    let (_, sse) = app.stream("/v1/heartbeats/watch", &[]).await;
    let unwatched = || async {
        let published = app
            .core
            .device_streams
            .handled(
                None,
                Handled {
                    topic: DeviceTopic::Heartbeat,
                    device_id: "w1",
                    received_at: chrono::Utc::now(),
                    payload: &[],
                    outcome: &Value::Null,
                },
            )
            .await;
        published.unwrap() == Publication::Unwatched
    };
    assert!(!unwatched().await, "watched while the client reads");
    drop(sse);
    let gone = tokio::time::timeout(WAIT, async {
        while !unwatched().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the watcher's task still runs");
}
