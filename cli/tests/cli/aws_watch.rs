//! `mir evt watch` on an aws context against a fake API Gateway (in-process, on
//! 127.0.0.1:0): `GET /v1/events` newest first in pages of [`PAGE`] (whatever `limit`
//! asks), with `since`, `nextToken`; `GET /v1/devices` with `labels`. It records each
//! request's query and `authorization` header.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    extract::{Query, State},
    http::HeaderMap,
    routing::get,
    Json, Router,
};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::*;

/// Events per page, whatever `limit` asks.
const PAGE: usize = 2;
const LINE_WAIT: Duration = Duration::from_secs(15);

#[derive(Default)]
struct Api {
    /// Stored events (any order).
    events: Vec<Value>,
    /// (path, query, authorization) of each request.
    requests: Vec<(String, HashMap<String, String>, Option<String>)>,
}

type Shared = Arc<Mutex<Api>>;

fn record(api: &Shared, path: &str, q: &HashMap<String, String>, h: &HeaderMap) {
    let auth = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    api.lock()
        .unwrap()
        .requests
        .push((path.into(), q.clone(), auth));
}

async fn events(
    State(api): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Json<Value> {
    record(&api, "/v1/events", &q, &h);
    let since: Option<DateTime<Utc>> = q.get("since").map(|s| s.parse().unwrap());
    let mut events: Vec<Value> = api
        .lock()
        .unwrap()
        .events
        .iter()
        .filter(|e| {
            since.is_none_or(|s| {
                e["time"]
                    .as_str()
                    .unwrap()
                    .parse::<DateTime<Utc>>()
                    .unwrap()
                    >= s
            })
        })
        .cloned()
        .collect();
    events.sort_by(|a, b| b["time"].as_str().cmp(&a["time"].as_str()));
    let from: usize = q.get("nextToken").map_or(0, |t| t.parse().unwrap());
    let page: Vec<Value> = events.iter().skip(from).take(PAGE).cloned().collect();
    let mut body = json!({ "events": page });
    if from + PAGE < events.len() {
        body["nextToken"] = json!((from + PAGE).to_string());
    }
    Json(body)
}

/// w1 (default, site=roof) and p2 (lab, no labels); `labels=site=roof` selects w1.
async fn devices(
    State(api): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Json<Value> {
    record(&api, "/v1/devices", &q, &h);
    let w1 = json!({"meta": {"name": "w1", "namespace": "default", "labels": {"site": "roof"}}, "spec": {"deviceId": "w1"}});
    let p2 = json!({"meta": {"name": "p2", "namespace": "lab"}, "spec": {"deviceId": "p2"}});
    let devices = match q.get("labels").map(String::as_str) {
        Some("site=roof") => vec![w1],
        Some(_) => vec![],
        None => vec![w1, p2],
    };
    Json(json!({ "devices": devices }))
}

async fn fake_api() -> (SocketAddr, Shared) {
    let api = Shared::default();
    let app = Router::new()
        .route("/v1/events", get(events))
        .route("/v1/devices", get(devices))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, api)
}

/// An event of `device` (namespace from the fake's devices) `ms` milliseconds from
/// `base`, its message its id.
fn event(id: &str, device: &str, base: DateTime<Utc>, ms: i64) -> Value {
    let namespace = if device == "p2" { "lab" } else { "default" };
    json!({
        "id": id, "time": (base + chrono::Duration::milliseconds(ms)).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "type": "Normal", "reason": "DeviceOnline", "deviceId": device,
        "name": device, "namespace": namespace, "message": id
    })
}

fn push(api: &Shared, events: Vec<Value>) {
    api.lock().unwrap().events.extend(events);
}

/// `mir evt watch ARGS` on an aws context of the fake API, with credentials from the
/// environment; its stdout lines on a channel.
fn watch(
    dir: &Path,
    addr: SocketAddr,
    args: &[&str],
) -> (
    mir_test_support::Background,
    mpsc::UnboundedReceiver<String>,
) {
    let api = format!("http://{addr}");
    let add = [
        "ctx",
        "add",
        "prod",
        "--kind",
        "aws",
        "--region",
        "eu-west-1",
        "--api",
        &api,
    ];
    let run = mir(dir, &add).run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let home = dir.join("home");
    let mut all = vec!["--context", "prod", "evt", "watch"];
    all.extend(args);
    let mut bg = mir(dir, &all)
        .envs([
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent/config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
            ("HOME", home.to_str().unwrap()),
            ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ])
        .spawn();
    let stdout = bg.take_stdout().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (bg, rx)
}

async fn next_line(rx: &mut mpsc::UnboundedReceiver<String>, what: &str) -> String {
    match tokio::time::timeout(LINE_WAIT, rx.recv()).await {
        Ok(Some(line)) => line,
        other => panic!("no {what} line within {LINE_WAIT:?}: {other:?}"),
    }
}

/// Nothing more within 2.5 s (two polls or more).
async fn quiet(rx: &mut mpsc::UnboundedReceiver<String>) {
    if let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(2_500), rx.recv()).await {
        panic!("unexpected line: {line}");
    }
}

/// The message column of a table row (the event's id here).
fn message(line: &str) -> &str {
    line.rsplit(' ').next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evt_watch_on_an_aws_context_polls_signed_pages_printing_each_event_once_oldest_first() {
    let (addr, api) = fake_api().await;
    let now = Utc::now();
    push(&api, vec![event("before", "w1", now, -5_000)]);
    let dir = tempfile::tempdir().unwrap();
    let (bg, mut rx) = watch(dir.path(), addr, &["--namespace", "default"]);
    let header = next_line(&mut rx, "header").await;
    assert!(header.starts_with("TIME "), "{header}");

    push(
        &api,
        vec![
            event("a1", "w1", now, 1_000),
            event("l1", "p2", now, 1_500),
            event("a2", "w1", now, 2_000),
            event("a3", "w1", now, 3_000),
        ],
    );
    let mut printed = Vec::new();
    for _ in 0..3 {
        printed.push(message(&next_line(&mut rx, "event").await).to_string());
    }
    assert_eq!(
        printed,
        ["a1", "a2", "a3"],
        "oldest first, lab's l1 left out"
    );
    // Visible late: older than what was printed, within the margin.
    push(&api, vec![event("late", "w1", now, 500)]);
    assert_eq!(message(&next_line(&mut rx, "late event").await), "late");
    quiet(&mut rx).await;
    let out = bg.interrupt();
    assert_eq!(out.code, Some(0), "{out:?}");

    let requests = api.lock().unwrap().requests.clone();
    let polls: Vec<_> = requests.iter().filter(|r| r.0 == "/v1/events").collect();
    assert!(polls.len() >= 4, "{polls:?}");
    for (_, query, auth) in &polls {
        assert!(
            auth.as_deref()
                .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/")),
            "{auth:?}"
        );
        assert!(query.contains_key("since"), "{query:?}");
        assert!(!query.contains_key("namespace"), "{query:?}");
    }
    assert!(
        polls.iter().any(|(_, q, _)| q.contains_key("nextToken")),
        "the pages were followed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evt_watch_on_an_aws_context_fills_a_label_filters_labels_and_says_when_it_fell_behind() {
    let (addr, api) = fake_api().await;
    let dir = tempfile::tempdir().unwrap();
    let (bg, mut rx) = watch(dir.path(), addr, &["-l", "site=roof", "-o", "json"]);
    // No header in JSON: wait until the baseline poll was made.
    eventually(Duration::from_secs(10), "the baseline poll", || {
        api.lock()
            .unwrap()
            .requests
            .iter()
            .any(|r| r.0 == "/v1/events")
    })
    .await;
    let now = Utc::now();
    // 22 events at once: 10 pages of 2 reach the 20 newest.
    let burst: Vec<Value> = (0..22)
        .map(|i| event(&format!("b{i:02}"), "w1", now, i * 10))
        .collect();
    push(&api, burst);
    let mut ids = Vec::new();
    for _ in 0..20 {
        let line = next_line(&mut rx, "event").await;
        let doc: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(doc["labels"], json!({"site": "roof"}), "{doc}");
        ids.push(doc["id"].as_str().unwrap().to_string());
    }
    let expected: Vec<String> = (2..22).map(|i| format!("b{i:02}")).collect();
    assert_eq!(ids, expected);
    push(
        &api,
        vec![
            event("p2-event", "p2", now, 300),
            event("last", "w1", now, 400),
        ],
    );
    let line = next_line(&mut rx, "last event").await;
    assert!(line.contains(r#""id":"last""#), "{line}");
    quiet(&mut rx).await;
    let out = bg.interrupt();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stderr
            .matches("event stream: fell behind: events between")
            .count(),
        1,
        "{}",
        out.stderr
    );
    let requests = api.lock().unwrap().requests.clone();
    let listed = requests.iter().find(|r| r.0 == "/v1/devices").unwrap();
    assert_eq!(
        listed.1.get("labels").map(String::as_str),
        Some("site=roof")
    );
}
