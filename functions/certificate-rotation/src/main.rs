//! Lambda entry point of `certificate-rotation`: the EventBridge schedule ->
//! [`mir_fn_certificate_rotation::handle`]. Ports built once per cold start from the
//! environment (see `mir_shared::lambda`).

use mir_shared::{lambda, rule_event::ScheduledEvent};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let deps =
        mir_fn_certificate_rotation::Deps::try_from(lambda::init("certificate-rotation").await?)?;
    let deps = &deps;
    lambda::run_rule(|event: ScheduledEvent| async move {
        mir_fn_certificate_rotation::handle(deps, event.time).await
    })
    .await
}
