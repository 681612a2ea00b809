//! Lambda entry point of `presence`: the IoT rule's event -> [`mir_fn_presence::handle`].
//! Configuration from the environment, adapters built once per cold start
//! (see `mir_shared::lambda`).

use mir_shared::{lambda, rule_event::PresenceInput};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let env = lambda::init("presence").await?;
    // Built once per process and kept for its lifetime.
    let deps = Box::leak(Box::new(mir_fn_presence::Deps {
        twins: env.ports.twins()?,
        events: env.ports.events()?,
        clock: &env.clock,
        stale_after: mir_fn_presence::default_stale_after(),
    }));
    let deps: &'static _ = deps;
    lambda::run_rule(
        |event: PresenceInput| async move { mir_fn_presence::handle(deps, &event).await },
    )
    .await
}
