//! Lambda entry point of `telemetry`: the IoT rule's event -> [`mir_fn_telemetry::handle`].
//! Configuration from the environment, adapters built once per cold start
//! (see `mir_shared::lambda`).

use mir_shared::{lambda, rule_event::RuleEvent};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let env = lambda::init("telemetry").await?;
    // Built once per process and kept for its lifetime.
    let deps = Box::leak(Box::new(mir_fn_telemetry::Deps {
        twins: env.ports.twins()?,
        schemas: env.ports.schemas()?,
        sink: env.ports.telemetry_sink()?,
        events: env.ports.events()?,
        publisher: env.ports.publisher()?,
        cache: &env.cache,
    }));
    let deps: &'static _ = deps;
    lambda::run_rule(|event: RuleEvent| async move { mir_fn_telemetry::handle(deps, &event).await })
        .await
}
