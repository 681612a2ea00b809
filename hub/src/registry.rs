//! The function registry: the one place that maps a function name of `routes.json` to
//! its handler, so the hub (and its tests) dispatch every rule, lifecycle, schedule and
//! API event the way AWS does, over one [`Ports`] bundle.
//!
//! Adding a route means its crate, its entry in `shared/routes.json`, and one line in
//! [`REGISTRY`]; `every_function_of_the_routes_file_is_dispatched` fails until then.

use std::future::Future;
use std::pin::Pin;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use mir_shared::{
    api::{error_response, ApiError},
    domain::Event,
    invocation::Invocation,
    ports::{MissingPort, Ports},
    rule_event::{PresenceInput, RuleEvent},
    service::HandlerError,
};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an invocation failed, and whether the platform retries it.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The environment lacks a port the function needs (a wiring bug: not retried).
    #[error(transparent)]
    MissingPort(#[from] MissingPort),
    #[error(transparent)]
    Handler(#[from] HandlerError),
    /// The handler's outcome could not be serialized (never expected).
    #[error("cannot serialize the outcome: {0}")]
    Outcome(#[from] serde_json::Error),
}

impl InvokeError {
    /// Whether a retry of the same event can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            InvokeError::Handler(e) => e.is_retryable(),
            InvokeError::MissingPort(_) | InvokeError::Outcome(_) => false,
        }
    }
}

/// A device route: invoked by an IoT rule with the rule event.
pub type RuleFn = for<'a> fn(&'a Ports, &'a RuleEvent) -> BoxFuture<'a, Result<Value, InvokeError>>;
/// The lifecycle route: invoked with AWS lifecycle events (or a scheduled event).
pub type PresenceFn =
    for<'a> fn(&'a Ports, &'a PresenceInput) -> BoxFuture<'a, Result<Value, InvokeError>>;
/// A scheduled run (the presence sweep, the certificate rotation), at a time.
pub type ScheduleFn =
    for<'a> fn(&'a Ports, DateTime<Utc>) -> BoxFuture<'a, Result<Value, InvokeError>>;
/// A function of the events table's stream: the stored events, in order.
pub type StreamFn = for<'a> fn(&'a Ports, Vec<Event>) -> BoxFuture<'a, Result<Value, InvokeError>>;
/// An HTTP route: API Gateway (payload v2) in, response out, before the invocation's
/// deadline.
pub type ApiFn = for<'a> fn(
    &'a Ports,
    &'a ApiGatewayV2httpRequest,
    Invocation,
) -> BoxFuture<'a, ApiGatewayV2httpResponse>;

/// How one function is invoked.
#[derive(Clone, Copy)]
pub enum Function {
    Rule(RuleFn),
    Presence {
        lifecycle: PresenceFn,
        schedule: ScheduleFn,
    },
    Api(ApiFn),
    /// A function run by its schedule alone.
    Schedule(ScheduleFn),
    /// A function of the events table's stream (the hub runs it after each append).
    Stream(StreamFn),
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Function::Rule(_) => "Rule",
            Function::Presence { .. } => "Presence",
            Function::Api(_) => "Api",
            Function::Schedule(_) => "Schedule",
            Function::Stream(_) => "Stream",
        })
    }
}

fn outcome<T: Serialize>(r: Result<T, HandlerError>) -> Result<Value, InvokeError> {
    Ok(serde_json::to_value(r?)?)
}

/// A device route of crate `$krate` (`Deps: TryFrom<&Ports>`, `handle(&Deps, &RuleEvent)`).
macro_rules! rule {
    ($krate:ident) => {
        Function::Rule(|ports, event| {
            Box::pin(async move {
                let deps = $krate::Deps::try_from(ports)?;
                outcome($krate::handle(&deps, event).await)
            })
        })
    };
}

/// A scheduled function of crate `$krate` (`handle(&Deps, DateTime<Utc>)`).
macro_rules! schedule {
    ($krate:ident) => {
        Function::Schedule(|ports, now| {
            Box::pin(async move {
                let deps = $krate::Deps::try_from(ports)?;
                outcome($krate::handle(&deps, now).await)
            })
        })
    };
}

/// An HTTP route of crate `$krate`; a missing port answers 500 (and is logged).
/// `within`: its `handle` takes the invocation's deadline too.
macro_rules! api {
    ($krate:ident) => {
        Function::Api(|ports, request, _| {
            Box::pin(async move {
                match $krate::Deps::try_from(ports) {
                    Ok(deps) => $krate::handle(&deps, request).await,
                    Err(e) => missing_port_response(e),
                }
            })
        })
    };
    ($krate:ident, within) => {
        Function::Api(|ports, request, invocation| {
            Box::pin(async move {
                match $krate::Deps::try_from(ports) {
                    Ok(deps) => $krate::handle(&deps, request, invocation).await,
                    Err(e) => missing_port_response(e),
                }
            })
        })
    };
}

fn missing_port_response(e: MissingPort) -> ApiGatewayV2httpResponse {
    tracing::error!(error = %e, "function wiring");
    error_response(&ApiError {
        status: 500,
        message: "internal error".into(),
    })
}

/// Every function of `routes.json`, by name.
pub const REGISTRY: &[(&str, Function)] = &[
    ("hello", rule!(mir_fn_hello)),
    ("heartbeat", rule!(mir_fn_heartbeat)),
    (
        "presence",
        Function::Presence {
            lifecycle: |ports, input| {
                Box::pin(async move {
                    let deps = mir_fn_presence::Deps::try_from(ports)?;
                    outcome(mir_fn_presence::handle(&deps, input).await)
                })
            },
            schedule: |ports, now| {
                Box::pin(async move {
                    let deps = mir_fn_presence::Deps::try_from(ports)?;
                    outcome(mir_fn_presence::sweep(&deps, now).await)
                })
            },
        },
    ),
    ("telemetry", rule!(mir_fn_telemetry)),
    ("reported", rule!(mir_fn_reported)),
    ("desired", rule!(mir_fn_desired)),
    ("command-response", rule!(mir_fn_command_response)),
    ("api-devices", api!(mir_fn_api_devices)),
    ("api-commands", api!(mir_fn_api_commands, within)),
    ("api-config", api!(mir_fn_api_config, within)),
    ("api-telemetry", api!(mir_fn_api_telemetry)),
    ("api-events", api!(mir_fn_api_events)),
    (
        "certificate-rotation",
        schedule!(mir_fn_certificate_rotation),
    ),
    (
        "event-feed",
        Function::Stream(|ports, events| {
            Box::pin(async move {
                let deps = mir_fn_event_feed::Deps::try_from(ports)?;
                let out = mir_fn_event_feed::handle(&deps, events)
                    .await
                    .map_err(|p| p.error)?;
                Ok(serde_json::to_value(out)?)
            })
        }),
    ),
];

/// The function named `name`.
pub fn function(name: &str) -> Option<Function> {
    REGISTRY.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_shared::routes::RoutesTable;

    #[test]
    fn every_function_of_the_routes_file_is_dispatched() {
        let routes = RoutesTable::load().expect("routes.json");
        for f in &routes.functions {
            let entry = function(&f.name)
                .unwrap_or_else(|| panic!("routes.json names {:?}, which the registry cannot dispatch: add it to REGISTRY", f.name));
            let device_rule = f.rules.iter().any(|r| r.topic_filter.starts_with("mir/"));
            let lifecycle = f
                .rules
                .iter()
                .any(|r| r.topic_filter.starts_with("$aws/events/presence/"));
            match entry {
                Function::Rule(_) => assert!(
                    device_rule && f.http.is_empty() && f.schedules.is_empty(),
                    "{} is registered as a device route",
                    f.name
                ),
                Function::Presence { .. } => assert!(lifecycle, "{} has no lifecycle rule", f.name),
                Function::Api(_) => assert!(
                    !f.http.is_empty() && f.rules.is_empty(),
                    "{} is registered as an HTTP route",
                    f.name
                ),
                Function::Schedule(_) => assert!(
                    !f.schedules.is_empty() && f.rules.is_empty() && f.http.is_empty(),
                    "{} is registered as a scheduled function",
                    f.name
                ),
                Function::Stream(_) => assert!(
                    f.streams.iter().any(|s| s.table == "events")
                        && f.rules.is_empty()
                        && f.http.is_empty(),
                    "{} is registered as a function of the events stream",
                    f.name
                ),
            }
            if !f.streams.is_empty() {
                assert!(
                    matches!(entry, Function::Stream(_)),
                    "{} has a stream the registry cannot run",
                    f.name
                );
            }
            if !f.schedules.is_empty() {
                assert!(
                    matches!(entry, Function::Presence { .. } | Function::Schedule(_)),
                    "{} has a schedule the registry cannot run",
                    f.name
                );
            }
        }
        assert_eq!(
            REGISTRY.len(),
            routes.functions.len(),
            "the registry has functions routes.json does not name"
        );
    }

    /// Every device route that may meet an unknown device provisions it through
    /// `service::provision`, so the device gets its `DeviceCreated` event.
    #[tokio::test]
    async fn every_device_route_that_auto_provisions_records_device_created() {
        use mir_proto::wire::Heartbeat;
        use mir_shared::testing::{env, hello_event, reported_event, rule_event, telemetry_event};
        use prost::Message;

        let hb = Heartbeat::default().encode_to_vec();
        let status = mir_proto::examples::weather::DataRateStatus { sec: 1 }.encode_to_vec();
        let events: Vec<(&str, RuleEvent)> = vec![
            ("hello", hello_event("d-hello", 1)),
            ("heartbeat", rule_event("d-heartbeat", &hb, 1)),
            (
                "telemetry",
                telemetry_event(
                    "d-telemetry",
                    &[("schema.v1.Env", env(1, 20).encode_to_vec(), 1)],
                    1,
                ),
            ),
            (
                "reported",
                reported_event("d-reported", "schema.v1.DataRateStatus", status, 1, 1),
            ),
            ("desired", rule_event("d-desired", b"", 1)),
        ];
        for (name, event) in events {
            let world = mir_shared::testing::TestWorld::new();
            let Some(Function::Rule(handler)) = function(name) else {
                panic!("{name} is a device route")
            };
            // Telemetry before any schema is retried later; the device exists already.
            let _ = handler(&world.ports, &event).await;
            let id = format!("d-{name}");
            assert!(
                world
                    .reasons(&id)
                    .await
                    .contains(&"DeviceCreated".to_string()),
                "{name} auto-provisioned {id} without a DeviceCreated event: {:?}",
                world.reasons(&id).await
            );
            // A redelivery records nothing twice.
            let _ = handler(&world.ports, &event).await;
            let created = world
                .reasons(&id)
                .await
                .iter()
                .filter(|r| *r == "DeviceCreated")
                .count();
            assert_eq!(created, 1, "{name}");
        }
        let world = mir_shared::testing::TestWorld::new();
        let Some(Function::Presence { lifecycle, .. }) = function("presence") else {
            panic!("presence")
        };
        let connected: PresenceInput = serde_json::from_value(serde_json::json!({
            "clientId": "d-presence", "timestamp": 1, "eventType": "connected",
            "sessionIdentifier": "s1", "principalIdentifier": "p", "versionNumber": 0
        }))
        .expect("lifecycle fixture");
        lifecycle(&world.ports, &connected).await.expect("connect");
        assert!(world
            .reasons("d-presence")
            .await
            .contains(&"DeviceCreated".to_string()));
    }

    #[tokio::test]
    async fn a_function_without_its_ports_is_a_missing_port_not_a_panic() {
        let ports = Ports::default();
        let Some(Function::Rule(hello)) = function("hello") else {
            panic!("hello is a device route")
        };
        let event = mir_shared::testing::hello_event("d1", 1);
        let err = hello(&ports, &event).await.expect_err("no stores");
        assert!(
            matches!(err, InvokeError::MissingPort(MissingPort { port: "twins" })),
            "{err:?}"
        );
        assert!(!err.is_retryable());
    }
}
