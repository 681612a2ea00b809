//! The SDK's streams against a scripted server-sent events server: a dropped
//! connection is reopened with `Last-Event-ID` and a repeated id is yielded once; the
//! CLI's contexts choose the API and its token; an aws context's streams are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{http::HeaderMap, response::IntoResponse, routing::get, Router};
use futures::StreamExt;

use mir_module_sdk::{ClientError, FeedEvent, FeedFilter, Module, ModuleError};

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

#[tokio::test]
async fn an_aws_contexts_streams_are_refused_and_an_unknown_context_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cli.yaml");
    std::fs::write(
        &config,
        "currentContext: prod\ncontexts:\n- name: prod\n  api: https://abc.execute-api.eu-west-1.amazonaws.com\n  kind: aws\n  region: eu-west-1\n",
    )
    .unwrap();
    let module = Module::builder().config_file(&config).build().unwrap();
    let refused = module.events(&FeedFilter::default()).await.err();
    assert!(
        matches!(
            refused,
            Some(ModuleError::Client(ClientError::Unsupported(_)))
        ),
        "{refused:?}"
    );
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
