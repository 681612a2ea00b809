//! The hub's HTTP server: the routes of API Gateway (from the routes table), turned
//! into the same payload v2 events and handed to the same `api-*` handlers through the
//! [`registry`](crate::registry), each with API Gateway's 29 s as its deadline; and
//! `GET /healthz` (200 when the store answers, else 503), `GET /metrics`
//! (Prometheus), `GET /v1/events/watch`, `GET /v1/telemetry/watch`,
//! `GET /v1/heartbeats/watch` and `GET /v1/schemas/watch` (the [`feed`](crate::feed),
//! server-sent events), `GET /v1/routes/watch` ([`custom_routes`](crate::custom_routes))
//! and the browser [`console`](crate::console) at `/`. Every request passes
//! [`access::guard`](crate::access::guard) first.

use std::sync::Arc;

use aws_lambda_events::{
    apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse},
    encodings::Body as LambdaBody,
};
use axum::{
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use base64::Engine;

use mir_shared::{
    api,
    invocation::{Invocation, API_GATEWAY_LIMIT},
    routes::RoutesTable,
};

use axum::routing::get;
use mir_broker::BrokerHandle;

use crate::access::Access;
use crate::core::Core;
use crate::delivery::Dispatcher;
use crate::registry::{self, Function};

#[derive(Clone)]
pub struct HttpState {
    pub core: Arc<Core>,
    pub routes: Arc<RoutesTable>,
    pub access: Access,
    /// Read at each scrape for the connection and session gauges.
    pub broker: Option<BrokerHandle>,
    /// Read at each scrape for the invocations in flight.
    pub dispatcher: Option<Arc<Dispatcher>>,
    /// The event feed the watch route streams.
    pub feed: crate::feed::Feed,
}

pub fn router(state: HttpState) -> axum::Router {
    let access = state.access.clone();
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(crate::feed::watch::PATH, get(crate::feed::watch::watch))
        .route(crate::custom_routes::PATH, get(crate::custom_routes::watch))
        .route(
            mir_shared::domain::telemetry_feed::TELEMETRY_WATCH_PATH,
            get(crate::feed::telemetry::watch),
        )
        .route(
            mir_shared::domain::device_stream::HEARTBEATS_WATCH_PATH,
            get(crate::feed::devices::heartbeats),
        )
        .route(
            mir_shared::domain::device_stream::SCHEMAS_WATCH_PATH,
            get(crate::feed::devices::schemas),
        )
        .route("/", get(crate::console::index))
        .route("/index.html", get(crate::console::index))
        .route(crate::console::CONFIG_PATH, get(crate::console::config))
        .route("/assets/{*path}", get(crate::console::asset))
        .fallback(dispatch)
        .layer(axum::middleware::from_fn_with_state(
            access,
            crate::access::guard,
        ))
        .with_state(state)
}

async fn healthz(State(state): State<HttpState>) -> Response {
    let store = match state.core.ports.twins() {
        Ok(twins) => state.core.metrics.probe_store(twins).await,
        Err(_) => Ok(()),
    };
    let (status, body) = match store {
        Ok(()) => (StatusCode::OK, serde_json::json!({ "status": "ok" })),
        Err(e) => {
            tracing::warn!(error = %e, "health check: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "status": "unavailable", "store": "does not answer" }),
            )
        }
    };
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let m = &state.core.metrics;
    if let Ok(twins) = state.core.ports.twins() {
        let _ = m.probe_store(twins).await;
    }
    if let Some(d) = &state.dispatcher {
        m.in_flight
            .set(i64::try_from(d.in_flight()).unwrap_or(i64::MAX));
    }
    if let Some(b) = &state.broker {
        m.observe_broker(&b.metrics());
    }
    (
        StatusCode::OK,
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

async fn dispatch(
    State(state): State<HttpState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let mut path_known = false;
    for f in &state.routes.functions {
        for route in &f.http {
            if route.match_path(route.method.as_str(), path).is_some() {
                path_known = true;
            }
            let Some(params) = route.match_path(method.as_str(), path) else {
                continue;
            };
            let event = match to_event(&route.route_key(), &method, &uri, &headers, &body, params) {
                Ok(e) => e,
                Err(e) => return to_response(api::error_response(&api::ApiError::bad_request(e))),
            };
            return to_response(invoke(&state.core, &f.name, &event).await);
        }
    }
    let err = if path_known {
        api::ApiError {
            status: 405,
            message: format!("{method} is not allowed on {path}"),
        }
    } else {
        api::ApiError::not_found(format!("no route {method} {path}"))
    };
    to_response(api::error_response(&err))
}

async fn invoke(
    core: &Core,
    function: &str,
    ev: &ApiGatewayV2httpRequest,
) -> ApiGatewayV2httpResponse {
    // No Lambda here: each request gets API Gateway's integration limit.
    let invocation = Invocation::starting(core.ports.clock().now(), API_GATEWAY_LIMIT);
    let request_id = ev.request_context.request_id.clone().unwrap_or_default();
    match registry::function(function) {
        Some(Function::Api(handler)) => {
            api::with_request_id(handler(&core.ports, ev, invocation).await, &request_id)
        }
        _ => api::error_response(&api::ApiError::not_found(format!(
            "no HTTP function {function}"
        ))),
    }
}

/// Builds the API Gateway HTTP API (payload v2) event of a request.
fn to_event(
    route_key: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    params: std::collections::BTreeMap<String, String>,
) -> Result<ApiGatewayV2httpRequest, String> {
    let now = chrono::Utc::now();
    let mut hdrs = serde_json::Map::new();
    for (k, v) in headers {
        if let Ok(v) = v.to_str() {
            hdrs.insert(k.as_str().to_string(), v.into());
        }
    }
    let (body, b64) = match std::str::from_utf8(body) {
        _ if body.is_empty() => (serde_json::Value::Null, false),
        Ok(text) => (text.into(), false),
        Err(_) => (
            base64::engine::general_purpose::STANDARD
                .encode(body)
                .into(),
            true,
        ),
    };
    let ev = serde_json::json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": uri.path(),
        "rawQueryString": uri.query().unwrap_or(""),
        "headers": hdrs,
        "pathParameters": params,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "localhost",
            "http": { "method": method.as_str(), "path": uri.path(), "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "" },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis()
        },
        "body": body,
        "isBase64Encoded": b64
    });
    serde_json::from_value(ev).map_err(|e| format!("cannot build the API event: {e}"))
}

fn to_response(r: ApiGatewayV2httpResponse) -> Response {
    let status = u16::try_from(r.status_code)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match r.body {
        Some(LambdaBody::Text(t)) => Body::from(t),
        Some(LambdaBody::Binary(b)) => Body::from(b),
        _ => Body::empty(),
    };
    let mut resp = (status, body).into_response();
    for (k, v) in r.headers.iter() {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}
