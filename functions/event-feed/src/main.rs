//! Lambda entry point of `event-feed`: the events table's DynamoDB stream ->
//! [`mir_fn_event_feed::handle`]. Ports built once per cold start from the environment;
//! records are read and failures reported as `mir_shared::lambda::run_event_stream`
//! says.

use mir_shared::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let deps = mir_fn_event_feed::Deps::try_from(lambda::init("event-feed").await?)?;
    let deps = &deps;
    lambda::run_event_stream(|events| async move { mir_fn_event_feed::handle(deps, events).await })
        .await
}
