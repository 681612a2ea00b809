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
//!   [`run_api_within`] also hands it the invocation's deadline ([`Invocation`]).

use std::{future::Future, sync::OnceLock};

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::{de::DeserializeOwned, Serialize};

use crate::adapters::aws::AwsEnvironment;
use crate::api;
use crate::failure::{self, InvocationInput};
use crate::invocation::Invocation;
use crate::ports::Ports;
use crate::service::HandlerError;

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
