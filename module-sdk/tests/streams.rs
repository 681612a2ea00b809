//! The SDK's streams against a scripted server-sent events server: a dropped
//! connection is reopened with `Last-Event-ID` and a repeated id is yielded once; the
//! CLI's contexts choose the API and its token; on an aws context the event stream
//! polls `GET /v1/events` (signed; a retried poll logged as a warning) and the telemetry
//! and worker streams are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{http::HeaderMap, response::IntoResponse, routing::get, Router};
use futures::StreamExt;

use mir_module_sdk::{
    AwsUnsupported, ClientError, FeedEvent, FeedFilter, Module, ModuleError, TelemetryFilter,
};

const WAIT: Duration = Duration::from_secs(10);

fn event(id: &str) -> String {
    let e = serde_json::json!({
        "id": id, "time": "2026-03-01T12:00:00Z", "type": "Normal",
        "reason": "DeviceOnline", "deviceId": "w1", "message": "online"
    });
    format!("id: {id}\nevent: DeviceOnline\ndata: {e}\n\n")
}

/// What the server saw of each connection: its `Last-Event-ID` and bearer token.
type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

/// The first connection sends e1, e2 and ends; the next ones send e2 again, then e3.
async fn server() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = Router::new().route(
        "/v1/events/watch",
        get(move |headers: HeaderMap| {
            let s = s.clone();
            async move {
                let header = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .map(String::from)
                };
                let mut seen = s.lock().unwrap();
                seen.push((header("last-event-id"), header("authorization")));
                let body = if seen.len() == 1 {
                    event("e1") + &event("e2")
                } else {
                    event("e2") + &event("e3")
                };
                ([("content-type", "text/event-stream")], body).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

async fn next(s: &mut mir_module_sdk::stream::Stream<FeedEvent>) -> String {
    match tokio::time::timeout(WAIT, s.next()).await {
        Ok(Some(Ok(e))) => e.id,
        other => panic!("no event: {other:?}"),
    }
}

#[tokio::test]
async fn a_dropped_stream_reconnects_with_last_event_id_and_yields_a_repeated_id_once() {
    let (addr, seen) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cli.yaml");
    std::fs::write(
        &config,
        format!(
            "currentContext: hub\ncontexts:\n- name: hub\n  api: http://{addr}\n  kind: local\n  token: from-the-context\n"
        ),
    )
    .unwrap();
    let module = Module::builder().config_file(&config).build().unwrap();
    let mut events = module.events(&FeedFilter::default()).await.unwrap();
    let ids = [
        next(&mut events).await,
        next(&mut events).await,
        next(&mut events).await,
    ];
    assert_eq!(ids, ["e1", "e2", "e3"], "e2 came twice, yielded once");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], (None, Some("Bearer from-the-context".into())));
    assert_eq!(
        seen[1].0.as_deref(),
        Some("e2"),
        "resumed after the last event"
    );
}

#[tokio::test]
async fn an_explicit_token_wins_over_the_contexts() {
    let (addr, seen) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let module = Module::builder()
        .config_file(dir.path().join("none.yaml"))
        .api(format!("http://{addr}"))
        .token("explicit")
        .build()
        .unwrap();
    let mut events = module.events(&FeedFilter::default()).await.unwrap();
    assert_eq!(next(&mut events).await, "e1");
    assert_eq!(
        seen.lock().unwrap()[0].1.as_deref(),
        Some("Bearer explicit")
    );
}

/// A fake API Gateway: `GET /v1/events` gives `old` until it has been asked once, then
/// `e2`, `e1` (newest first) and `old` again; it records each `authorization` header.
async fn fake_api_gateway() -> (SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let s = seen.clone();
    let at = |secs: i64| (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339();
    let doc = move |id: &str, secs: i64| {
        serde_json::json!({
            "id": id, "time": at(secs), "type": "Normal", "reason": "DeviceOnline",
            "deviceId": "w1", "message": id
        })
    };
    let old = doc("old", -5);
    let (e1, e2) = (doc("e1", 1), doc("e2", 2));
    let app = Router::new().route(
        "/v1/events",
        get(move |headers: HeaderMap| {
            let s = s.clone();
            let (old, e1, e2) = (old.clone(), e1.clone(), e2.clone());
            async move {
                let mut seen = s.lock().unwrap();
                seen.push(
                    headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(String::from),
                );
                let events = if seen.len() == 1 {
                    vec![old]
                } else {
                    vec![e2, e1, old]
                };
                axum::Json(serde_json::json!({ "events": events }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

#[tokio::test]
async fn on_an_aws_context_events_are_polled_signed_and_telemetry_and_workers_are_refused() {
    for (k, v) in [
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ] {
        std::env::set_var(k, v);
    }
    let (addr, seen) = fake_api_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cli.yaml");
    std::fs::write(
        &config,
        format!("currentContext: prod\ncontexts:\n- name: prod\n  api: http://{addr}\n  kind: aws\n  region: eu-west-1\n"),
    )
    .unwrap();
    let module = Module::builder().config_file(&config).build().unwrap();
    let mut events = module.events(&FeedFilter::default()).await.unwrap();
    let ids = [next(&mut events).await, next(&mut events).await];
    assert_eq!(ids, ["e1", "e2"], "oldest first; old was there before");
    let auth = seen.lock().unwrap()[0].clone();
    assert!(
        auth.as_deref()
            .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/")),
        "{auth:?}"
    );

    let telemetry = module.telemetry(&TelemetryFilter::default()).await.err();
    assert!(
        matches!(
            telemetry,
            Some(ModuleError::Client(ClientError::Unsupported(
                AwsUnsupported::TelemetryWatch
            )))
        ),
        "{telemetry:?}"
    );
    let worker = module.worker("alerts", &FeedFilter::default()).await.err();
    assert!(
        matches!(
            worker,
            Some(ModuleError::Client(ClientError::Unsupported(
                AwsUnsupported::WorkerGroup
            )))
        ),
        "{worker:?}"
    );
    assert!(
        worker.is_some_and(|e| e.to_string().contains("MirModule")),
        "the refusal says what to use instead"
    );
}

#[tokio::test]
async fn an_unknown_context_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cli.yaml");
    std::fs::write(
        &config,
        "currentContext: prod\ncontexts:\n- name: prod\n  api: https://abc.execute-api.eu-west-1.amazonaws.com\n  kind: aws\n  region: eu-west-1\n",
    )
    .unwrap();
    let unknown = Module::builder()
        .config_file(&config)
        .context("staging")
        .build()
        .err();
    assert!(
        matches!(&unknown, Some(ModuleError::Config { source }) if source.to_string().contains("no context \"staging\"")),
        "{unknown:?}"
    );
}

/// The log lines written while it runs.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn on_an_aws_context_a_retried_poll_is_logged_as_a_warning_and_the_stream_goes_on() {
    for (k, v) in [
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ] {
        std::env::set_var(k, v);
    }
    let calls = Arc::new(Mutex::new(0usize));
    let time = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let app = Router::new().route(
        "/v1/events",
        get(move || {
            let calls = calls.clone();
            let time = time.clone();
            async move {
                let n = {
                    let mut c = calls.lock().unwrap();
                    *c += 1;
                    *c
                };
                match n {
                    1 => axum::Json(serde_json::json!({"events": []})).into_response(),
                    2 => (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(serde_json::json!({"error": "busy"})),
                    )
                        .into_response(),
                    _ => axum::Json(serde_json::json!({"events": [{
                        "id": "e1", "time": time, "type": "Normal", "reason": "DeviceOnline",
                        "deviceId": "w1", "message": "online"
                    }]}))
                    .into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cli.yaml");
    std::fs::write(
        &config,
        format!("currentContext: prod\ncontexts:\n- name: prod\n  api: http://{addr}\n  kind: aws\n  region: eu-west-1\n"),
    )
    .unwrap();
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let module = Module::builder().config_file(&config).build().unwrap();
    let mut events = module.events(&FeedFilter::default()).await.unwrap();
    assert_eq!(next(&mut events).await, "e1");
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("WARN")
            && text.contains("module stream: the poller's notice")
            && text.contains("busy; polling again in 2s"),
        "{text}"
    );
}
