//! Lambda entry point of `api-commands`: API Gateway (HTTP API, payload v2) -> [`mir_fn_api_commands::handle`].
//! Configuration from the environment, adapters built once per cold start
//! (see `mir_shared::lambda`).

use mir_shared::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let env = lambda::init("api-commands").await?;
    // Built once per process and kept for its lifetime.
    let deps = Box::leak(Box::new(mir_fn_api_commands::Deps {
        twins: env.ports.twins()?,
        schemas: env.ports.schemas()?,
        commands: env.ports.commands()?,
        events: env.ports.events()?,
        publisher: env.ports.publisher()?,
        cache: &env.cache,
        clock: &env.clock,
    }));
    let deps: &'static _ = deps;
    lambda::run_api(|request| async move { mir_fn_api_commands::handle(deps, &request).await })
        .await
}
