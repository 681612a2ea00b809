//! The Lambda wiring every function's `main.rs` shares (feature `lambda`).
//!
//! ```no_run
//! use mir_shared::{lambda, ports::{MissingPort, Ports, TwinStore}, rule_event::RuleEvent};
//! use mir_shared::service::HandlerError;
//!
//! // A function crate's lib: its Deps, taken from the environment's ports, and its handler.
//! struct Deps<'a> {
//!     twins: &'a dyn TwinStore,
//! }
//! impl<'a> TryFrom<&'a Ports> for Deps<'a> {
//!     type Error = MissingPort;
//!     fn try_from(ports: &'a Ports) -> Result<Self, MissingPort> {
//!         Ok(Self { twins: ports.twins()? })
//!     }
//! }
//! async fn handle(deps: &Deps<'_>, event: &RuleEvent) -> Result<bool, HandlerError> {
//!     Ok(deps.twins.get(event.device()?.as_str()).await?.is_some())
//! }
//!
//! // Its main.rs.
//! #[tokio::main]
//! async fn main() -> Result<(), lambda::Error> {
//!     let deps = Deps::try_from(lambda::init("hello").await?)?;
//!     let deps = &deps;
//!     lambda::run_rule(|event: RuleEvent| async move { handle(deps, &event).await }).await
//! }
//! ```
//!
//! - logs: JSON lines on stdout (CloudWatch), level from `RUST_LOG` (default `info`); the
//!   configuration is logged once per cold start (it holds no secret);
//! - adapters: built once per cold start from the environment
//!   ([`AwsEnvironment::from_env`]) into the process's [`Ports`]; a missing or invalid
//!   variable, or a port the function's `Deps` needs and the environment lacks, fails
//!   the cold start with its name;
//! - device routes ([`run_rule`]): an error a retry can fix is returned as the
//!   invocation's error, so the asynchronous invocation is retried and then goes to the
//!   failure queue; any other error is logged, recorded as an `InvalidMessage` event and
//!   acknowledged as success ([`crate::failure::settle`]), so that neither AWS retries
//!   it nor does it fill the failure queue;
//! - HTTP routes ([`run_api`]): the handler always answers (errors are HTTP statuses);
//!   [`run_api_within`] also hands it the invocation's deadline ([`Invocation`]);
//! - the events table's stream ([`run_event_stream`]): the inserted events, in order;
//!   a failure a retry can fix is reported for the first event that did not go out
//!   (`ReportBatchItemFailures`), so Lambda retries the stream from that record.

use std::{future::Future, sync::OnceLock};

use aws_lambda_events::{
    apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse},
    dynamodb::Event as DynamoDbStreamEvent,
    streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse},
};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::{de::DeserializeOwned, Serialize};

use crate::adapters::{aws::AwsEnvironment, dynamodb::event_of_image};
use crate::api;
use crate::domain::Event;
use crate::failure::{self, InvocationInput};
use crate::invocation::Invocation;
use crate::ports::Ports;
use crate::service::{feed::Partial, HandlerError};

pub use lambda_runtime::Error;

/// The process's ports, built once per cold start.
static PORTS: OnceLock<Ports> = OnceLock::new();
/// The function's name in `routes.json`, as given to [`init`].
static FUNCTION: OnceLock<&'static str> = OnceLock::new();

/// JSON logs, filtered by `RUST_LOG` (default `info`). Safe to call twice.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}

/// Cold start: logs, configuration, adapters. Returns the process-wide [`Ports`], from
/// which the function derives its `Deps` (`Deps::try_from(ports)?`).
pub async fn init(function: &'static str) -> Result<&'static Ports, Error> {
    init_tracing();
    let _ = FUNCTION.set(function);
    if let Some(ports) = PORTS.get() {
        return Ok(ports);
    }
    let env = AwsEnvironment::from_env().await.inspect_err(|e| {
        tracing::error!(function, error = %e, "invalid configuration");
    })?;
    tracing::info!(function, config = %env.config, "cold start");
    Ok(PORTS.get_or_init(|| env.ports))
}

/// Runs a device-route handler (IoT rule or schedule events) until the runtime stops.
/// Only errors a retry can fix fail the invocation (see the module docs).
pub async fn run_rule<E, O, F, Fut>(handler: F) -> Result<(), Error>
where
    E: DeserializeOwned + InvocationInput + Clone + Send + 'static,
    O: Serialize + Send + 'static,
    F: Fn(E) -> Fut + Send + Sync,
    Fut: Future<Output = Result<O, HandlerError>> + Send,
{
    let handler = &handler;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<E>| async move {
        let request_id = ev.context.request_id.clone();
        let function = FUNCTION.get().copied().unwrap_or("unknown");
        let events = PORTS.get().and_then(|p| p.events.as_deref());
        let input = ev.payload.clone();
        match failure::settle(function, events, &input, handler(ev.payload).await).await {
            Ok(out) => {
                tracing::debug!(%request_id, %out, "done");
                Ok(out)
            }
            Err(e) => {
                tracing::error!(%request_id, error = %e, retryable = true, "handler failed; AWS retries it");
                Err(Error::from(e))
            }
        }
    }))
    .await
}

/// Runs an HTTP API handler (API Gateway payload v2): every request gets a response.
pub async fn run_api<F, Fut>(handler: F) -> Result<(), Error>
where
    F: Fn(ApiGatewayV2httpRequest) -> Fut + Send + Sync,
    Fut: Future<Output = ApiGatewayV2httpResponse> + Send,
{
    run_api_within(move |request, _| handler(request)).await
}

/// [`run_api`] for a handler that needs its deadline: each request comes with the
/// [`Invocation`] of the Lambda context's deadline (milliseconds since the epoch).
pub async fn run_api_within<F, Fut>(handler: F) -> Result<(), Error>
where
    F: Fn(ApiGatewayV2httpRequest, Invocation) -> Fut + Send + Sync,
    Fut: Future<Output = ApiGatewayV2httpResponse> + Send,
{
    let handler = &handler;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<ApiGatewayV2httpRequest>| async move {
        let route = ev.payload.route_key.clone().unwrap_or_default();
        let api_request_id = ev.payload.request_context.request_id.clone().unwrap_or_default();
        let invocation = Invocation::from_epoch_ms(ev.context.deadline);
        let resp = api::with_request_id(handler(ev.payload, invocation).await, &api_request_id);
        if resp.status_code >= 500 {
            tracing::error!(request_id = %ev.context.request_id, %api_request_id, %route, status = resp.status_code, "request failed");
        } else {
            tracing::debug!(request_id = %ev.context.request_id, %api_request_id, %route, status = resp.status_code, "request");
        }
        Ok::<_, Error>(resp)
    }))
    .await
}

/// The events of a batch of the events table's stream, each with its record's sequence
/// number. Only inserted events count (the event source mapping lets no other record
/// through); an image that does not decode is logged and skipped, since no retry can
/// decode it.
pub fn stream_events(batch: DynamoDbStreamEvent) -> Vec<(Event, String)> {
    batch
        .records
        .into_iter()
        .filter(|r| r.event_name == "INSERT")
        .filter_map(|r| {
            let sequence = r.change.sequence_number.clone().unwrap_or_default();
            match event_of_image(r.change.new_image) {
                Ok(Some(event)) => Some((event, sequence)),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(%sequence, error = %e, "stream record skipped");
                    None
                }
            }
        })
        .collect()
}

/// The batch response for `outcome`: no failure, or the record of the first event that
/// did not go out when a retry can publish it (Lambda retries from there). A failure no
/// retry can fix is logged and the batch acknowledged.
pub fn stream_response<O: Serialize>(
    sequences: &[String],
    outcome: Result<O, Partial>,
) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    match outcome {
        Ok(out) => {
            let out = serde_json::to_string(&out).unwrap_or_default();
            tracing::debug!(%out, "batch done");
        }
        Err(p) if p.is_retryable() => match sequences.get(p.published) {
            Some(sequence) => {
                tracing::warn!(error = %p, %sequence, "batch failed; Lambda retries from this record");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(sequence.clone());
                response.batch_item_failures.push(failure);
            }
            None => tracing::warn!(error = %p, "batch failed after its last event"),
        },
        Err(p) => tracing::error!(error = %p, retryable = false, "batch failed; not retried"),
    }
    response
}

/// Runs a handler of the events table's stream until the runtime stops (see the module
/// docs): [`stream_events`] in, [`stream_response`] out.
pub async fn run_event_stream<O, F, Fut>(handler: F) -> Result<(), Error>
where
    O: Serialize + Send + 'static,
    F: Fn(Vec<Event>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<O, Partial>> + Send,
{
    let handler = &handler;
    lambda_runtime::run(service_fn(
        move |ev: LambdaEvent<DynamoDbStreamEvent>| async move {
            let (events, sequences): (Vec<Event>, Vec<String>) =
                stream_events(ev.payload).into_iter().unzip();
            let outcome = handler(events).await;
            Ok::<_, Error>(stream_response(&sequences, outcome))
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::FeedError;

    fn sequences() -> Vec<String> {
        ["100", "200", "300"].map(String::from).to_vec()
    }

    fn unavailable(published: usize) -> Partial {
        Partial {
            published,
            error: HandlerError::Feed(FeedError::Unavailable {
                published,
                message: "throttled".into(),
                source: None,
            }),
        }
    }

    #[test]
    fn a_batch_that_went_out_reports_no_failure() {
        let r = stream_response(&sequences(), Ok(3));
        assert!(r.batch_item_failures.is_empty());
    }

    #[test]
    fn a_retryable_failure_reports_the_record_of_the_first_event_that_did_not_go_out() {
        let r = stream_response::<()>(&sequences(), Err(unavailable(1)));
        let ids: Vec<Option<String>> = r
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        assert_eq!(ids, vec![Some("200".to_string())]);
    }

    #[test]
    fn a_failure_no_retry_can_fix_acknowledges_the_batch() {
        let refused = Partial {
            published: 0,
            error: HandlerError::Feed(FeedError::Refused {
                id: "e1".into(),
                code: "InvalidArgument".into(),
            }),
        };
        let r = stream_response::<()>(&sequences(), Err(refused));
        assert!(r.batch_item_failures.is_empty());
    }

    #[test]
    fn stream_records_of_new_events_decode_and_the_rest_are_skipped() {
        let event = crate::domain::Event::new(
            crate::domain::EventReason::DeviceOnline,
            "d1",
            chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default(),
            "c1",
            "online",
        );
        let image = |pk: &str, with_event: bool| {
            let mut item = serde_json::json!({
                "pk": {"S": pk}, "sk": {"S": "0001:e"}, "gsi1pk": {"S": "x"},
                "gsi1sk": {"S": "y"}, "expiresAt": {"N": "1790000000"}
            });
            if with_event {
                item["event"] = serde_json::json!({"M": {
                    "id": {"S": event.id}, "time": {"S": "2026-09-21T13:46:40Z"},
                    "type": {"S": "Normal"}, "reason": {"S": "DeviceOnline"},
                    "deviceId": {"S": "d1"}, "message": {"S": "online"}
                }});
            }
            item
        };
        let record = |name: &str, seq: &str, image: serde_json::Value| {
            serde_json::json!({
                "eventID": seq, "eventName": name, "eventVersion": "1.1",
                "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/e/stream/2026",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1790000000,
                    "Keys": {"pk": image["pk"], "sk": image["sk"]},
                    "NewImage": image, "SequenceNumber": seq, "SizeBytes": 120,
                    "StreamViewType": "NEW_IMAGE"
                }
            })
        };
        let batch = serde_json::json!({"Records": [
            record("INSERT", "1", image("DAY#2026-09-21#03", true)),
            record("INSERT", "2", image("DAYS", false)),
            record("MODIFY", "3", image("DAY#2026-09-21#03", true)),
            record("INSERT", "4", image("DAY#2026-09-21#04", false)),
        ]});
        let got = stream_events(serde_json::from_value(batch).expect("a stream event"));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, "1");
        assert_eq!(got[0].0.id, event.id);
        assert_eq!(got[0].0.reason, crate::domain::EventReason::DeviceOnline);
    }
}
