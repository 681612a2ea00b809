//! The grants of `shared/routes.json` against what each function's handler really does.
//!
//! Every function runs, through the registry, over the DynamoDB adapters pointed at a
//! metering proxy in front of moto, on a device's life (hello, connect, heartbeats,
//! telemetry, reported and desired properties, commands, the API's routes, disconnect,
//! the sweep, delete) and on unknown devices (which provision their twin). The proxy
//! sees each DynamoDB request; read operations count as `r` on their table, writes as
//! `w` (a transaction item by item: a condition check reads). The publisher records
//! the topics, the event feed whether the function published. The test fails when
//! routes.json grants a function less than it uses, or more.
//!
//! Needs MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start).

#[path = "../benches/cost/meter.rs"]
#[allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
mod meter;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use prost::Message;
use serde_json::{json, Value};

use mir_broker::ca::LocalCa;
use mir_hub::{
    certificates::{CertificateBook, LocalCertificates},
    registry::{self, Function},
};
use mir_proto::wire::Heartbeat;
use mir_shared::{
    adapters::{
        aws::AwsEnvironment,
        memory::{RecordingFeed, RecordingPublisher},
    },
    domain::{EventFilter, PageRequest},
    invocation::Invocation,
    ports::Ports,
    routes::RoutesTable,
    rule_event::{PresenceInput, RuleEvent},
    testing::{
        api_request, command_response_event, env, hello_event, reported_event, rule_event,
        telemetry_event,
    },
};

use meter::{Call, Meter};

/// What one function was seen doing: per store, read and/or write; topics published;
/// whether it put events on the feed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Used {
    stores: BTreeMap<String, BTreeSet<char>>,
    topics: BTreeSet<String>,
    feed: bool,
}

impl Used {
    fn access(&self) -> BTreeMap<String, String> {
        self.stores
            .iter()
            .map(|(store, modes)| (store.clone(), modes.iter().collect()))
            .collect()
    }
}

/// The store of a table named `<prefix>-<store>`.
fn store_of(table: &str, prefix: &str) -> String {
    table
        .strip_prefix(prefix)
        .and_then(|s| s.strip_prefix('-'))
        .unwrap_or(table)
        .to_string()
}

/// The (table, mode) pairs one DynamoDB call touches.
fn touches(call: &Call) -> Vec<(String, char)> {
    let table = |v: &Value| v["TableName"].as_str().unwrap_or("").to_string();
    let mode = match call.op.as_str() {
        "GetItem" | "Query" | "Scan" | "BatchGetItem" | "TransactGetItems" | "DescribeTable" => 'r',
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" => 'w',
        "TransactWriteItems" => {
            let items = call.request["TransactItems"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            return items
                .iter()
                .flat_map(|item| {
                    item.as_object().into_iter().flatten().map(|(kind, body)| {
                        (
                            table(body),
                            if kind == "ConditionCheck" { 'r' } else { 'w' },
                        )
                    })
                })
                .collect();
        }
        other => panic!("a DynamoDB operation this test does not classify: {other}"),
    };
    match call.op.as_str() {
        "BatchWriteItem" | "BatchGetItem" => call.request["RequestItems"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(t, _)| (t.clone(), mode))
            .collect(),
        _ => vec![(table(&call.request), mode)],
    }
}

struct Run {
    meter: Meter,
    prefix: String,
    ports: Ports,
    publisher: Arc<RecordingPublisher>,
    /// How many of the publisher's records are already filed.
    published: usize,
    feed: Arc<RecordingFeed>,
    /// How many of the feed's events are already filed.
    fed: usize,
    used: BTreeMap<String, Used>,
    now_ms: i64,
    /// The local CA and certificate book of the certificate routes.
    _ca_dir: tempfile::TempDir,
}

impl Run {
    async fn start() -> Run {
        let endpoint = std::env::var("MIR_TEST_AWS_ENDPOINT")
            .expect("MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start)");
        let meter = Meter::start(&endpoint).await;
        let prefix = format!("grants-{}", uuid::Uuid::new_v4().simple());
        let env = AwsEnvironment::for_endpoint(&meter.url, &prefix, Default::default())
            .await
            .expect("tables");
        meter.take(); // the tables' creation is not a function's
        let publisher = Arc::new(RecordingPublisher::new());
        let ca_dir = tempfile::tempdir().expect("tmp");
        let certificates = LocalCertificates {
            ca: Arc::new(LocalCa::load_or_create(&ca_dir.path().join("ca")).expect("ca")),
            book: Arc::new(
                CertificateBook::open(&ca_dir.path().join("certificates.json")).expect("book"),
            ),
            endpoint: Arc::new(std::sync::OnceLock::new()),
            broker: Arc::new(std::sync::OnceLock::new()),
        };
        let feed = Arc::new(RecordingFeed::new());
        let ports = Ports {
            publisher: Some(publisher.clone()),
            certificates: Some(Arc::new(certificates)),
            feed: Some(feed.clone()),
            ..env.ports
        };
        Run {
            meter,
            prefix,
            ports,
            publisher,
            published: 0,
            feed,
            fed: 0,
            used: BTreeMap::new(),
            now_ms: 1_790_000_000_000,
            _ca_dir: ca_dir,
        }
    }

    /// Files what the last invocation did under `function`.
    fn record(&mut self, function: &str) {
        let used = self.used.entry(function.to_string()).or_default();
        for call in self.meter.take() {
            for (table, mode) in touches(&call) {
                used.stores
                    .entry(store_of(&table, &self.prefix))
                    .or_default()
                    .insert(mode);
            }
        }
        let published = self.publisher.published();
        let new = published.get(self.published..).unwrap_or_default().to_vec();
        self.published = published.len();
        for (topic, _) in new {
            let (_, suffix) = mir_proto::topics::parse(&topic).expect("a device topic");
            used.topics.insert(suffix.suffix().to_string());
        }
        let fed = self.feed.published().len();
        used.feed |= fed > self.fed;
        self.fed = fed;
    }

    /// The ports of a fresh process: each function is its own Lambda with its own
    /// schema cache, so that no function's reads hide behind another's.
    fn fresh(&self) -> Ports {
        Ports {
            cache: Arc::new(mir_shared::service::SchemaCache::default()),
            ..self.ports.clone()
        }
    }

    fn tick(&mut self) -> i64 {
        self.now_ms += 1_000;
        self.now_ms
    }

    async fn rule(&mut self, function: &str, ev: RuleEvent) {
        let Some(Function::Rule(f)) = registry::function(function) else {
            panic!("{function} is not a rule function");
        };
        // The outcome does not matter here (an unknown schema is retried), the calls do.
        let _ = f(&self.fresh(), &ev).await;
        self.record(function);
    }

    async fn lifecycle(&mut self, id: &str, kind: &str) {
        let ms = self.tick();
        let ev: PresenceInput = serde_json::from_value(json!({
            "clientId": id, "timestamp": ms, "eventType": kind,
            "sessionIdentifier": format!("s-{ms}"), "principalIdentifier": "p",
            "versionNumber": 0, "disconnectReason": "CONNECTION_LOST"
        }))
        .expect("lifecycle event");
        let Some(Function::Presence { lifecycle, .. }) = registry::function("presence") else {
            panic!("presence is the lifecycle function");
        };
        let _ = lifecycle(&self.fresh(), &ev).await;
        self.record("presence");
    }

    async fn sweep(&mut self) {
        let Some(Function::Presence { schedule, .. }) = registry::function("presence") else {
            panic!("presence is the lifecycle function");
        };
        let later = Utc
            .timestamp_millis_opt(self.now_ms + 86_400_000)
            .single()
            .expect("time");
        let _ = schedule(&self.fresh(), later).await;
        self.record("presence");
    }

    /// A function run by its schedule, at `at`.
    async fn scheduled(&mut self, function: &str, at: chrono::DateTime<Utc>) {
        let Some(Function::Schedule(f)) = registry::function(function) else {
            panic!("{function} is not a scheduled function");
        };
        let _ = f(&self.fresh(), at).await;
        self.record(function);
    }

    /// The function of the events stream, with every event stored so far (as the stream
    /// would bring them). Reading them is the test's, not the function's.
    async fn stream(&mut self, function: &str) {
        let Some(Function::Stream(f)) = registry::function(function) else {
            panic!("{function} is not a function of the events stream");
        };
        let page = PageRequest {
            limit: 100,
            token: None,
        };
        let events = self
            .ports
            .events()
            .expect("events")
            .list(&EventFilter::default(), &page)
            .await
            .expect("stored events")
            .items;
        assert!(!events.is_empty(), "the device's life recorded events");
        self.meter.take();
        let _ = f(&self.fresh(), events).await;
        self.record(function);
    }

    /// One API request; returns its status and JSON body.
    async fn api(
        &mut self,
        function: &str,
        route: &str,
        path: &str,
        query: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let Some(Function::Api(f)) = registry::function(function) else {
            panic!("{function} is not an API function");
        };
        // The stores' clock is the wall clock: so is the invocation's deadline.
        let invocation = Invocation::starting(Utc::now(), std::time::Duration::from_secs(5));
        let resp = f(
            &self.fresh(),
            &api_request(route, path, query, body),
            invocation,
        )
        .await;
        self.record(function);
        mir_shared::testing::response_json(&resp)
    }
}

fn heartbeat(id: &str, ms: i64) -> RuleEvent {
    let hb = Heartbeat {
        interval_sec: 30,
        ..Default::default()
    };
    rule_event(id, &hb.encode_to_vec(), ms)
}

/// routes.json's grants of `f`: table access, the topics it may publish, whether it may
/// put events on the feed.
fn granted(
    f: &mir_shared::routes::FunctionRoute,
) -> (BTreeMap<String, String>, BTreeSet<String>, bool) {
    let mut stores = BTreeMap::new();
    let mut topics = BTreeSet::new();
    let mut feed = false;
    for (k, v) in &f.access {
        match (k.as_str(), v) {
            ("publish", Value::Array(list)) => {
                topics.extend(list.iter().filter_map(Value::as_str).map(str::to_string))
            }
            ("feed", Value::Bool(b)) => feed = *b,
            // The bus only where the deployment turns the telemetry feed on: the
            // world of this test does not.
            ("certificates" | "telemetryFeed", _) => {}
            (store, Value::String(rw)) => {
                stores.insert(store.to_string(), rw.clone());
            }
            other => panic!("{}: unexpected access entry {other:?}", f.name),
        }
    }
    (stores, topics, feed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
async fn routes_json_grants_each_function_exactly_what_its_handler_uses() {
    let mut r = Run::start().await;
    // A device's life, then devices the platform has never seen.
    let t = r.tick();
    r.rule("hello", hello_event("g1", t)).await;
    r.lifecycle("g1", "connected").await;
    for id in ["g1", "g9"] {
        let t = r.tick();
        r.rule("heartbeat", heartbeat(id, t)).await;
    }
    let point = env(r.now_ms * 1_000_000, 21).encode_to_vec();
    for id in ["g1", "g8"] {
        let t = r.tick();
        let items = [("schema.v1.Env", point.clone(), 1)];
        r.rule("telemetry", telemetry_event(id, &items, t)).await;
    }
    for id in ["g1", "g7"] {
        let t = r.tick();
        let ev = reported_event(id, "schema.v1.DataRateProp", vec![8, 5], t * 1_000_000, t);
        r.rule("reported", ev).await;
    }
    // The operators' device routes.
    let dev = "/v1/devices";
    r.api("api-devices", "GET /v1/devices", dev, "", None).await;
    let g3 = json!({"meta": {"name": "g3"}, "spec": {"deviceId": "g3"}});
    r.api("api-devices", "POST /v1/devices", dev, "", Some(g3.clone()))
        .await;
    let one = "/v1/devices/g3";
    r.api("api-devices", "GET /v1/devices/{deviceId}", one, "", None)
        .await;
    r.api(
        "api-devices",
        "PUT /v1/devices/{deviceId}",
        one,
        "",
        Some(g3),
    )
    .await;
    let desired = json!({"desired": {"schema.v1.DataRateProp": {"sec": 4}}});
    let patch = json!({"meta": {"labels": {"a": "b"}}, "properties": desired});
    let (status, body) = r
        .api(
            "api-devices",
            "PATCH /v1/devices/{deviceId}",
            "/v1/devices/g1",
            "",
            Some(patch),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A device with desired properties and no schema yet.
    let g4 = json!({"meta": {"name": "g4"}, "spec": {"deviceId": "g4"}, "properties": desired});
    r.api("api-devices", "POST /v1/devices", dev, "", Some(g4))
        .await;
    // Certificates: two for g1, and the rotation once the first's grace period is over.
    for _ in 0..2 {
        let route = "POST /v1/devices/{deviceId}/certificate";
        let (status, body) = r
            .api(
                "api-devices",
                route,
                "/v1/devices/g1/certificate",
                "",
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    r.scheduled(
        "certificate-rotation",
        Utc::now() + chrono::Duration::hours(25),
    )
    .await;
    let refresh = "/v1/devices/g1/schema/refresh";
    let route = "POST /v1/devices/{deviceId}/schema/refresh";
    r.api("api-devices", route, refresh, "", None).await;
    r.api(
        "api-devices",
        "DELETE /v1/devices/{deviceId}",
        one,
        "",
        None,
    )
    .await;
    // Devices asking for their desired properties: with a schema, without, unknown.
    for id in ["g1", "g4", "g6"] {
        let t = r.tick();
        r.rule("desired", rule_event(id, b"", t)).await;
    }
    // Its schema arrives: the desired properties set before it follow.
    let t = r.tick();
    r.rule("hello", hello_event("g4", t)).await;
    // Commands and configuration.
    let ids = "ids=g1";
    r.api(
        "api-commands",
        "GET /v1/commands",
        "/v1/commands",
        ids,
        None,
    )
    .await;
    let cmd = json!({"targets": {"ids": ["g1"]}, "name": "schema.v1.ActivateHVACCmd", "payload": {"durationSec": 1}, "noWait": true});
    let (status, sent) = r
        .api(
            "api-commands",
            "POST /v1/commands",
            "/v1/commands",
            "",
            Some(cmd),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    let command_id = sent["results"][0]["commandId"]
        .as_str()
        .unwrap_or("none")
        .to_string();
    let path = format!("/v1/commands/{command_id}");
    r.api(
        "api-commands",
        "GET /v1/commands/{commandId}",
        &path,
        "",
        None,
    )
    .await;
    let t = r.tick();
    let answer = command_response_event("g1", &command_id, true, t);
    r.rule("command-response", answer).await;
    r.api("api-config", "GET /v1/config", "/v1/config", ids, None)
        .await;
    let cfg = json!({"targets": {"ids": ["g1"]}, "name": "schema.v1.DataRateProp", "payload": {"sec": 6}});
    let (status, body) = r
        .api("api-config", "POST /v1/config", "/v1/config", "", Some(cfg))
        .await;
    assert_eq!(status, 200, "{body}");
    // Reading.
    r.api(
        "api-telemetry",
        "GET /v1/telemetry",
        "/v1/telemetry",
        ids,
        None,
    )
    .await;
    let q = "ids=g1&name=schema.v1.Env&since=1h";
    r.api(
        "api-telemetry",
        "GET /v1/telemetry/query",
        "/v1/telemetry/query",
        q,
        None,
    )
    .await;
    r.api("api-events", "GET /v1/events", "/v1/events", "", None)
        .await;
    // A module's custom event.
    let custom =
        json!({"deviceId": "g1", "name": "DoorOpened", "message": "open", "payload": {"door": 2}});
    let (status, body) = r
        .api(
            "api-events",
            "POST /v1/events",
            "/v1/events",
            "",
            Some(custom),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Presence: a disconnect, an unknown device's connect, the sweep.
    r.lifecycle("g1", "disconnected").await;
    r.lifecycle("g5", "connected").await;
    r.sweep().await;
    // The feed: every event of that life, off the events stream.
    r.stream("event-feed").await;

    let routes = RoutesTable::load().expect("routes.json");
    let mut wrong = Vec::new();
    for f in &routes.functions {
        let used = r.used.get(&f.name).cloned().unwrap_or_default();
        let (stores, topics, feed) = granted(f);
        if used.access() != stores {
            wrong.push(format!(
                "{}: routes.json grants {stores:?}, the handler uses {:?}",
                f.name,
                used.access()
            ));
        }
        if used.topics != topics {
            wrong.push(format!(
                "{}: routes.json lets it publish {topics:?}, the handler publishes {:?}",
                f.name, used.topics
            ));
        }
        if used.feed != feed {
            wrong.push(format!(
                "{}: routes.json lets it put events on the feed: {feed}, the handler does: {}",
                f.name, used.feed
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
