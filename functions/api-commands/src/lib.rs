//! `api-commands`: `/v1/commands...` — list the commands devices accept (with JSON
//! templates), send a command to every targeted device and collect the answers, and
//! read one command record.
//!
//! Sending validates the JSON against each device's schema (errors name the field),
//! encodes it, records a pending command, publishes it and waits (at most 25 s) for the
//! answers; an offline device fails fast. `noWait` returns command ids to poll.
//!
//! Architecture: see docs/architecture.md in the repository (sections Routes, Delivery semantics).

use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use prost::Message;

use mir_proto::{topics::DeviceTopic, wire::CommandRequest};
use mir_shared::{
    api::{self, ApiError, ApiRequest, Catalog, CommandResult, CommandResults, SendCommand},
    domain::{command::CommandOutcome, CommandRecord, CommandStatus, Event, EventReason, Twin},
    ports::PublishError,
    schema::MessageKind,
    service,
};

/// Default time to wait for answers.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait (API Gateway's integration timeout is 29 s).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(25);

mir_shared::deps! {
    /// The ports `api-commands` uses.
    pub struct Deps { twins, schemas, commands, events, publisher, cache, clock }
}

pub async fn handle(deps: &Deps<'_>, event: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let req = match ApiRequest::from_event(event) {
        Ok(r) => r,
        Err(e) => return api::error_response(&e),
    };
    match req.route_key.as_str() {
        "GET /v1/commands" => api::respond(catalog(deps, &req, MessageKind::Command).await),
        "POST /v1/commands" => match req.json::<SendCommand>() {
            Ok(body) => api::respond(send(deps, body).await.map(|r| (200, r))),
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

async fn get(deps: &Deps<'_>, req: &ApiRequest) -> Result<(u16, CommandRecord), ApiError> {
    let id = req.path_param("commandId")?;
    let rec = deps
        .commands
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("command {id} does not exist")))?;
    Ok((200, rec))
}

fn result_for(twin: &Twin, status: CommandStatus, error: Option<String>) -> CommandResult {
    CommandResult {
        device_id: twin.spec.device_id.clone(),
        name: twin.meta.name.clone(),
        namespace: twin.meta.namespace.clone(),
        command_id: None,
        status,
        response_name: None,
        response: None,
        error,
    }
}

/// Sends `cmd` to every targeted device and returns one result per device.
pub async fn send(deps: &Deps<'_>, cmd: SendCommand) -> Result<CommandResults, ApiError> {
    let timeout = cmd
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_TIMEOUT)
        .min(MAX_TIMEOUT);
    let twins = deps.twins.list(&cmd.targets).await?;
    if twins.is_empty() {
        return Err(ApiError::not_found("no device matches the targets"));
    }
    let now = deps.clock.now();
    let deadline =
        now + chrono::Duration::from_std(timeout).unwrap_or_else(|_| chrono::Duration::seconds(10));
    let mut results = Vec::with_capacity(twins.len());
    let mut waiting = Vec::new();
    let mut events = Vec::new();
    for twin in twins.into_iter().map(|t| t.value) {
        let id = twin.spec.device_id.clone();
        let encoded = match deps.cache.get(deps.schemas, &id).await? {
            None => Err("no schema yet: the device has not connected".to_string()),
            Some(schema) => schema
                .message_of_kind(&cmd.name, MessageKind::Command)
                .and_then(|desc| schema.json_to_proto(&desc, &cmd.payload))
                .map_err(|e| e.to_string()),
        };
        let bytes = match encoded {
            Ok(b) => b,
            Err(e) => {
                results.push(result_for(&twin, CommandStatus::Error, Some(e)));
                continue;
            }
        };
        if cmd.dry_run {
            results.push(result_for(&twin, CommandStatus::Validated, None));
            continue;
        }
        if twin.spec.disabled {
            results.push(result_for(
                &twin,
                CommandStatus::Error,
                Some("device is disabled".into()),
            ));
            continue;
        }
        if !twin.status.online {
            results.push(result_for(
                &twin,
                CommandStatus::Error,
                Some("device is offline".into()),
            ));
            continue;
        }
        let record = CommandRecord {
            id: uuid::Uuid::now_v7().to_string(),
            device_id: id.clone(),
            device_name: twin.meta.name.clone(),
            namespace: twin.meta.namespace.clone(),
            name: cmd.name.clone(),
            request: cmd.payload.clone(),
            status: CommandStatus::Pending,
            response_name: None,
            response: None,
            error: None,
            created_at: now,
            deadline,
            completed_at: None,
        };
        deps.commands.create(&record).await?;
        let request = CommandRequest {
            id: record.id.clone(),
            name: cmd.name.clone(),
            payload: bytes.into(),
            deadline_unix_ms: deadline.timestamp_millis(),
        };
        let device = twin.device_id()?;
        let mut result = result_for(&twin, CommandStatus::Pending, None);
        result.command_id = Some(record.id.clone());
        match deps
            .publisher
            .publish(
                &DeviceTopic::CommandRequest.for_device(&device),
                request.encode_to_vec().into(),
            )
            .await
        {
            Ok(()) => {
                events.push(
                    Event::new(
                        EventReason::CommandSent,
                        &id,
                        now,
                        &record.id,
                        format!("{} sent", cmd.name),
                    )
                    .for_twin(&twin)
                    .with_payload(
                        serde_json::json!({ "commandId": record.id, "request": cmd.payload }),
                    ),
                );
                waiting.push(results.len());
            }
            Err(e) => {
                let message = match e {
                    PublishError::NotConnected(_) => "device is offline".to_string(),
                    other => format!("could not publish: {other}"),
                };
                fail(deps, &record.id, CommandStatus::Error, &message).await?;
                result.status = CommandStatus::Error;
                result.error = Some(message);
            }
        }
        results.push(result);
    }
    deps.events.append(&events).await?;
    if !cmd.no_wait {
        let finals = futures::future::join_all(waiting.iter().map(|&i| {
            let id = results[i].command_id.clone().unwrap_or_default();
            async move { wait(deps, &id, timeout).await }
        }))
        .await;
        for (&i, rec) in waiting.iter().zip(finals) {
            let rec = rec?;
            let r = &mut results[i];
            r.status = rec.status;
            r.response_name = rec.response_name;
            r.response = rec.response;
            r.error = rec.error;
        }
    }
    Ok(CommandResults { results })
}

/// Waits for the answer; marks the command TIMEOUT when none came in time (unless the
/// answer won the race).
async fn wait(deps: &Deps<'_>, id: &str, timeout: Duration) -> Result<CommandRecord, ApiError> {
    if let Some(rec) = deps.commands.wait_final(id, timeout).await? {
        if rec.status.is_final() {
            return Ok(rec);
        }
    }
    fail(
        deps,
        id,
        CommandStatus::Timeout,
        "the device did not answer in time",
    )
    .await
}

async fn fail(
    deps: &Deps<'_>,
    id: &str,
    status: CommandStatus,
    message: &str,
) -> Result<CommandRecord, ApiError> {
    let outcome = CommandOutcome {
        status,
        response_name: None,
        response: None,
        error: Some(message.to_string()),
        completed_at: deps.clock.now(),
    };
    let (rec, changed) = deps.commands.complete(id, outcome).await?;
    if changed {
        let ev = Event::new(
            EventReason::CommandFailed,
            &rec.device_id,
            deps.clock.now(),
            &format!("{id}|{status:?}"),
            format!("{}: {message}", rec.name),
        )
        .with_payload(serde_json::json!({ "commandId": id }));
        let mut ev = ev;
        ev.name = rec.device_name.clone();
        ev.namespace = rec.namespace.clone();
        deps.events.append(&[ev]).await?;
    }
    Ok(rec)
}

#[cfg(test)]
mod tests;
