//! Lambda entry point of `desired`: the IoT rule's event -> [`mir_fn_desired::handle`].
//! Ports built once per cold start from the environment, the handler's `Deps` taken
//! from them (see `mir_shared::lambda`).

use mir_shared::{lambda, rule_event::RuleEvent};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let deps = mir_fn_desired::Deps::try_from(lambda::init("desired").await?)?;
    let deps = &deps;
    lambda::run_rule(|event: RuleEvent| async move { mir_fn_desired::handle(deps, &event).await })
        .await
}
