//! `api-commands`: `/v1/commands...` — list the commands devices accept (with JSON
//! templates), send a command to every targeted device and collect the answers, and
//! read one command record.
//!
//! Sending (see [`send`]) validates the JSON against each device's schema (errors name
//! the field), encodes it, refuses a payload too large for MQTT or a command record
//! (413), then records and publishes to every device concurrently and waits until one
//! absolute deadline: the requested timeout (default 10 s, at most 25 s), capped by the
//! invocation's remaining time less [`FINISH_MARGIN`]. Every device still pending then
//! is recorded TIMEOUT. `noWait` returns command ids to poll; a record read past its
//! deadline while still pending is recorded TIMEOUT by that read, so no record stays
//! PENDING. An offline device fails fast.
//!
//! Architecture: see docs/architecture.md in the repository (sections Routes, Delivery semantics).

mod send;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};

use mir_shared::{
    api::{self, ApiError, ApiRequest, Catalog, SendCommand},
    domain::{command::CommandOutcome, CommandRecord, CommandStatus, Event, EventReason},
    invocation::Invocation,
    ports::StoreError,
    schema::MessageKind,
    service,
};

pub use send::{
    send, DEFAULT_TIMEOUT, FINISH_MARGIN, MAX_TIMEOUT, PUBLISH_CONCURRENCY, STORE_CONCURRENCY,
};

/// The error of a command that got no answer by its deadline.
pub const NO_ANSWER: &str = "the device did not answer in time";

mir_shared::deps! {
    /// The ports `api-commands` uses.
    pub struct Deps { twins, schemas, commands, events, publisher, cache, clock }
}

/// One request, to be answered before `invocation`'s deadline.
pub async fn handle(
    deps: &Deps<'_>,
    event: &ApiGatewayV2httpRequest,
    invocation: Invocation,
) -> ApiGatewayV2httpResponse {
    let req = match ApiRequest::from_event(event) {
        Ok(r) => r,
        Err(e) => return api::error_response(&e),
    };
    match req.route_key.as_str() {
        "GET /v1/commands" => api::respond(catalog(deps, &req, MessageKind::Command).await),
        "POST /v1/commands" => match req.json::<SendCommand>() {
            Ok(body) => api::respond(send(deps, body, invocation).await.map(|r| (200, r))),
            Err(e) => api::error_response(&e),
        },
        "GET /v1/commands/{commandId}" => api::respond(get(deps, &req).await),
        other => api::error_response(&ApiError::not_found(format!("no route {other}"))),
    }
}

/// The messages of `kind` each targeted device accepts, with templates.
pub async fn catalog(
    deps: &Deps<'_>,
    req: &ApiRequest,
    kind: MessageKind,
) -> Result<(u16, Catalog), ApiError> {
    let found = service::catalog(
        deps.twins,
        deps.schemas,
        deps.cache,
        &req.targets()?,
        req.query_value("name"),
        kind,
    )
    .await?;
    Ok((200, found))
}

/// One command record. A record still pending past its deadline (a `noWait` command
/// nobody answered, or a call that ended before it could record the timeout) timed
/// out: this read records TIMEOUT, conditionally, so an answer stored first wins and a
/// later one changes nothing.
async fn get(deps: &Deps<'_>, req: &ApiRequest) -> Result<(u16, CommandRecord), ApiError> {
    let id = req.path_param("commandId")?;
    let rec = deps
        .commands
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("command {id} does not exist")))?;
    if rec.status.is_final() || deps.clock.now() <= rec.deadline {
        return Ok((200, rec));
    }
    let (rec, event) = end(deps, id, CommandStatus::Timeout, NO_ANSWER).await?;
    record(deps, &event.into_iter().collect::<Vec<_>>()).await;
    Ok((200, rec))
}

/// Appends events about commands. A failure is logged, not answered: the records hold
/// the outcome, and the caller must get it (after a send, a 5xx would invite sending
/// the commands again; after a read that recorded TIMEOUT, the next read finds the
/// record ended and appends nothing).
pub(crate) async fn record(deps: &Deps<'_>, events: &[Event]) {
    if events.is_empty() {
        return;
    }
    if let Err(e) = deps.events.append(events).await {
        tracing::error!(error = %e, events = events.len(), "could not record the command events");
    }
}

/// Ends a pending command with `status` and `message`, conditionally: only a record
/// still PENDING changes (the store's `complete`, as `command-response` uses), so an
/// answer that lands at the same moment either wins or loses whole. Returns the record
/// as stored afterwards and, when this call ended it, its CommandFailed event.
pub(crate) async fn end(
    deps: &Deps<'_>,
    id: &str,
    status: CommandStatus,
    message: &str,
) -> Result<(CommandRecord, Option<Event>), StoreError> {
    let now = deps.clock.now();
    let outcome = CommandOutcome {
        status,
        response_name: None,
        response: None,
        error: Some(message.to_string()),
        completed_at: now,
    };
    let (rec, changed) = deps.commands.complete(id, outcome).await?;
    if !changed {
        return Ok((rec, None));
    }
    let mut ev = Event::new(
        EventReason::CommandFailed,
        &rec.device_id,
        now,
        &format!("{id}|{status:?}"),
        format!("{}: {message}", rec.name),
    )
    .with_payload(serde_json::json!({ "commandId": id }));
    ev.name = rec.device_name.clone();
    ev.namespace = rec.namespace.clone();
    Ok((rec, Some(ev)))
}

#[cfg(test)]
mod tests;
