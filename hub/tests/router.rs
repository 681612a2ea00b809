//! The hub's HTTP router in-process (`tower::ServiceExt::oneshot`, no socket): the API
//! Gateway routes of routes.json dispatched to the real `api-*` handlers over a
//! temporary embedded store, and the router's own answers for what no route matches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::{
    body::Body,
    http::{header::CONTENT_TYPE, Method, Request, StatusCode},
};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use mir_hub::{
    core::{Core, DeadLetters, Rules},
    http::{self, HttpState},
};
use mir_shared::{
    adapters::{embedded::EmbeddedStore, memory::RecordingPublisher},
    ports::Ports,
    routes::RoutesTable,
};

/// The router as `Hub::start` builds it, over an embedded store in a temporary dir.
struct App {
    router: axum::Router,
    _dir: tempfile::TempDir,
}

impl App {
    fn new() -> App {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("mir.redb")).unwrap();
        let routes = Arc::new(RoutesTable::load().unwrap());
        let (ports, feed) = mir_hub::feed::Feed::wire(
            Ports {
                publisher: Some(Arc::new(RecordingPublisher::new())),
                ..Ports::with_stores(store.clone())
            },
            mir_hub::feed::FEED_CAPACITY,
            Default::default(),
        )
        .unwrap();
        let core = Arc::new(Core::new(
            ports,
            Rules::from_routes(&routes).unwrap(),
            Some(store),
            DeadLetters::new(dir.path().join("dead-letters.jsonl")),
        ));
        App {
            router: http::router(HttpState {
                core,
                routes,
                access: mir_hub::access::Access::new(&Default::default()),
                broker: None,
                dispatcher: None,
                feed,
            }),
            _dir: dir,
        }
    }

    /// One request; the status and the body parsed as JSON (every answer is JSON).
    async fn call(&self, method: Method, path: &str, body: Option<&str>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(CONTENT_TYPE, "application/json")
            .header("host", "localhost")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "application/json",
            "{path}"
        );
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, value)
    }
}

#[tokio::test]
async fn listing_the_devices_of_an_empty_hub_gives_an_empty_list() {
    let app = App::new();
    let (status, body) = app.call(Method::GET, "/v1/devices", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"devices": []}));
}

#[tokio::test]
async fn a_device_created_with_post_is_read_back_with_get_and_listed() {
    let app = App::new();
    let twin = json!({
        "meta": {"name": "w1", "namespace": "lab", "labels": {"site": "roof"}},
        "spec": {"deviceId": "w1"}
    });
    let (status, created) = app
        .call(Method::POST, "/v1/devices", Some(&twin.to_string()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"]["deviceId"], "w1");

    let (status, got) = app.call(Method::GET, "/v1/devices/w1", None).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got, created);
    assert_eq!(got["apiVersion"], "mir/v1alpha");
    assert_eq!(got["meta"]["namespace"], "lab");
    assert_eq!(got["meta"]["labels"], json!({"site": "roof"}));

    let (status, list) = app
        .call(Method::GET, "/v1/devices?namespaces=lab", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["devices"], json!([created]));
}

#[tokio::test]
async fn an_unknown_path_is_a_404_with_a_json_error() {
    let app = App::new();
    let (status, body) = app.call(Method::GET, "/v1/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"error": "no route GET /v1/nothing-here"}));
}

#[tokio::test]
async fn a_wrong_method_on_a_known_path_is_a_405() {
    let app = App::new();
    let (status, body) = app.call(Method::DELETE, "/v1/devices", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        body,
        json!({"error": "DELETE is not allowed on /v1/devices"})
    );
}

#[tokio::test]
async fn a_malformed_json_body_is_a_400_naming_the_problem() {
    let app = App::new();
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/devices",
            Some(r#"{"meta": {"name": "w1""#),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with("invalid JSON body: EOF while parsing an object"),
        "{error}"
    );
    let (status, list) = app.call(Method::GET, "/v1/devices", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!({"devices": []}), "nothing was created");
}
