//! Lambda entry point of `api-devices`: API Gateway (HTTP API, payload v2) -> [`mir_fn_api_devices::handle`].
//! Ports built once per cold start from the environment, the handler's `Deps` taken
//! from them (see `mir_shared::lambda`).

use mir_shared::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let deps = mir_fn_api_devices::Deps::try_from(lambda::init("api-devices").await?)?;
    let deps = &deps;
    lambda::run_api(|request| async move { mir_fn_api_devices::handle(deps, &request).await }).await
}
