//! Lambda entry point of `api-telemetry`: API Gateway (HTTP API, payload v2) -> [`mir_fn_api_telemetry::handle`].
//! Configuration from the environment, adapters built once per cold start
//! (see `mir_shared::lambda`).

use mir_shared::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let env = lambda::init("api-telemetry").await?;
    // Built once per process and kept for its lifetime.
    let deps = Box::leak(Box::new(mir_fn_api_telemetry::Deps {
        twins: env.ports.twins()?,
        schemas: env.ports.schemas()?,
        telemetry: env.ports.telemetry_reader()?,
        cache: &env.cache,
        clock: &env.clock,
    }));
    let deps: &'static _ = deps;
    lambda::run_api(|request| async move { mir_fn_api_telemetry::handle(deps, &request).await })
        .await
}
