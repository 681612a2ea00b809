//! The event feed: the `EventStore` decorator publishes what it stored, with labels, and
//! `GET /v1/events/watch` streams it as server-sent events (filters, `Last-Event-ID`,
//! lag replays, the bearer token, shutdown), worker groups (`?group=`) and the telemetry
//! stream (`GET /v1/telemetry/watch`). In-process through the router, no socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::http::StatusCode;
use chrono::Utc;
use http_body_util::BodyExt;

use mir_hub::{config::AccessConfig, feed::FEED_CAPACITY};
use mir_shared::{
    domain::{Event, EventReason, Twin},
    telemetry::{FieldValue, TelemetryRecord},
};

mod support;

use support::{App, TOKEN, WAIT};

fn event(reason: EventReason, device: &str, cause: &str, offset_ms: i64) -> Event {
    let time = Utc::now() + chrono::Duration::milliseconds(offset_ms);
    Event::new(reason, device, time, cause, "test")
}

#[tokio::test]
async fn the_feed_publishes_an_appended_event_with_its_devices_labels() {
    let app = App::open();
    app.device("w1", "lab", &[("site", "roof")]).await;
    let mut rx = app.feed.subscribe();
    let e = event(EventReason::DeviceOnline, "w1", "s1", 0).for_twin(&{
        let mut t = Twin::default();
        t.meta.name = "w1".into();
        t.meta.namespace = "lab".into();
        t
    });
    app.events.append(std::slice::from_ref(&e)).await.unwrap();
    let got = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, e.id);
    assert_eq!(got.reason, EventReason::DeviceOnline);
    assert_eq!(got.namespace, "lab");
    assert_eq!(
        got.labels,
        BTreeMap::from([("site".to_string(), "roof".to_string())])
    );
    // A device without a twin (deleted): published, without labels.
    let gone = event(EventReason::DeviceDeleted, "gone", "d1", 1);
    app.events
        .append(std::slice::from_ref(&gone))
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, gone.id);
    assert!(got.labels.is_empty());
    // And it is stored: the decorator lists what the store holds.
    let page = app
        .events
        .list(&Default::default(), &Default::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
}

#[tokio::test]
async fn an_event_appended_twice_is_published_twice_but_one_stream_sends_it_once() {
    let app = App::open();
    let (status, mut sse) = app.watch("", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let mut rx = app.feed.subscribe();
    let e = event(EventReason::CommandSent, "w1", "c1", 0);
    app.events.append(std::slice::from_ref(&e)).await.unwrap();
    app.events.append(std::slice::from_ref(&e)).await.unwrap();
    let marker = event(EventReason::CommandCompleted, "w1", "c1", 1);
    app.events
        .append(std::slice::from_ref(&marker))
        .await
        .unwrap();
    for _ in 0..2 {
        let got = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.id, e.id);
    }
    assert_eq!(sse.ids(2).await, vec![e.id.clone(), marker.id.clone()]);
    let stored = app
        .events
        .list(&Default::default(), &Default::default())
        .await
        .unwrap();
    assert_eq!(
        stored.items.len(),
        2,
        "the store keeps one of the two appends"
    );
}

#[tokio::test]
async fn the_watch_stream_filters_by_reason_device_namespace_and_labels() {
    let app = App::open();
    app.device("w1", "lab", &[("site", "roof")]).await;
    app.device("w2", "lab", &[("site", "cellar")]).await;
    app.device("w3", "default", &[("site", "roof")]).await;
    let (_, mut by_reason) = app.watch("?reason=deviceoffline", &[]).await;
    let (_, mut by_device) = app.watch("?deviceId=w2", &[]).await;
    let (_, mut by_namespace) = app.watch("?namespace=default", &[]).await;
    let (_, mut by_labels) = app.watch("?labels=site%3Droof&namespace=lab", &[]).await;
    let evs = [
        event(EventReason::DeviceOnline, "w1", "1", 0),
        event(EventReason::DeviceOffline, "w2", "2", 1),
        event(EventReason::DeviceOnline, "w3", "3", 2),
    ];
    app.events.append(&evs).await.unwrap();
    let first = by_reason.next(WAIT).await.unwrap();
    assert_eq!(first.id, evs[1].id);
    assert_eq!(first.event, "DeviceOffline");
    assert_eq!(first.data["deviceId"], "w2");
    assert_eq!(first.data["labels"]["site"], "cellar");
    assert_eq!(by_device.next(WAIT).await.unwrap().id, evs[1].id);
    assert_eq!(by_namespace.next(WAIT).await.unwrap().id, evs[2].id);
    assert_eq!(by_labels.next(WAIT).await.unwrap().id, evs[0].id);
    // Nothing else came on any of them.
    for sse in [
        &mut by_reason,
        &mut by_device,
        &mut by_namespace,
        &mut by_labels,
    ] {
        assert!(sse.next(Duration::from_millis(300)).await.is_none());
    }
    let (status, _) = app.watch("?reason=Exploded", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn last_event_id_replays_the_stored_events_after_it_then_goes_live() {
    let app = App::open();
    let evs: Vec<Event> = (0..3)
        .map(|i| event(EventReason::CommandSent, "w1", &format!("c{i}"), i))
        .collect();
    app.events.append(&evs).await.unwrap();
    let (status, mut sse) = app
        .watch("?deviceId=w1", &[("last-event-id", &evs[0].id)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sse.ids(2).await, vec![evs[1].id.clone(), evs[2].id.clone()]);
    let live = event(EventReason::CommandSent, "w1", "c3", 3);
    app.events
        .append(std::slice::from_ref(&live))
        .await
        .unwrap();
    assert_eq!(sse.next(WAIT).await.unwrap().id, live.id);
}

#[tokio::test]
async fn a_watcher_that_lags_behind_the_channel_gets_what_it_missed_from_the_store() {
    let app = App::new(4, AccessConfig::default());
    let (_, mut sse) = app.watch("", &[]).await;
    // The watcher does not read: its buffer fills and the channel (4) overflows.
    let evs: Vec<Event> = (0..150)
        .map(|i| event(EventReason::CommandSent, "w1", &format!("c{i}"), i))
        .collect();
    for e in &evs {
        app.events.append(std::slice::from_ref(e)).await.unwrap();
    }
    let got = sse.ids(evs.len()).await;
    let want: Vec<String> = evs.iter().map(|e| e.id.clone()).collect();
    let mut sorted_got = got.clone();
    sorted_got.sort();
    let mut sorted_want = want.clone();
    sorted_want.sort();
    assert_eq!(sorted_got, sorted_want, "every event once, none missing");
    assert!(sse.next(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn the_watch_route_needs_the_hubs_bearer_token() {
    let app = App::new(
        FEED_CAPACITY,
        AccessConfig {
            api_token: Some(TOKEN.into()),
            ..AccessConfig::default()
        },
    );
    let (status, _) = app.watch("", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let bearer = format!("Bearer {TOKEN}");
    let (status, mut sse) = app.watch("", &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::OK);
    let e = event(EventReason::DeviceOnline, "w1", "s", 0);
    app.events.append(std::slice::from_ref(&e)).await.unwrap();
    assert_eq!(sse.next(WAIT).await.unwrap().id, e.id);
}

#[tokio::test]
async fn the_stream_ends_when_the_hub_shuts_down() {
    let app = App::open();
    let (_, mut sse) = app.watch("", &[]).await;
    app.shutdown.cancel();
    let ended =
        tokio::time::timeout(WAIT, async { while sse.body.frame().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the stream did not end");
}

#[tokio::test]
async fn members_of_a_group_each_get_a_share_and_a_plain_watcher_gets_everything() {
    let app = App::open();
    let (status, mut a) = app.watch("?group=workers", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, mut b) = app.watch("?group=workers", &[]).await;
    let (_, mut other_group) = app.watch("?group=auditors", &[]).await;
    let (_, mut plain) = app.watch("", &[]).await;
    let evs: Vec<Event> = (0..10)
        .map(|i| event(EventReason::CommandSent, "w1", &i.to_string(), i))
        .collect();
    app.events.append(&evs).await.unwrap();
    // A republished event (a redelivered invocation) goes to the group once.
    app.events.append(&evs[..2]).await.unwrap();
    let (ga, gb) = (a.ids(5).await, b.ids(5).await);
    assert!(a.next(Duration::from_millis(300)).await.is_none());
    assert!(b.next(Duration::from_millis(300)).await.is_none());
    let mut split: Vec<String> = ga.iter().chain(&gb).cloned().collect();
    split.sort();
    let mut all: Vec<String> = evs.iter().map(|e| e.id.clone()).collect();
    all.sort();
    assert_eq!(split, all, "each event to exactly one member");
    assert_eq!(other_group.ids(10).await.len(), 10);
    assert_eq!(plain.ids(10).await.len(), 10);
}

#[tokio::test]
async fn when_a_member_leaves_its_events_go_to_the_remaining_member() {
    let app = App::open();
    let (_, mut a) = app.watch("?group=workers", &[]).await;
    let (_, b) = app.watch("?group=workers", &[]).await;
    drop(b);
    // The hub sees the stream dropped once its task notices; give it a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let evs: Vec<Event> = (0..4)
        .map(|i| event(EventReason::CommandSent, "w1", &i.to_string(), i))
        .collect();
    app.events.append(&evs).await.unwrap();
    assert_eq!(
        a.ids(4).await.len(),
        4,
        "the remaining member gets them all"
    );
}

fn point(device: &str, seq: u64, temperature: i64) -> TelemetryRecord {
    TelemetryRecord {
        device_id: device.into(),
        name: device.into(),
        namespace: "lab".into(),
        measure: Arc::from("schema.v1.Env"),
        time_ns: 1_700_000_000_000_000_000 + seq as i64,
        seq,
        tags: vec![],
        values: vec![
            (Arc::from("temperature"), FieldValue::Int(temperature)),
            (Arc::from("station"), FieldValue::Text("roof".into())),
        ],
    }
}

#[tokio::test]
async fn the_telemetry_stream_sends_each_written_point_with_its_values_and_labels() {
    let app = App::open();
    app.device("w1", "lab", &[("site", "roof")]).await;
    let (status, mut w1) = app
        .stream("/v1/telemetry/watch?deviceId=w1&message=schema.v1.Env", &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, mut by_label) = app
        .stream("/v1/telemetry/watch?labels=site%3Dcellar", &[])
        .await;
    let records = [point("w1", 1, 20), point("w2", 2, 30), point("w1", 3, 21)];
    app.telemetry.write(&records).await.unwrap();
    let first = w1.next(WAIT).await.unwrap();
    assert_eq!(first.event, "schema.v1.Env");
    assert_eq!(first.id, "w1/schema.v1.Env/1700000000000000001/1");
    assert_eq!(first.data["values"]["temperature"], 20);
    assert_eq!(first.data["values"]["station"], "roof");
    assert_eq!(first.data["labels"]["site"], "roof");
    assert_eq!(first.data["namespace"], "lab");
    let second = w1.next(WAIT).await.unwrap();
    assert_eq!(second.data["values"]["temperature"], 21);
    assert!(
        w1.next(Duration::from_millis(300)).await.is_none(),
        "not w2's"
    );
    assert!(by_label.next(Duration::from_millis(300)).await.is_none());
    let (status, _) = app.stream("/v1/telemetry/watch?labels=novalue", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_telemetry_route_needs_the_hubs_bearer_token() {
    let app = App::new(
        FEED_CAPACITY,
        AccessConfig {
            api_token: Some(TOKEN.into()),
            ..AccessConfig::default()
        },
    );
    let (status, _) = app.stream("/v1/telemetry/watch", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let bearer = format!("Bearer {TOKEN}");
    let (status, _) = app
        .stream("/v1/telemetry/watch", &[("authorization", bearer.as_str())])
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_custom_event_is_sent_as_custom_and_filtered_by_its_name() {
    let app = App::open();
    let (_, mut alerts) = app.watch("?customName=DeviceOfflineAlert", &[]).await;
    let mut other = event(EventReason::Custom, "w1", "1", 0);
    other.custom_name = Some("Other".into());
    let mut alert = event(EventReason::Custom, "w1", "2", 1);
    alert.custom_name = Some("DeviceOfflineAlert".into());
    app.events.append(&[other, alert.clone()]).await.unwrap();
    let m = alerts.next(WAIT).await.unwrap();
    assert_eq!(m.id, alert.id);
    assert_eq!(m.event, "Custom");
    assert_eq!(m.data["customName"], "DeviceOfflineAlert");
    assert!(alerts.next(Duration::from_millis(300)).await.is_none());
}
