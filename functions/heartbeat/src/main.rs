//! Lambda entry point of `heartbeat`: the IoT rule's event -> [`mir_fn_heartbeat::handle`].
//! Ports built once per cold start from the environment, the handler's `Deps` taken
//! from them (see `mir_shared::lambda`).

use mir_shared::{lambda, rule_event::RuleEvent};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let deps = mir_fn_heartbeat::Deps::try_from(lambda::init("heartbeat").await?)?;
    let deps = &deps;
    lambda::run_rule(|event: RuleEvent| async move { mir_fn_heartbeat::handle(deps, &event).await })
        .await
}
