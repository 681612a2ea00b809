//! The HTTP API: API Gateway (HTTP API, payload v2) requests and responses, errors
//! with a status and a plain message, and the JSON bodies the CLI reads.
//!
//! Files: this one (requests, responses, errors, bodies), `caller` (who asked, from the
//! request context), `time` (`since`/`until` parameters, bounded), `events` (the body of
//! `POST /v1/events`, a custom event).

mod caller;
mod events;
mod time;

pub use caller::Caller;
pub use events::{PublishEvent, PublishEventError, MAX_CUSTOM_MESSAGE};
pub use time::{parse_since, MAX_LOOKBACK_DAYS};

use std::collections::BTreeMap;

use aws_lambda_events::{
    apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse},
    encodings::Body,
};
use base64::Engine;
use http::{header::CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{
    page::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT},
    CommandStatus, PageRequest, Targets, Twin,
};
use crate::ports::{StoreError, TelemetrySeries, MAX_STORED_ITEM_BYTES};
use crate::telemetry::FieldValue;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Largest message to a device: MQTT on AWS IoT Core (and the local broker), 128 KB.
pub const MAX_DEVICE_MESSAGE_BYTES: usize = mir_proto::MAX_PAYLOAD_BYTES;

/// Largest command or config payload, as JSON: half of a stored item
/// ([`MAX_STORED_ITEM_BYTES`]), the other half left for the device's answer (a command
/// record) or the reported values and status (a twin).
pub const MAX_PAYLOAD_JSON_BYTES: usize = MAX_STORED_ITEM_BYTES / 2;

/// Refuses (400) a send with no targets unless it says `allDevices`, and one that says
/// both.
pub fn require_targets(targets: &Targets, all_devices: bool) -> Result<(), ApiError> {
    match (targets.is_all(), all_devices) {
        (true, false) => Err(ApiError::bad_request(
            "no targets: name the devices (ids, names, namespaces, labels), or set \
             allDevices to send to every device",
        )),
        (false, true) => Err(ApiError::bad_request(
            "allDevices and targets exclude each other",
        )),
        _ => Ok(()),
    }
}

/// Refuses (413) a `what` payload whose JSON is over [`MAX_PAYLOAD_JSON_BYTES`].
pub fn refuse_large_json(what: &str, payload: &Value) -> Result<(), ApiError> {
    let len = serde_json::to_vec(payload).map_or(0, |v| v.len());
    if len > MAX_PAYLOAD_JSON_BYTES {
        return Err(ApiError::too_large(format!(
            "the {what} payload is {len} bytes of JSON; at most {MAX_PAYLOAD_JSON_BYTES} \
             bytes are stored with it (a stored item is at most {MAX_STORED_ITEM_BYTES} \
             bytes, DynamoDB's 400 KB limit)"
        )));
    }
    Ok(())
}

/// Refuses (413) a message of `len` bytes to `device` over [`MAX_DEVICE_MESSAGE_BYTES`].
pub fn refuse_large_message(what: &str, device: &str, len: usize) -> Result<(), ApiError> {
    if len > MAX_DEVICE_MESSAGE_BYTES {
        return Err(ApiError::too_large(format!(
            "the {what} is {len} bytes encoded for device {device}; a message to a device \
             is at most {MAX_DEVICE_MESSAGE_BYTES} bytes (MQTT's 128 KB limit on AWS IoT)"
        )));
    }
    Ok(())
}

/// An API error: an HTTP status and a message for the user, never internals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: 404,
            message: message.into(),
        }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            status: 409,
            message: message.into(),
        }
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self {
            status: 413,
            message: message.into(),
        }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: 503,
            message: message.into(),
        }
    }
    pub fn internal() -> Self {
        Self {
            status: 500,
            message: "internal error; see the function logs".into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::not_found(format!("not found: {m}")),
            StoreError::AlreadyExists(m) => ApiError::conflict(format!("already exists: {m}")),
            StoreError::Conflict(m) => {
                ApiError::conflict(format!("changed concurrently, retry: {m}"))
            }
            StoreError::TooLarge(m) => ApiError::too_large(m),
            StoreError::BadPageToken(t) => ApiError::bad_request(t.to_string()),
            StoreError::Unavailable { .. } => {
                tracing::error!(error = %e, "store unavailable");
                ApiError::unavailable("the store is unavailable; retry later")
            }
            StoreError::Corrupt(_) => {
                tracing::error!(error = %e, "corrupt stored data");
                ApiError::internal()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error: String,
    /// The request's id (API Gateway's, also in the access log and the function's log
    /// line), to quote when asking what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Adds `requestId` to the JSON body of an error response (status 400 and up), at the
/// boundary where the request id is known (the Lambda runtime, the hub's HTTP server).
pub fn with_request_id(
    mut resp: ApiGatewayV2httpResponse,
    request_id: &str,
) -> ApiGatewayV2httpResponse {
    if resp.status_code < 400 || request_id.is_empty() {
        return resp;
    }
    if let Some(Body::Text(text)) = &resp.body {
        if let Ok(mut body) = serde_json::from_str::<ErrorBody>(text) {
            body.request_id = Some(request_id.to_string());
            if let Ok(t) = serde_json::to_string(&body) {
                resp.body = Some(Body::Text(t));
            }
        }
    }
    resp
}

/// A JSON response.
pub fn json_response<T: Serialize>(status: u16, body: &T) -> ApiGatewayV2httpResponse {
    match serde_json::to_string(body) {
        Ok(text) => text_response(status, text),
        Err(e) => {
            tracing::error!(error = %e, "response serialization failed");
            error_response(&ApiError::internal())
        }
    }
}

pub fn error_response(err: &ApiError) -> ApiGatewayV2httpResponse {
    let body = ErrorBody {
        error: err.message.clone(),
        request_id: None,
    };
    let text = serde_json::to_string(&body).unwrap_or_else(|_| "{}".into());
    text_response(err.status, text)
}

fn text_response(status: u16, text: String) -> ApiGatewayV2httpResponse {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut resp = ApiGatewayV2httpResponse::default();
    resp.status_code = i64::from(status);
    resp.headers = headers;
    resp.body = Some(Body::Text(text));
    resp.is_base64_encoded = false;
    resp
}

/// Turns a handler result into a response.
pub fn respond<T: Serialize>(result: Result<(u16, T), ApiError>) -> ApiGatewayV2httpResponse {
    match result {
        Ok((status, body)) => json_response(status, &body),
        Err(e) => error_response(&e),
    }
}

/// A request, read once: route key, path parameters, query, body, and who asked.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub route_key: String,
    pub path_params: BTreeMap<String, String>,
    pub query: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub caller: Caller,
}

impl ApiRequest {
    pub fn from_event(ev: &ApiGatewayV2httpRequest) -> Result<Self, ApiError> {
        let route_key = ev.route_key.clone().unwrap_or_default();
        let query = form_urlencoded::parse(ev.raw_query_string.as_deref().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let body = match &ev.body {
            None => None,
            Some(b) if ev.is_base64_encoded => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|_| ApiError::bad_request("body is not valid base64"))?,
            ),
            Some(b) => Some(b.clone().into_bytes()),
        };
        if body.as_ref().is_some_and(|b| b.len() > MAX_BODY_BYTES) {
            return Err(ApiError::too_large(format!(
                "request body over {MAX_BODY_BYTES} bytes"
            )));
        }
        Ok(Self {
            route_key,
            path_params: ev
                .path_parameters
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            query,
            body,
            caller: Caller::from_event(ev),
        })
    }

    pub fn path_param(&self, name: &str) -> Result<&str, ApiError> {
        self.path_params
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| ApiError::bad_request(format!("missing path parameter {name}")))
    }

    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The page asked for: `limit` (default [`DEFAULT_PAGE_LIMIT`], at most
    /// [`MAX_PAGE_LIMIT`]) and `nextToken` (from the previous page).
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let limit = match self.query_value("limit") {
            None => DEFAULT_PAGE_LIMIT,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "limit must be a whole number from 1 to {MAX_PAGE_LIMIT}, not {v:?}"
                    )))
                }
            },
        };
        let token = self
            .query_value("nextToken")
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        Ok(PageRequest { limit, token })
    }

    pub fn targets(&self) -> Result<Targets, ApiError> {
        Targets::from_query(self.query.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    /// The JSON body; the error says where it is wrong.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let body = self.body.as_deref().unwrap_or(b"");
        if body.is_empty() {
            return Err(ApiError::bad_request("a JSON body is required"));
        }
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Applies a JSON merge patch (RFC 7386) to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in patch {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

// ---- bodies ----

/// `GET /v1/devices`: one page of twins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceList {
    pub devices: Vec<Twin>,
    /// Pass it as `nextToken` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `GET /v1/devices/{deviceId}/schema`: the device's schema described as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSchema {
    pub device_id: String,
    pub name: String,
    pub namespace: String,
    #[serde(flatten)]
    pub schema: crate::schema::SchemaView,
}

/// `POST /v1/devices/{id}/certificate`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr_pem: Option<String>,
}

/// `POST /v1/commands`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendCommand {
    #[serde(default)]
    pub targets: Targets,
    /// Send to every device. Required when `targets` is empty, so that no send reaches
    /// the whole fleet by omission.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_devices: bool,
    pub name: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub dry_run: bool,
    /// How long the devices have to answer (default 10 s, at most 25 s); a waiting call
    /// also ends before its invocation does (Lambda's remaining time, less a margin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Return at once with command ids to poll instead of waiting; a record still
    /// pending past its deadline reads as TIMEOUT.
    #[serde(default)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandResult {
    pub device_id: String,
    pub name: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    pub status: CommandStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResults {
    pub results: Vec<CommandResult>,
}

/// One message a device accepts (command or config), with its JSON template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageInfo {
    pub name: String,
    pub template: Value,
    /// Config only: the desired value stored in the twin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Value>,
}

/// What one device offers (`GET /v1/commands`, `GET /v1/config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCatalog {
    pub device_id: String,
    pub name: String,
    pub namespace: String,
    pub messages: Vec<MessageInfo>,
    /// Why the list is empty (e.g. no schema yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub devices: Vec<DeviceCatalog>,
}

/// `POST /v1/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendConfig {
    #[serde(default)]
    pub targets: Targets,
    /// Send to every device. Required when `targets` is empty, so that no send reaches
    /// the whole fleet by omission.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_devices: bool,
    pub name: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConfigStatus {
    /// Stored in the twin and pushed to the connected device.
    Sent,
    /// Stored in the twin; the device is offline and will pull it when it connects.
    Stored,
    /// `--dry-run`: valid, nothing written.
    Validated,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigResult {
    pub device_id: String,
    pub name: String,
    pub namespace: String,
    pub status: ConfigStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigResults {
    pub results: Vec<ConfigResult>,
}

/// `GET /v1/telemetry`: the telemetry messages of each device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceTelemetry {
    pub device_id: String,
    pub name: String,
    pub namespace: String,
    /// Telemetry messages declared by the schema, with what is stored of each.
    pub messages: Vec<TelemetrySeries>,
    /// The fields of each telemetry message the schema declares (without the timestamp).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryList {
    pub devices: Vec<DeviceTelemetry>,
}

/// One row of `GET /v1/telemetry/query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryRow {
    pub time: chrono::DateTime<chrono::Utc>,
    pub values: BTreeMap<String, FieldValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryQueryResult {
    pub device_id: String,
    pub measure: String,
    pub columns: Vec<String>,
    pub rows: Vec<TelemetryRow>,
    /// Pass it as `nextToken` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `GET /v1/events`: one page of the audit trail, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    pub events: Vec<crate::domain::Event>,
    /// Pass it as `nextToken` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

impl From<crate::service::HandlerError> for ApiError {
    /// The status the cause maps to; internals (stores, the broker) are logged, not sent.
    fn from(e: crate::service::HandlerError) -> Self {
        use crate::service::HandlerError as H;
        let status = e.http_status();
        match e {
            H::Store(s) => s.into(),
            H::Publish(crate::ports::PublishError::Failed { .. }) => {
                tracing::warn!(error = %e, "publish failed");
                ApiError::unavailable("could not reach the device broker; retry later")
            }
            other => ApiError {
                status,
                message: other.to_string(),
            },
        }
    }
}

impl From<crate::domain::DomainError> for ApiError {
    fn from(e: crate::domain::DomainError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl From<crate::schema::SchemaError> for ApiError {
    fn from(e: crate::schema::SchemaError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = serde_json::json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &serde_json::json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, serde_json::json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn store_errors_become_plain_statuses_without_internals() {
        let e: ApiError =
            StoreError::unavailable("dynamodb", std::io::Error::other("secret-host:4566")).into();
        assert_eq!(e.status, 503);
        assert!(!e.message.contains("secret-host"));
        let e: ApiError = StoreError::NotFound("device x".into()).into();
        assert_eq!(e.status, 404);
    }
}
