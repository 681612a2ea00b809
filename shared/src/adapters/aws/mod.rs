//! The AWS side: one typed configuration read from the environment ([`AwsConfig`]),
//! the SDK configuration (default credential chain, `AWS_ENDPOINT_URL` honoured), the
//! mapping of SDK errors to [`StoreError`], and (in `environment.rs`) [`AwsEnvironment`],
//! which builds the [`crate::ports::Ports`] of a function once per cold start.
//!
//! Environment variables (the contract with `infra/cdk/lib/config.ts`):
//!
//! | variable | meaning |
//! |---|---|
//! | `MIR_TWINS_TABLE`, `MIR_SCHEMAS_TABLE`, `MIR_COMMANDS_TABLE`, `MIR_EVENTS_TABLE` | DynamoDB tables (a function only gets those its `access` names) |
//! | `MIR_TELEMETRY_SINK` | `timestream` (default when a database is set) or `dynamodb` |
//! | `MIR_TIMESTREAM_DATABASE`, `MIR_TIMESTREAM_TABLE` | the Timestream table (timestream sink) |
//! | `MIR_TELEMETRY_TABLE` | the DynamoDB telemetry table (dynamodb sink) |
//! | `MIR_IOT_DATA_ENDPOINT` | host of the account's `iot:Data-ATS` endpoint |
//! | `MIR_IOT_POLICY_NAME` | IoT policy attached to device certificates |
//! | `MIR_EVENT_RETENTION` | event retention per reason, over the defaults (90 days, `DeviceOnline`/`DeviceOffline` 7): `default=90,DeviceOnline=7` (see [`crate::domain::retention`]) |
//! | `MIR_EVENTS_TTL_DAYS` | the default of the event retention, unless `MIR_EVENT_RETENTION` sets `default` |
//! | `MIR_COMMANDS_TTL_DAYS` | retention of commands (default 7) |
//! | `MIR_TELEMETRY_RETENTION_DAYS` | how long telemetry is kept (default 365, at most 36500): the DynamoDB chunks' TTL, the Timestream reader's time bound |
//! | `AWS_ENDPOINT_URL` | endpoint override for every service (LocalStack, moto) |
//! | `MIR_AWS_OPERATION_TIMEOUT_MS`, `MIR_AWS_ATTEMPT_TIMEOUT_MS` | the SDK clients' operation and attempt timeouts (default 10000 and 3000; the attempt at most the operation) |
//! | `MIR_ALLOW_GENERATED_KEYS` | `true` lets the API issue a certificate without a CSR (AWS generates the key); default `false` |
//! | `MIR_CERTIFICATE_GRACE_HOURS` | hours a device's earlier certificates stay active after a new one is issued (`certificate-rotation`); default 24 |
//! | `MIR_EVENT_BUS_NAME` | EventBridge bus of the event feed (`event-feed`; feature `eventbridge`) |

use std::{fmt, time::Duration};

use aws_smithy_runtime_api::{client::result::SdkError, http::Response};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::ports::StoreError;

mod config;
pub use config::{
    env, AwsConfig, ConfigError, SdkTimeouts, TelemetryConfig, DEFAULT_TELEMETRY_RETENTION_DAYS,
    MAX_TELEMETRY_RETENTION_DAYS,
};

/// Loads the SDK configuration: region and credentials from the default chain,
/// `endpoint_url` (or `AWS_ENDPOINT_URL`) for every client. Against a local endpoint,
/// missing credentials and region are filled with dummies (moto and LocalStack accept any).
/// Every client ends an operation within `timeouts` (retries included).
pub async fn sdk_config(
    endpoint_url: Option<&str>,
    timeouts: SdkTimeouts,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(timeouts.operation)
            .operation_attempt_timeout(timeouts.attempt)
            .build(),
    );
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
        let local = url.contains("://127.")
            || url.contains("://localhost")
            || url.contains("://[::1]")
            || url.contains("://0.0.0.0");
        if local {
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
                && std::env::var_os("AWS_PROFILE").is_none()
            {
                loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                    "test",
                    "test",
                    None,
                    None,
                    "mir-local",
                ));
            }
            if std::env::var_os("AWS_REGION").is_none()
                && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            {
                loader = loader.region(aws_config::Region::new("us-east-1"));
            }
        }
    }
    loader.load().await
}

/// Error codes that mean "not now": throttling, capacity, transient server trouble.
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "InternalServerError",
    "InternalServerException",
    "InternalFailureException",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "TransactionConflictException",
    "TransactionInProgressException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Whether an SDK error is worth retrying.
pub fn is_retryable_sdk<E>(e: &SdkError<E, Response>) -> bool
where
    E: ProvideErrorMetadata,
{
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        // A 5xx is the service's own failure, whatever its body says (a proxy's HTML
        // page has no error code at all).
        SdkError::ServiceError(s) => {
            s.err().code().is_some_and(|c| RETRYABLE_CODES.contains(&c))
                || s.raw().status().is_server_error()
        }
        _ => false,
    }
}

/// Maps an SDK error to a store error, keeping the cause and the retryability.
pub fn store_error<E>(what: impl Into<String>, e: SdkError<E, Response>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let what = what.into();
    let code = e.code().unwrap_or("").to_string();
    let message = e.message().unwrap_or("").to_string();
    if is_retryable_sdk(&e) {
        return StoreError::unavailable(
            format!(
                "{what}: {}",
                if code.is_empty() {
                    "unreachable"
                } else {
                    &code
                }
            ),
            e,
        );
    }
    if message.contains("Item size") || message.contains("item size") {
        return StoreError::TooLarge(format!("{what}: {message}"));
    }
    if code == "AccessDeniedException" {
        // A grant missing from the deployment: the message names the role, the action
        // and the resource, which stay in the log. Like a missing table, a retry after
        // the fix (a redrive) must still find the message.
        return StoreError::unavailable(format!("{what}: access denied"), e);
    }
    if code == "ResourceNotFoundException" {
        // A missing table is a deployment problem: retrying will not help, but the
        // event must not be lost either, so it ends in the dead-letter queue.
        return StoreError::unavailable(format!("{what}: resource not found: {message}"), e);
    }
    let detail = match (code.is_empty(), message.is_empty()) {
        (false, false) => format!("{code}: {message}"),
        (false, true) => code,
        (true, _) => format!("{}", DisplayErrorChain(&e)),
    };
    StoreError::Corrupt(format!("{what}: {detail}"))
}

/// Displays an error with its sources (`a: b: c`), as the SDK's own Display is terse.
pub struct DisplayErrorChain<'a>(pub &'a dyn std::error::Error);

impl fmt::Display for DisplayErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// Exponential backoff with full jitter: attempt 1 -> up to `base`, doubling, capped.
pub(crate) fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)));
    let max = exp.min(cap);
    let nanos = u128::from(chrono::Utc::now().timestamp_subsec_nanos());
    let frac = (nanos % 1000) as u32;
    max.mul_f64(f64::from(frac) / 1000.0)
}

#[cfg(feature = "dynamodb")]
mod environment;
#[cfg(feature = "dynamodb")]
pub use environment::AwsEnvironment;

#[cfg(test)]
mod tests {
    use super::*;

    /// DynamoDB's answer to a call the role may not make, as AWS words it.
    #[cfg(feature = "dynamodb")]
    fn access_denied() -> SdkError<
        aws_sdk_dynamodb::operation::get_item::GetItemError,
        aws_smithy_runtime_api::http::Response,
    > {
        use aws_smithy_runtime_api::http::{Response, StatusCode};
        use aws_smithy_types::{body::SdkBody, error::ErrorMetadata};
        let meta = ErrorMetadata::builder()
            .code("AccessDeniedException")
            .message(
                "User: arn:aws:sts::123456789012:assumed-role/mir-prod-api-devices/fn is not \
                 authorized to perform: dynamodb:GetItem on resource: \
                 arn:aws:dynamodb:eu-west-1:123456789012:table/mir-prod-data-Twins1A2B3C \
                 because no identity-based policy allows the dynamodb:GetItem action",
            )
            .build();
        let status = StatusCode::try_from(400).expect("status");
        SdkError::service_error(
            aws_sdk_dynamodb::operation::get_item::GetItemError::generic(meta),
            Response::new(status, SdkBody::empty()),
        )
    }

    #[cfg(feature = "dynamodb")]
    #[test]
    fn an_access_denied_store_error_tells_the_api_client_no_table_arn_or_aws_code() {
        let e = store_error(
            "DynamoDB GetItem mir-prod-data-Twins1A2B3C",
            access_denied(),
        );
        assert!(
            matches!(&e, StoreError::Unavailable { message, .. } if message.ends_with("access denied")),
            "{e}"
        );
        assert!(
            e.is_retryable(),
            "kept for a redrive once the grant is fixed"
        );
        let resp = crate::api::with_request_id(
            crate::api::error_response(&crate::api::ApiError::from(e)),
            "JKJaXmPLvHcESHA=",
        );
        assert_eq!(resp.status_code, 503);
        let Some(aws_lambda_events::encodings::Body::Text(body)) = resp.body else {
            panic!("a text body");
        };
        let body: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({
                "error": "the store is unavailable; retry later",
                "requestId": "JKJaXmPLvHcESHA="
            })
        );
    }

    #[cfg(feature = "dynamodb")]
    #[test]
    fn a_server_error_without_a_code_is_retryable_not_corrupt_data() {
        use aws_smithy_runtime_api::http::StatusCode;
        use aws_smithy_types::{body::SdkBody, error::ErrorMetadata};
        let html = |status: u16| {
            SdkError::service_error(
                aws_sdk_dynamodb::operation::query::QueryError::generic(
                    ErrorMetadata::builder().build(),
                ),
                Response::new(
                    StatusCode::try_from(status).expect("status"),
                    SdkBody::from("<html><body>Internal Server Error</body></html>"),
                ),
            )
        };
        let e = store_error("DynamoDB Query twins", html(500));
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e}");
        assert!(e.is_retryable());
        let e = store_error("DynamoDB Query twins", html(400));
        assert!(
            matches!(e, StoreError::Corrupt(_)),
            "a 4xx without a code: {e}"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn backoff_stays_under_the_cap() {
        for attempt in 1..30 {
            let d = backoff(attempt, Duration::from_millis(50), Duration::from_secs(2));
            assert!(d <= Duration::from_secs(2));
        }
    }
}
