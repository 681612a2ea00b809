//! The device-facing handlers on fixture events, through each backend's stores,
//! including duplicate delivery of the same event (IoT rules deliver at least once).

use std::sync::Arc;

use prost::Message;

use mir_proto::{examples::weather, wire::Heartbeat};
use mir_shared::{
    adapters::memory::{FixedClock, RecordingPublisher},
    domain::{EventFilter, Twin},
    ports::{StoredSchema, TelemetryQuery},
    rule_event::PresenceInput,
    service::SchemaCache,
    testing::{
        at_ms, command_response_event, env, hello_event, reported_event, rule_event,
        telemetry_event,
    },
};

use crate::support::Ports;

struct World<'a> {
    p: &'a Ports,
    publisher: Arc<RecordingPublisher>,
    /// The backend's stores with this world's publisher, clock and cache.
    ports: mir_shared::ports::Ports,
}

impl<'a> World<'a> {
    fn new(p: &'a Ports) -> Self {
        let publisher = Arc::new(RecordingPublisher::new());
        let ports = mir_shared::ports::Ports {
            publisher: Some(publisher.clone()),
            clock: Arc::new(FixedClock::new(at_ms(1_700_000_000_000))),
            cache: Arc::new(SchemaCache::default()),
            ..p.ports.clone()
        };
        Self {
            p,
            publisher,
            ports,
        }
    }

    async fn twin(&self, id: &str) -> Twin {
        self.p.twins().get(id).await.unwrap().expect("twin").value
    }

    async fn version(&self, id: &str) -> u64 {
        self.p.twins().get(id).await.unwrap().expect("twin").version
    }

    async fn reasons(&self, id: &str) -> Vec<String> {
        let f = EventFilter {
            device_id: Some(id.into()),
            ..Default::default()
        };
        self.p
            .events()
            .list(&f, &mir_shared::domain::PageRequest::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| e.reason.as_str().to_string())
            .collect()
    }

    /// The weather device with its schema, as after a hello.
    async fn weather(&self, id: &str) {
        let twin = Twin::auto_provisioned(&mir_proto::DeviceId::new(id).unwrap());
        self.p.twins().create(&twin).await.unwrap();
        self.p
            .schemas()
            .put(&StoredSchema {
                device_id: id.into(),
                compressed: mir_shared::schema::compress(weather::DESCRIPTOR_SET).into(),
                hash: mir_shared::service::schema_hash(weather::DESCRIPTOR_SET),
                package_names: vec!["schema.v1".into()],
                updated_at: at_ms(0),
            })
            .await
            .unwrap();
    }
}

async fn hello_provisions_once(p: &Ports) {
    let w = World::new(p);
    let deps = mir_fn_hello::Deps::try_from(&w.ports).unwrap();
    let ev = hello_event("w1", 1_000);
    let out = mir_fn_hello::handle(&deps, &ev).await.unwrap();
    assert!(out.created && out.schema_changed);
    let before = p.twins().get("w1").await.unwrap();
    let again = mir_fn_hello::handle(&deps, &ev).await.unwrap();
    assert!(!again.created && !again.schema_changed);
    assert_eq!(p.twins().get("w1").await.unwrap(), before, "{}", p.kind);
    let mut reasons = w.reasons("w1").await;
    reasons.sort();
    assert_eq!(reasons, ["DeviceCreated", "SchemaUpdated"]);
    assert!(p.schemas().get("w1").await.unwrap().is_some());
}

async fn heartbeat_marks_online_once(p: &Ports) {
    let w = World::new(p);
    w.weather("w1").await;
    let deps = mir_fn_heartbeat::Deps::try_from(&w.ports).unwrap();
    let hb = Heartbeat {
        sent_at_ns: 1,
        uptime_sec: 2,
        queued: 0,
        ..Default::default()
    }
    .encode_to_vec();
    let ev = rule_event("w1", &hb, 2_000);
    assert!(
        mir_fn_heartbeat::handle(&deps, &ev)
            .await
            .unwrap()
            .came_online
    );
    let v = w.version("w1").await;
    assert!(
        !mir_fn_heartbeat::handle(&deps, &ev)
            .await
            .unwrap()
            .came_online
    );
    assert_eq!(
        w.version("w1").await,
        v,
        "a duplicate heartbeat writes nothing"
    );
    assert!(w.twin("w1").await.status.online);
    assert_eq!(w.reasons("w1").await, ["DeviceOnline"]);
}

async fn telemetry_is_stored_once(p: &Ports) {
    let w = World::new(p);
    w.weather("w1").await;
    let deps = mir_fn_telemetry::Deps::try_from(&w.ports).unwrap();
    let items = [
        ("schema.v1.Env", env(1_000_000_000, 20).encode_to_vec(), 1),
        ("schema.v1.Env", env(2_000_000_000, 21).encode_to_vec(), 2),
        ("schema.v1.Nope", vec![], 3),
    ];
    let ev = telemetry_event("w1", &items, 5_000);
    let out = mir_fn_telemetry::handle(&deps, &ev).await.unwrap();
    assert_eq!((out.received, out.written, out.rejected.len()), (3, 2, 1));
    mir_fn_telemetry::handle(&deps, &ev).await.unwrap();
    let q = TelemetryQuery::new("w1", "schema.v1.Env", 0).limit(100);
    let recs = p.reader().query(&q).await.unwrap().items;
    assert_eq!(
        recs.iter().map(|r| r.time_ns).collect::<Vec<_>>(),
        [1_000_000_000, 2_000_000_000],
        "{}",
        p.kind
    );
    assert_eq!(p.reader().series("w1").await.unwrap()[0].count, 2);
    assert_eq!(
        w.reasons("w1").await,
        ["InvalidMessage"],
        "the duplicate's event is recorded once"
    );
}

async fn reported_applies_newer_once(p: &Ports) {
    let w = World::new(p);
    w.weather("w1").await;
    let deps = mir_fn_reported::Deps::try_from(&w.ports).unwrap();
    let new = weather::DataRateStatus { sec: 5 }.encode_to_vec();
    let old = weather::DataRateStatus { sec: 1 }.encode_to_vec();
    let ev = reported_event("w1", "schema.v1.DataRateStatus", new, 2_000_000_000, 3_000);
    let out = mir_fn_reported::handle(&deps, &ev).await.unwrap();
    assert_eq!(out.applied, ["schema.v1.DataRateStatus"]);
    let v = w.version("w1").await;
    let dup = mir_fn_reported::handle(&deps, &ev).await.unwrap();
    assert!(dup.applied.is_empty());
    assert_eq!(w.version("w1").await, v);
    let older = reported_event("w1", "schema.v1.DataRateStatus", old, 1_000_000_000, 4_000);
    assert_eq!(
        mir_fn_reported::handle(&deps, &older)
            .await
            .unwrap()
            .ignored_older,
        ["schema.v1.DataRateStatus"]
    );
    assert_eq!(
        w.twin("w1").await.properties.reported["schema.v1.DataRateStatus"],
        serde_json::json!({"sec": 5})
    );
    assert_eq!(w.reasons("w1").await, ["ReportedPropertiesUpdated"]);
}

async fn desired_is_published_to_the_device(p: &Ports) {
    let w = World::new(p);
    w.weather("w1").await;
    let mut twin = w.twin("w1").await;
    twin.properties.desired.insert(
        "schema.v1.DataRateProp".into(),
        serde_json::json!({"sec": 7}),
    );
    p.twins().update(&twin, 1).await.unwrap();
    let deps = mir_fn_desired::Deps::try_from(&w.ports).unwrap();
    let ev = rule_event("w1", b"", 1);
    assert_eq!(
        mir_fn_desired::handle(&deps, &ev).await.unwrap().sent,
        ["schema.v1.DataRateProp"]
    );
    mir_fn_desired::handle(&deps, &ev).await.unwrap();
    let published = w.publisher.published();
    assert_eq!(
        published.len(),
        2,
        "each request is answered (the device asked twice)"
    );
    assert!(published
        .iter()
        .all(|(t, p)| t == "mir/w1/cfg/desired" && p == &published[0].1));
    let msg = mir_proto::wire::DesiredProperties::decode(published[0].1.clone()).unwrap();
    assert_eq!(
        weather::DataRateProp::decode(msg.properties[0].payload.clone())
            .unwrap()
            .sec,
        7
    );
    assert_eq!(w.version("w1").await, 2, "answering changes nothing");
}

async fn a_command_response_completes_once(p: &Ports) {
    let w = World::new(p);
    w.weather("w1").await;
    p.commands()
        .create(&crate::commands::pending("c1", "w1"))
        .await
        .unwrap();
    let deps = mir_fn_command_response::Deps::try_from(&w.ports).unwrap();
    let ev = command_response_event("w1", "c1", true, 2_000);
    let out = mir_fn_command_response::handle(&deps, &ev).await.unwrap();
    assert!(out.changed);
    let rec = p.commands().get("c1").await.unwrap().unwrap();
    assert_eq!(rec.response, Some(serde_json::json!({"success": true})));
    let late_error = command_response_event("w1", "c1", false, 3_000);
    assert!(
        !mir_fn_command_response::handle(&deps, &ev)
            .await
            .unwrap()
            .changed
    );
    assert!(
        !mir_fn_command_response::handle(&deps, &late_error)
            .await
            .unwrap()
            .changed
    );
    assert_eq!(p.commands().get("c1").await.unwrap(), Some(rec));
    assert_eq!(w.reasons("w1").await, ["CommandCompleted"]);
}

fn lifecycle(kind: &str, ms: i64) -> PresenceInput {
    serde_json::from_value(serde_json::json!({
        "clientId": "w1", "timestamp": ms, "eventType": kind,
        "sessionIdentifier": format!("s-{ms}"), "principalIdentifier": "p", "versionNumber": 0,
        "disconnectReason": "CONNECTION_LOST"
    }))
    .unwrap()
}

async fn presence_records_each_transition_once(p: &Ports) {
    let w = World::new(p);
    let deps = mir_fn_presence::Deps::try_from(&w.ports).unwrap();
    let on = lifecycle("connected", 1_000);
    mir_fn_presence::handle(&deps, &on).await.unwrap();
    assert!(mir_fn_presence::handle(&deps, &on)
        .await
        .unwrap()
        .changed
        .is_empty());
    let off = lifecycle("disconnected", 2_000);
    assert_eq!(
        mir_fn_presence::handle(&deps, &off).await.unwrap().changed,
        ["w1"]
    );
    assert!(mir_fn_presence::handle(&deps, &off)
        .await
        .unwrap()
        .changed
        .is_empty());
    assert!(!w.twin("w1").await.status.online);
    assert_eq!(
        w.reasons("w1").await,
        ["DeviceOffline", "DeviceOnline", "DeviceCreated"],
        "{}",
        p.kind
    );
    // The sweep: a device online without heartbeat goes offline once.
    mir_fn_presence::handle(&deps, &lifecycle("connected", 3_000))
        .await
        .unwrap();
    let later = at_ms(3_000 + 10 * 60_000);
    assert_eq!(
        mir_fn_presence::sweep(&deps, later).await.unwrap().changed,
        ["w1"]
    );
    assert!(mir_fn_presence::sweep(&deps, later)
        .await
        .unwrap()
        .changed
        .is_empty());
}

conformance!(
    hello_provisions_once,
    heartbeat_marks_online_once,
    telemetry_is_stored_once,
    reported_applies_newer_once,
    desired_is_published_to_the_device,
    a_command_response_completes_once,
    presence_records_each_transition_once,
);
