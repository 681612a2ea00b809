//! Lambda entry point of `hello`: the IoT rule's event -> [`mir_fn_hello::handle`].
//! Configuration from the environment, adapters built once per cold start
//! (see `mir_shared::lambda`).

use mir_shared::{lambda, rule_event::RuleEvent};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let env = lambda::init("hello").await?;
    // Built once per process and kept for its lifetime.
    let deps = Box::leak(Box::new(mir_fn_hello::Deps {
        twins: env.ports.twins()?,
        schemas: env.ports.schemas()?,
        events: env.ports.events()?,
        cache: &env.cache,
    }));
    let deps: &'static _ = deps;
    lambda::run_rule(|event: RuleEvent| async move { mir_fn_hello::handle(deps, &event).await })
        .await
}
