//! The HTTP API client: one function per route, bodies typed with `mir_shared::api`.
//!
//! Layout: [`ClientError`] and [`AwsUnsupported`], [`EventQuery`], [`Client`] (requests,
//! then one section per resource), the error of a non-2xx answer, unit tests; [`poll`]:
//! the event feed of an aws context, polled.

pub mod poll;

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use mir_shared::api::{
    Catalog, CertificateRequest, CommandResults, ConfigResults, DeviceList, ErrorBody, EventList,
    PublishEvent, SendCommand, SendConfig, TelemetryList, TelemetryQueryResult,
};
use mir_shared::domain::{feed::WATCH_PATH, CommandRecord, Event, FeedFilter, Targets, Twin};
use mir_shared::ports::DeviceCertificate;

/// Time to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a whole request; commands wait at most 25 s on the server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// `mir evt watch`: a stream silent for this long (three of the hub's 15 s keep-alives)
/// is taken as dropped.
const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(45);

/// Devices asked for per page: well under Lambda's 6 MB response limit for twins of
/// a few KB.
const DEVICE_PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the Mir API at {url}: is `mir local` running? (start it with `mir local`, or choose another API with --api or `mir ctx`)")]
    Unreachable { url: String },
    #[error("the Mir API at {url} did not answer in time")]
    Timeout { url: String },
    /// The API answered with an error body: shown as is.
    #[error("{message}")]
    Api { status: u16, message: String },
    #[error("invalid API URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("unexpected answer from the Mir API ({what}): {reason}")]
    Decode { what: String, reason: String },
    #[error("{reason}")]
    Signing { reason: String },
    #[error("request to the Mir API failed: {0}")]
    Http(#[source] reqwest::Error),
    /// What this API (an aws context) does not offer.
    #[error("{0}")]
    Unsupported(AwsUnsupported),
    /// A watch query that is not an event filter.
    #[error("invalid event filter: {0}")]
    BadFilter(String),
    #[error("the event stream broke: {0}")]
    Stream(String),
}

impl ClientError {
    /// Whether reconnecting a stream (or polling again) may help: the network, the
    /// API's 5xx and 429 (throttled), not a refusal.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Api { status, .. } => *status >= 500 || *status == 429,
            ClientError::Unsupported(_)
            | ClientError::BadFilter(_)
            | ClientError::BadUrl { .. }
            | ClientError::Signing { .. }
            | ClientError::Decode { .. } => false,
            _ => true,
        }
    }
}

/// The streams an aws context (API Gateway) does not give, and what to use instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsUnsupported {
    #[error("the telemetry stream (`/v1/telemetry/watch`) is a local hub's (contexts of kind local or localstack, `mir local`); on an aws context query telemetry with `mir tlm query` (GET /v1/telemetry/query), or subscribe a Lambda to the EventBridge bus with the CDK construct `MirModule` (infra/cdk/lib/module.ts)")]
    TelemetryWatch,
    #[error("worker groups (`?group=`) are a local hub's (contexts of kind local or localstack, `mir local`); on an aws context use the worker mode of the CDK construct `MirModule` (infra/cdk/lib/module.ts): an SQS queue behind the EventBridge bus that the module's instances drain")]
    WorkerGroup,
    #[error("the stream {path} is a local hub's (contexts of kind local or localstack, `mir local`); on an aws context subscribe to the EventBridge bus with the CDK construct `MirModule` (infra/cdk/lib/module.ts)")]
    Stream { path: String },
}

/// The server-sent events of `GET /v1/events/watch` (on an aws context, [`poll`]ed).
pub type EventStream = futures::stream::BoxStream<'static, ClientResult<eventsource_stream::Event>>;

pub type ClientResult<T> = Result<T, ClientError>;

/// Options of `GET /v1/events` (one page).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    pub device_id: Option<String>,
    pub reason: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<usize>,
    /// The `nextToken` of the previous page.
    pub next_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Client {
    base: Url,
    http: reqwest::Client,
    /// For streams: no total timeout, a read timeout instead.
    stream_http: reqwest::Client,
    /// SigV4 signing (aws contexts).
    signer: Option<crate::sigv4::Signer>,
    /// `Authorization: Bearer` (a hub with access.apiToken).
    token: Option<Bearer>,
}

/// A bearer token; its `Debug` never shows it.
#[derive(Clone)]
struct Bearer(String);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(<redacted>)")
    }
}

impl Client {
    pub fn new(api: &str) -> ClientResult<Self> {
        let trimmed = api.trim().trim_end_matches('/');
        let base = Url::parse(trimmed).map_err(|e| ClientError::BadUrl {
            url: api.to_string(),
            reason: e.to_string(),
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ClientError::BadUrl {
                url: api.to_string(),
                reason: "must be an http:// or https:// URL".into(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("mir-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError::Http)?;
        let stream_http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(WATCH_READ_TIMEOUT)
            .user_agent(concat!("mir-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError::Http)?;
        Ok(Self {
            base,
            http,
            stream_http,
            signer: None,
            token: None,
        })
    }

    /// The client of a resolved endpoint: its bearer token (`token` over the
    /// endpoint's), SigV4 signing for an aws context.
    pub fn for_endpoint(
        endpoint: &crate::context::Endpoint,
        token: Option<String>,
    ) -> ClientResult<Self> {
        let mut client = Client::new(&endpoint.api)?;
        if let Some(token) = token.or_else(|| endpoint.token.clone()) {
            client = client.with_token(token);
        }
        Ok(match &endpoint.sigv4 {
            Some(s) => client.with_signer(crate::sigv4::Signer::from_config(s)),
            None => client,
        })
    }

    /// Signs every request with SigV4 (API Gateway with IAM auth).
    pub fn with_signer(mut self, signer: crate::sigv4::Signer) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: String) -> Self {
        self.token = Some(Bearer(token));
        self
    }

    pub fn base_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `base` + path segments (each percent-encoded).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> ClientResult<T> {
        let text = self.call_raw(method, segments, query, body).await?;
        let what = format!("/{}", segments.join("/"));
        serde_json::from_str(&text).map_err(|e| ClientError::Decode {
            what,
            reason: e.to_string(),
        })
    }

    async fn call_raw<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> ClientResult<String> {
        let url = self.url(segments);
        tracing::debug!(%method, %url, ?query, "request");
        let mut req = self.http.request(method, url);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        if let Some(Bearer(token)) = &self.token {
            req = req.bearer_auth(token);
        }
        let mut request = req.build().map_err(ClientError::Http)?;
        if let Some(signer) = &self.signer {
            signer
                .sign(&mut request)
                .await
                .map_err(|reason| ClientError::Signing { reason })?;
        }
        let resp = self
            .http
            .execute(request)
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.transport_error(e))?;
        tracing::debug!(%status, bytes = text.len(), "response");
        if status.is_success() {
            Ok(text)
        } else {
            Err(api_error(status, &text))
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> ClientError {
        let url = self.base_url().to_string();
        if e.is_connect() {
            ClientError::Unreachable { url }
        } else if e.is_timeout() {
            ClientError::Timeout { url }
        } else {
            ClientError::Http(e)
        }
    }

    // ---- devices ----

    /// Every device `targets` selects, following the API's pages (`nextToken`).
    pub async fn list_devices(&self, targets: &Targets) -> ClientResult<DeviceList> {
        let mut devices = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = targets.to_query();
            query.push(("limit", DEVICE_PAGE.to_string()));
            if let Some(t) = token.take() {
                query.push(("nextToken", t));
            }
            let page: DeviceList = self
                .call::<(), _>(Method::GET, &["v1", "devices"], &query, None)
                .await?;
            devices.extend(page.devices);
            match page.next_token {
                Some(t) => token = Some(t),
                None => {
                    devices.sort_by(|a, b| {
                        (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name))
                    });
                    return Ok(DeviceList {
                        devices,
                        next_token: None,
                    });
                }
            }
        }
    }

    pub async fn create_device(&self, twin: &Twin) -> ClientResult<Twin> {
        self.call(Method::POST, &["v1", "devices"], &[], Some(twin))
            .await
    }

    pub async fn get_device(&self, id: &str) -> ClientResult<Twin> {
        self.call::<(), _>(Method::GET, &["v1", "devices", id], &[], None)
            .await
    }

    /// Create or replace meta, spec.disabled and desired properties.
    pub async fn apply_device(&self, id: &str, twin: &Twin) -> ClientResult<Twin> {
        self.call(Method::PUT, &["v1", "devices", id], &[], Some(twin))
            .await
    }

    /// A JSON merge patch on `{meta, spec, properties.desired}`.
    pub async fn patch_device(&self, id: &str, patch: &Value) -> ClientResult<Twin> {
        self.call(Method::PATCH, &["v1", "devices", id], &[], Some(patch))
            .await
    }

    pub async fn delete_device(&self, id: &str) -> ClientResult<()> {
        self.call_raw::<()>(Method::DELETE, &["v1", "devices", id], &[], None)
            .await?;
        Ok(())
    }

    pub async fn issue_certificate(
        &self,
        id: &str,
        req: &CertificateRequest,
    ) -> ClientResult<DeviceCertificate> {
        self.call(
            Method::POST,
            &["v1", "devices", id, "certificate"],
            &[],
            Some(req),
        )
        .await
    }

    /// Asks the device to resend its schema (202).
    pub async fn refresh_schema(&self, id: &str) -> ClientResult<()> {
        self.call_raw::<()>(
            Method::POST,
            &["v1", "devices", id, "schema", "refresh"],
            &[],
            None,
        )
        .await?;
        Ok(())
    }

    // ---- commands ----

    pub async fn command_catalog(&self, targets: &Targets) -> ClientResult<Catalog> {
        self.call::<(), _>(Method::GET, &["v1", "commands"], &targets.to_query(), None)
            .await
    }

    pub async fn send_command(&self, req: &SendCommand) -> ClientResult<CommandResults> {
        self.call(Method::POST, &["v1", "commands"], &[], Some(req))
            .await
    }

    pub async fn get_command(&self, id: &str) -> ClientResult<CommandRecord> {
        self.call::<(), _>(Method::GET, &["v1", "commands", id], &[], None)
            .await
    }

    // ---- config ----

    pub async fn config_catalog(
        &self,
        targets: &Targets,
        name: Option<&str>,
    ) -> ClientResult<Catalog> {
        let mut query = targets.to_query();
        if let Some(name) = name {
            query.push(("name", name.to_string()));
        }
        self.call::<(), _>(Method::GET, &["v1", "config"], &query, None)
            .await
    }

    pub async fn send_config(&self, req: &SendConfig) -> ClientResult<ConfigResults> {
        self.call(Method::POST, &["v1", "config"], &[], Some(req))
            .await
    }

    // ---- telemetry ----

    pub async fn list_telemetry(&self, targets: &Targets) -> ClientResult<TelemetryList> {
        self.call::<(), _>(Method::GET, &["v1", "telemetry"], &targets.to_query(), None)
            .await
    }

    pub async fn query_telemetry(
        &self,
        device_id: &str,
        name: &str,
        since: &str,
        limit: Option<usize>,
        next_token: Option<&str>,
    ) -> ClientResult<TelemetryQueryResult> {
        let mut query = vec![
            ("ids", device_id.to_string()),
            ("name", name.to_string()),
            ("since", since.to_string()),
        ];
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(t) = next_token {
            query.push(("nextToken", t.to_string()));
        }
        self.call::<(), _>(Method::GET, &["v1", "telemetry", "query"], &query, None)
            .await
    }

    // ---- events ----

    /// `GET /v1/events/watch`, the local hub's event feed (server-sent events), from
    /// after `last_event_id` when given. On an aws context (API Gateway does not
    /// stream) the same stream comes from polling `GET /v1/events` ([`poll`]), from the
    /// events recorded after this returns; `last_event_id` is not used there.
    pub async fn watch_events(
        &self,
        filter: &FeedFilter,
        last_event_id: Option<&str>,
    ) -> ClientResult<EventStream> {
        self.watch(WATCH_PATH, &filter.to_query(), last_event_id)
            .await
    }

    /// Server-sent events of one of the hub's streams (`path`: `/v1/events/watch`,
    /// `/v1/telemetry/watch`) with `query`. On an aws context the event feed is polled
    /// (see [`Client::watch_events`]); the others, and worker groups (`group=`), are
    /// refused with [`ClientError::Unsupported`].
    pub async fn watch(
        &self,
        path: &str,
        query: &[(&str, String)],
        last_event_id: Option<&str>,
    ) -> ClientResult<EventStream> {
        use eventsource_stream::Eventsource;
        use futures::StreamExt;
        if self.signer.is_some() {
            return poll::open(self.clone(), path, query).await;
        }
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut req = self
            .stream_http
            .get(self.url(&segments))
            .query(query)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        if let Some(Bearer(token)) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(api_error(status, &text));
        }
        Ok(resp
            .bytes_stream()
            .eventsource()
            .map(|item| item.map_err(|e| ClientError::Stream(e.to_string())))
            .boxed())
    }

    /// `POST /v1/events`: records a custom event; the stored event comes back.
    pub async fn publish_event(&self, event: &PublishEvent) -> ClientResult<Event> {
        self.call(Method::POST, &["v1", "events"], &[], Some(event))
            .await
    }

    pub async fn list_events(&self, q: &EventQuery) -> ClientResult<EventList> {
        let mut query = Vec::new();
        if let Some(d) = &q.device_id {
            query.push(("deviceId", d.clone()));
        }
        if let Some(r) = &q.reason {
            query.push(("reason", r.clone()));
        }
        if let Some(s) = &q.since {
            query.push(("since", s.clone()));
        }
        if let Some(u) = &q.until {
            query.push(("until", u.clone()));
        }
        if let Some(l) = q.limit {
            query.push(("limit", l.to_string()));
        }
        if let Some(t) = &q.next_token {
            query.push(("nextToken", t.clone()));
        }
        self.call::<(), _>(Method::GET, &["v1", "events"], &query, None)
            .await
    }
}

/// The error of a non-2xx answer: the `{"error": ...}` body, else the status and text.
fn api_error(status: StatusCode, text: &str) -> ClientError {
    let message = match serde_json::from_str::<ErrorBody>(text) {
        Ok(body) => body.error,
        Err(_) => {
            let text = text.trim();
            let reason = status.canonical_reason().unwrap_or("error");
            if text.is_empty() {
                format!("the Mir API answered {} {reason}", status.as_u16())
            } else {
                let short: String = text.chars().take(300).collect();
                format!("the Mir API answered {} {reason}: {short}", status.as_u16())
            }
        }
    };
    ClientError::Api {
        status: status.as_u16(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_a_stage_prefix_and_encode_segments() {
        let c = Client::new("https://abc.execute-api.eu-west-1.amazonaws.com/prod/").expect("ok");
        assert_eq!(
            c.url(&["v1", "devices", "a b"]).as_str(),
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod/v1/devices/a%20b"
        );
        let c = Client::new("http://127.0.0.1:8180").expect("ok");
        assert_eq!(
            c.url(&["v1", "events"]).as_str(),
            "http://127.0.0.1:8180/v1/events"
        );
        assert!(matches!(
            Client::new("127.0.0.1:8180"),
            Err(ClientError::BadUrl { .. })
        ));
        assert!(matches!(
            Client::new("ftp://x"),
            Err(ClientError::BadUrl { .. })
        ));
    }

    #[test]
    fn error_bodies_are_shown_as_is() {
        let e = api_error(
            StatusCode::BAD_REQUEST,
            r#"{"error":"unknown command x.Y; known: a.B"}"#,
        );
        assert_eq!(e.to_string(), "unknown command x.Y; known: a.B");
        let e = api_error(StatusCode::BAD_GATEWAY, "<html>bad</html>");
        assert_eq!(
            e.to_string(),
            "the Mir API answered 502 Bad Gateway: <html>bad</html>"
        );
    }
}
