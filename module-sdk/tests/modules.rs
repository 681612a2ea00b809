//! The Module SDK against an in-process hub (chaos on, see mir-test-support): a module
//! subscribed to events sees a device's online, offline and command-completed events and
//! the custom event it published, each once; a module subscribed to telemetry gets the
//! decoded values of every point; one subscribed to heartbeats and schemas gets the
//! device's heartbeat (with its status) and schema (with its message names) of each
//! connection, each once; two workers of one group split 1,000 events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use futures::StreamExt;
use serde_json::json;

use mir_module_sdk::{
    stream::Stream, DeviceStreamFilter, EventReason, EventType, FeedEvent, FeedFilter,
    HeartbeatPoint, Module, PublishEvent, SchemaAnnouncement, SendCommand, Targets,
    TelemetryFilter,
};
use mir_proto::examples::weather::Env;
use mir_test_support::{Behaviour, Cli, TestDevice, TestHub};

/// How long a stream may take to yield what a test waits for.
const WAIT: Duration = Duration::from_secs(30);

/// A hub on the embedded store; the modules talk HTTP to it (the CLI binary is unused).
fn hub() -> TestHub {
    TestHub::start(Cli::new("mir-is-not-run-by-these-tests"))
}

fn module(hub: &TestHub) -> Module {
    let dir = tempfile_path();
    Module::builder()
        .config_file(dir)
        .api(hub.api())
        .build()
        .expect("a module for the hub")
}

/// A CLI configuration file that does not exist (the defaults): the tests never read the
/// user's.
fn tempfile_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("mir-module-sdk-{}.yaml", std::process::id()))
}

/// The next item within [`WAIT`].
async fn next<T: std::fmt::Debug>(s: &mut Stream<T>, what: &str) -> T {
    match tokio::time::timeout(WAIT, s.next()).await {
        Ok(Some(Ok(item))) => item,
        other => panic!("no {what} within {WAIT:?}: {other:?}"),
    }
}

/// Everything the stream yields until it is quiet for `quiet`.
async fn rest<T>(s: &mut Stream<T>, quiet: Duration) -> Vec<T> {
    let mut out = Vec::new();
    while let Ok(Some(Ok(item))) = tokio::time::timeout(quiet, s.next()).await {
        out.push(item);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_module_sees_online_offline_command_completed_and_its_custom_event_each_once() {
    let hub = hub();
    let m = module(&hub);
    let filter = FeedFilter {
        device_id: Some("w-mod".into()),
        ..FeedFilter::default()
    };
    let mut events = m.events(&filter).await.expect("subscribed");
    let device = TestDevice::start(&hub, "w-mod", Behaviour::Succeed).await;
    let sent = m
        .send_command(&SendCommand {
            targets: Targets {
                ids: vec!["w-mod".into()],
                ..Targets::default()
            },
            all_devices: false,
            name: "schema.v1.ActivateHVACCmd".into(),
            payload: json!({"durationSec": 1}),
            dry_run: false,
            timeout_ms: None,
            no_wait: false,
        })
        .await
        .expect("the command");
    assert_eq!(sent.results.len(), 1, "{sent:?}");
    let published = m
        .publish_event(&PublishEvent {
            device_id: "w-mod".into(),
            event_type: EventType::Warning,
            name: "DeviceOfflineAlert".into(),
            message: "a test alert".into(),
            payload: json!({"minutes": 5}),
        })
        .await
        .expect("published");
    device.stop().await;

    let mut seen: Vec<FeedEvent> = Vec::new();
    let wanted = [
        EventReason::DeviceOnline,
        EventReason::CommandCompleted,
        EventReason::Custom,
        EventReason::DeviceOffline,
    ];
    while !wanted.iter().all(|r| seen.iter().any(|e| e.reason == *r)) {
        seen.push(next(&mut events, "the device's events").await);
    }
    seen.extend(rest(&mut events, Duration::from_secs(2)).await);
    let ids: HashSet<&str> = seen.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), seen.len(), "an event came twice: {seen:#?}");
    let count = |r: EventReason| seen.iter().filter(|e| e.reason == r).count();
    for r in wanted {
        assert_eq!(count(r), 1, "{r:?} in {seen:#?}");
    }
    let custom = seen
        .iter()
        .find(|e| e.reason == EventReason::Custom)
        .expect("the custom event");
    assert_eq!(custom.id, published.id);
    assert_eq!(custom.custom_name.as_deref(), Some("DeviceOfflineAlert"));
    assert_eq!(custom.event_type, EventType::Warning);
    assert_eq!(custom.payload["minutes"], 5);
    assert_eq!(custom.name, "w-mod", "the feed adds the twin's name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_module_subscribed_to_telemetry_gets_the_decoded_values_of_every_point() {
    let hub = hub();
    let m = module(&hub);
    let device = TestDevice::start(&hub, "w-tlm", Behaviour::Succeed).await;
    let mut points = m
        .telemetry(&TelemetryFilter {
            device_id: Some("w-tlm".into()),
            message: Some("schema.v1.Env".into()),
            ..TelemetryFilter::default()
        })
        .await
        .expect("subscribed");
    let base = chrono::Utc::now().timestamp_nanos_opt().expect("now");
    let sent: BTreeMap<i64, i32> = (0..20)
        .map(|i| (base + i * 1_000_000, 100 + i as i32))
        .collect();
    for (ts, temperature) in &sent {
        device
            .mir
            .send_telemetry(&Env {
                ts: *ts,
                temperature: *temperature,
                wind_speed: 1.5,
                station: "roof".into(),
                ..Default::default()
            })
            .await
            .expect("sent");
    }
    let mut got: HashMap<i64, serde_json::Value> = HashMap::new();
    let mut ids = HashSet::new();
    while got.len() < sent.len() {
        let p = next(&mut points, "a telemetry point").await;
        assert!(ids.insert(p.id.clone()), "point {} came twice", p.id);
        assert_eq!(p.message, "schema.v1.Env");
        assert_eq!(p.device_id, "w-tlm");
        let ts = p.time.timestamp_nanos_opt().expect("ns");
        got.insert(ts, serde_json::to_value(&p.values).expect("json"));
    }
    for (ts, temperature) in &sent {
        let values = &got[ts];
        assert_eq!(values["temperature"], *temperature, "{values}");
        assert_eq!(values["wind_speed"], 1.5, "{values}");
        assert_eq!(values["station"], "roof", "{values}");
    }
    assert!(rest(&mut points, Duration::from_secs(1)).await.is_empty());
    device.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_module_subscribed_to_heartbeats_and_schemas_gets_each_of_a_devices_connections_once() {
    let hub = hub();
    let m = module(&hub);
    let filter = DeviceStreamFilter {
        device_id: Some("w-hb".into()),
        ..DeviceStreamFilter::default()
    };
    let mut heartbeats = m.heartbeats(&filter).await.expect("subscribed");
    let mut schemas = m.schemas(&filter).await.expect("subscribed");
    let mut others = m
        .heartbeats(&DeviceStreamFilter {
            device_id: Some("someone-else".into()),
            ..DeviceStreamFilter::default()
        })
        .await
        .expect("subscribed");
    // Each connection sends a hello and a heartbeat.
    let mut got_heartbeats: Vec<HeartbeatPoint> = Vec::new();
    let mut got_schemas: Vec<SchemaAnnouncement> = Vec::new();
    for connection in 0..2 {
        let device = TestDevice::start(&hub, "w-hb", Behaviour::Succeed).await;
        got_heartbeats.push(next(&mut heartbeats, "the heartbeat of a connection").await);
        got_schemas.push(next(&mut schemas, "the schema of a connection").await);
        device.stop().await;
        assert_eq!(got_heartbeats.len(), connection + 1);
    }
    got_heartbeats.extend(rest(&mut heartbeats, Duration::from_secs(2)).await);
    got_schemas.extend(rest(&mut schemas, Duration::from_secs(1)).await);
    assert_eq!(
        got_heartbeats.len(),
        2,
        "one per connection, chaos duplicates dropped: {got_heartbeats:#?}"
    );
    assert_eq!(got_schemas.len(), 2, "one per connection: {got_schemas:#?}");
    assert_ne!(got_heartbeats[0].id, got_heartbeats[1].id);
    assert_ne!(got_schemas[0].id, got_schemas[1].id);
    for hb in &got_heartbeats {
        assert_eq!(hb.device_id, "w-hb");
        assert_eq!(hb.name, "w-hb", "the twin's name");
        assert_eq!(hb.namespace, "default");
        let status = hb
            .status
            .as_ref()
            .expect("the SDK's heartbeat carries a status");
        assert_eq!(status.interval_sec, 30, "the SDK's default interval");
        assert_eq!(
            status.store_state, "STORE_STATE_MEMORY_ONLY",
            "a test device"
        );
        assert_eq!(status.clock_state, "CLOCK_STATE_SYNCED");
    }
    for schema in &got_schemas {
        assert_eq!(schema.device_id, "w-hb");
        assert_eq!(schema.namespace, "default");
        assert_eq!(
            schema.package_names,
            ["google.protobuf", "mir.device.v1", "schema.v1"]
        );
        assert_eq!(schema.telemetry, ["schema.v1.Env"]);
        assert_eq!(schema.commands, ["schema.v1.ActivateHVACCmd"]);
        assert_eq!(schema.config, ["schema.v1.DataRateProp"]);
    }
    assert!(
        rest(&mut others, Duration::from_millis(200))
            .await
            .is_empty(),
        "another device's filter gets none"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_of_one_group_split_a_thousand_events_none_lost_none_twice() {
    let hub = hub();
    let m = module(&hub);
    let filter = FeedFilter {
        custom_name: Some("Job".into()),
        ..FeedFilter::default()
    };
    let mut a = m.worker("jobs", &filter).await.expect("worker a");
    let mut b = m.worker("jobs", &filter).await.expect("worker b");
    let mut watcher = m.events(&filter).await.expect("a plain watcher");
    const N: usize = 1000;
    let publisher = m.clone();
    let publishing = tokio::spawn(async move {
        let jobs = futures::stream::iter(0..N).map(|i| {
            let m = publisher.clone();
            async move {
                m.publish_event(&PublishEvent {
                    device_id: format!("d{}", i % 10),
                    event_type: EventType::Normal,
                    name: "Job".into(),
                    message: format!("job {i}"),
                    payload: json!({ "job": i }),
                })
                .await
                .expect("published")
                .id
            }
        });
        jobs.buffer_unordered(8).collect::<Vec<String>>().await
    });
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    while got_a.len() + got_b.len() < N {
        tokio::select! {
            e = next(&mut a, "worker a's share") => got_a.push(e.id),
            e = next(&mut b, "worker b's share") => got_b.push(e.id),
        }
    }
    let published: HashSet<String> = publishing.await.expect("publisher").into_iter().collect();
    assert_eq!(published.len(), N);
    got_a.extend(
        rest(&mut a, Duration::from_secs(1))
            .await
            .into_iter()
            .map(|e| e.id),
    );
    got_b.extend(
        rest(&mut b, Duration::from_secs(1))
            .await
            .into_iter()
            .map(|e| e.id),
    );
    let all: Vec<&String> = got_a.iter().chain(&got_b).collect();
    let unique: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), N, "none handled twice");
    assert_eq!(unique.len(), N);
    assert!(unique.iter().all(|id| published.contains(*id)), "none lost");
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "both got a share: {} and {}",
        got_a.len(),
        got_b.len()
    );
    let mut watched = HashSet::new();
    while watched.len() < N {
        watched.insert(next(&mut watcher, "the plain watcher's events").await.id);
    }
    assert_eq!(
        watched, published,
        "a watcher outside the group gets every event"
    );
}
