//! Lambda entry point of `api-config`: API Gateway (HTTP API, payload v2) -> [`mir_fn_api_config::handle`].
//! Ports built once per cold start from the environment, the handler's `Deps` taken
//! from them (see `mir_shared::lambda`); each request comes with the Lambda deadline.

use mir_shared::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let deps = mir_fn_api_config::Deps::try_from(lambda::init("api-config").await?)?;
    let deps = &deps;
    lambda::run_api_within(|request, invocation| async move {
        mir_fn_api_config::handle(deps, &request, invocation).await
    })
    .await
}
