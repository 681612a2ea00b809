//! Lambda entry point of `heartbeat`: the IoT rule's event -> [`mir_fn_heartbeat::handle`].
//! Configuration from the environment, adapters built once per cold start
//! (see `mir_shared::lambda`).

use mir_shared::{lambda, rule_event::RuleEvent};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let env = lambda::init("heartbeat").await?;
    // Built once per process and kept for its lifetime.
    let deps = Box::leak(Box::new(mir_fn_heartbeat::Deps {
        twins: env.ports.twins()?,
        events: env.ports.events()?,
    }));
    let deps: &'static _ = deps;
    lambda::run_rule(|event: RuleEvent| async move { mir_fn_heartbeat::handle(deps, &event).await })
        .await
}
