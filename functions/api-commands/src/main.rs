//! Lambda entry point of `api-commands`: API Gateway (HTTP API, payload v2) -> [`mir_fn_api_commands::handle`].
//! Ports built once per cold start from the environment, the handler's `Deps` taken
//! from them (see `mir_shared::lambda`).

use mir_shared::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let deps = mir_fn_api_commands::Deps::try_from(lambda::init("api-commands").await?)?;
    let deps = &deps;
    lambda::run_api(|request| async move { mir_fn_api_commands::handle(deps, &request).await })
        .await
}
