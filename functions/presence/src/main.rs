//! Lambda entry point of `presence`: the IoT rule's event -> [`mir_fn_presence::handle`].
//! Ports built once per cold start from the environment, the handler's `Deps` taken
//! from them (see `mir_shared::lambda`).

use mir_shared::{lambda, rule_event::PresenceInput};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let deps = mir_fn_presence::Deps::try_from(lambda::init("presence").await?)?;
    let deps = &deps;
    lambda::run_rule(
        |event: PresenceInput| async move { mir_fn_presence::handle(deps, &event).await },
    )
    .await
}
