//! Sending one command to every targeted device within one deadline:
//!
//! 1. prepare: validate and encode for each device, nothing written; a payload too
//!    large for MQTT or for a command record is refused (413) before anything is
//!    recorded or published;
//! 2. publish: record PENDING and publish, [`PUBLISH_CONCURRENCY`] devices at once; a
//!    device still unreached at the deadline is not sent to (ERROR, no record);
//! 3. wait: one batched read of every pending id per tick, until all have ended or the
//!    deadline has come;
//! 4. finish: every record still pending is recorded TIMEOUT, conditionally (an answer
//!    stored first wins), [`STORE_CONCURRENCY`] at once, before the invocation ends.
//!
//! The deadline is absolute and taken once, at the start: the requested timeout,
//! capped by the invocation's remaining time less [`FINISH_MARGIN`]. Time is read from
//! the `clock` port (record times, the deadline sent to devices) and measured on
//! tokio's monotonic clock (the waits).

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use prost::Message;
use tokio::time::Instant;

use mir_proto::{topics::DeviceTopic, wire::CommandRequest};
use mir_shared::{
    api::{self, ApiError, CommandResult, CommandResults, SendCommand},
    domain::{CommandRecord, CommandStatus, Event, EventReason, Twin},
    invocation::Invocation,
    ports::PublishError,
    schema::MessageKind,
};

use crate::{end, record, Deps, NO_ANSWER};

/// How long devices have to answer when the request does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest timeout a request may ask for (API Gateway's limit is 29 s).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(25);
/// Time kept back from the invocation's deadline to record the timeouts and the
/// events, and to answer.
pub const FINISH_MARGIN: Duration = Duration::from_secs(2);
/// Devices recorded and published to at once.
pub const PUBLISH_CONCURRENCY: usize = 64;
/// Timeouts recorded at once at the deadline.
pub const STORE_CONCURRENCY: usize = 64;
/// The first pause between two reads of the pending commands; it doubles up to
/// [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(20);
const MAX_POLL: Duration = Duration::from_millis(250);
/// As long as a command id (a UUID), so that the size checked is the size sent.
const ID_PLACEHOLDER: &str = "00000000-0000-0000-0000-000000000000";

/// The deadline of one call, on both clocks.
struct Window {
    /// When the call's work (publishing, then waiting) ends.
    until: Instant,
    /// The start, by the clock port.
    now: DateTime<Utc>,
    /// The command's deadline: on the records and sent to the devices.
    deadline: DateTime<Utc>,
}

impl Window {
    fn new(cmd: &SendCommand, invocation: Invocation, now: DateTime<Utc>) -> Self {
        let requested = cmd
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_TIMEOUT)
            .min(MAX_TIMEOUT);
        let work = requested.min(invocation.remaining(now).saturating_sub(FINISH_MARGIN));
        // noWait: the call ends once published, the devices get the whole timeout.
        let answer = if cmd.no_wait { requested } else { work };
        Self {
            until: Instant::now() + work,
            now,
            deadline: now + chrono::Duration::from_std(answer).unwrap_or_default(),
        }
    }
}

/// A device the command goes to: where its result goes, and what to publish where
/// (the request's id is set when its record is created).
struct Ready {
    index: usize,
    twin: Twin,
    topic: String,
    request: CommandRequest,
}

/// What recording and publishing did for one device.
struct Sent {
    index: usize,
    result: CommandResult,
    /// Its CommandSent, or its CommandFailed.
    event: Option<Event>,
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

/// Copies an ended record into its result.
fn apply(result: &mut CommandResult, rec: CommandRecord) {
    result.status = rec.status;
    result.response_name = rec.response_name;
    result.response = rec.response;
    result.error = rec.error;
}

/// Sends `cmd` to every targeted device and returns one result per device, before
/// `invocation`'s deadline.
pub async fn send(
    deps: &Deps<'_>,
    cmd: SendCommand,
    invocation: Invocation,
) -> Result<CommandResults, ApiError> {
    api::require_targets(&cmd.targets, cmd.all_devices)?;
    api::refuse_large_json("command", &cmd.payload)?;
    let window = Window::new(&cmd, invocation, deps.clock.now());
    let twins = deps.twins.list(&cmd.targets).await?;
    if twins.is_empty() {
        return Err(ApiError::not_found("no device matches the targets"));
    }
    let twins = twins.into_iter().map(|t| t.value).collect();
    let (mut results, ready) =
        prepare(deps, &cmd, twins, window.deadline.timestamp_millis()).await?;
    let sent: Vec<Sent> = stream::iter(ready)
        .map(|r| publish(deps, &cmd, r, &window))
        .buffer_unordered(PUBLISH_CONCURRENCY)
        .collect()
        .await;
    let mut pending = HashMap::new();
    let mut events = Vec::new();
    for s in sent {
        if let (CommandStatus::Pending, Some(id)) = (s.result.status, &s.result.command_id) {
            pending.insert(id.clone(), s.index);
        }
        events.extend(s.event);
        results[s.index] = s.result;
    }
    record(deps, &events).await;
    if cmd.no_wait {
        return Ok(CommandResults { results });
    }
    let pending = wait(deps, &mut results, pending, window.until).await;
    let events = time_out(deps, &mut results, pending).await;
    record(deps, &events).await;
    Ok(CommandResults { results })
}

/// Validates and encodes the command for each device, writing nothing: a result per
/// device (ERROR, VALIDATED, or PENDING for those [`Ready`] to be sent). A request too
/// large for MQTT refuses the whole call (413).
async fn prepare(
    deps: &Deps<'_>,
    cmd: &SendCommand,
    twins: Vec<Twin>,
    deadline_unix_ms: i64,
) -> Result<(Vec<CommandResult>, Vec<Ready>), ApiError> {
    let mut results = Vec::with_capacity(twins.len());
    let mut ready = Vec::new();
    for twin in twins {
        let index = results.len();
        let id = twin.spec.device_id.as_str();
        let encoded = match deps.cache.get(deps.schemas, id).await? {
            None => Err("no schema yet: the device has not connected".to_string()),
            Some(schema) => schema
                .message_of_kind(&cmd.name, MessageKind::Command)
                .and_then(|desc| schema.json_to_proto(&desc, &cmd.payload))
                .map_err(|e| e.to_string()),
        };
        let payload = match encoded {
            Ok(b) => b,
            Err(e) => {
                results.push(result_for(&twin, CommandStatus::Error, Some(e)));
                continue;
            }
        };
        let request = CommandRequest {
            id: ID_PLACEHOLDER.into(),
            name: cmd.name.clone(),
            payload: payload.into(),
            deadline_unix_ms,
        };
        api::refuse_large_message(&format!("command {}", cmd.name), id, request.encoded_len())?;
        if cmd.dry_run {
            results.push(result_for(&twin, CommandStatus::Validated, None));
            continue;
        }
        let refused = if twin.spec.disabled {
            Some("device is disabled".to_string())
        } else if !twin.status.online {
            Some("device is offline".to_string())
        } else {
            None
        };
        let topic = twin
            .device_id()
            .map(|d| DeviceTopic::CommandRequest.for_device(&d));
        match (refused, topic) {
            (Some(why), _) => results.push(result_for(&twin, CommandStatus::Error, Some(why))),
            (None, Err(e)) => {
                results.push(result_for(&twin, CommandStatus::Error, Some(e.to_string())))
            }
            (None, Ok(topic)) => {
                results.push(result_for(&twin, CommandStatus::Pending, None));
                ready.push(Ready {
                    index,
                    twin,
                    topic,
                    request,
                });
            }
        }
    }
    Ok((results, ready))
}

/// Records the command PENDING for one device and publishes it, unless the call's time
/// is up. A store or broker failure is this device's ERROR, not the call's.
async fn publish(deps: &Deps<'_>, cmd: &SendCommand, ready: Ready, window: &Window) -> Sent {
    let Ready {
        index,
        twin,
        topic,
        mut request,
    } = ready;
    let failed = |error: String, command_id: Option<String>, event: Option<Event>| Sent {
        index,
        result: CommandResult {
            command_id,
            ..result_for(&twin, CommandStatus::Error, Some(error))
        },
        event,
    };
    if Instant::now() >= window.until {
        return failed(
            "not sent: the call's time ran out before this device was reached".into(),
            None,
            None,
        );
    }
    let record = CommandRecord {
        id: uuid::Uuid::now_v7().to_string(),
        device_id: twin.spec.device_id.clone(),
        device_name: twin.meta.name.clone(),
        namespace: twin.meta.namespace.clone(),
        name: cmd.name.clone(),
        request: cmd.payload.clone(),
        status: CommandStatus::Pending,
        response_name: None,
        response: None,
        error: None,
        created_at: window.now,
        deadline: window.deadline,
        completed_at: None,
    };
    if let Err(e) = deps.commands.create(&record).await {
        let e = ApiError::from(e);
        return failed(format!("not sent: {}", e.message), None, None);
    }
    request.id = record.id.clone();
    match deps
        .publisher
        .publish(&topic, request.encode_to_vec().into())
        .await
    {
        Ok(()) => {
            let event = Event::new(
                EventReason::CommandSent,
                &record.device_id,
                window.now,
                &record.id,
                format!("{} sent", cmd.name),
            )
            .for_twin(&twin)
            .with_payload(serde_json::json!({ "commandId": record.id, "request": cmd.payload }));
            let mut result = result_for(&twin, CommandStatus::Pending, None);
            result.command_id = Some(record.id);
            Sent {
                index,
                result,
                event: Some(event),
            }
        }
        Err(e) => {
            let message = match e {
                PublishError::NotConnected(_) => "device is offline".to_string(),
                other => format!("could not publish: {other}"),
            };
            let event = match end(deps, &record.id, CommandStatus::Error, &message).await {
                Ok((_, event)) => event,
                Err(e) => {
                    // Left pending past its deadline: a read records TIMEOUT then.
                    tracing::warn!(command = %record.id, error = %e, "could not record the failed publish");
                    None
                }
            };
            failed(message, Some(record.id), event)
        }
    }
}

/// Reads every pending command in one batched read per tick until all have ended or
/// `until` has come (a last read at `until`); the ended ones go into their results.
/// Returns those still pending (id -> result index). A failed read is tried again at
/// the next tick.
async fn wait(
    deps: &Deps<'_>,
    results: &mut [CommandResult],
    mut pending: HashMap<String, usize>,
    until: Instant,
) -> HashMap<String, usize> {
    let mut pause = FIRST_POLL;
    while !pending.is_empty() {
        let ids: Vec<String> = pending.keys().cloned().collect();
        match deps.commands.get_many(&ids).await {
            Ok(records) => {
                for rec in records.into_iter().filter(|r| r.status.is_final()) {
                    if let Some(i) = pending.remove(&rec.id) {
                        apply(&mut results[i], rec);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, pending = ids.len(), "reading the pending commands failed; reading again")
            }
        }
        let now = Instant::now();
        if pending.is_empty() || now >= until {
            break;
        }
        tokio::time::sleep(pause.min(until - now)).await;
        pause = (pause * 2).min(MAX_POLL);
    }
    pending
}

/// Records TIMEOUT for every command still pending at the deadline, conditionally: a
/// record an answer ended first keeps the answer, and its result shows it. Returns the
/// CommandFailed events of those this call ended.
async fn time_out(
    deps: &Deps<'_>,
    results: &mut [CommandResult],
    pending: HashMap<String, usize>,
) -> Vec<Event> {
    let ended: Vec<_> = stream::iter(pending)
        .map(|(id, i)| async move {
            let ended = end(deps, &id, CommandStatus::Timeout, NO_ANSWER).await;
            (id, i, ended)
        })
        .buffer_unordered(STORE_CONCURRENCY)
        .collect()
        .await;
    let mut events = Vec::new();
    for (id, i, ended) in ended {
        match ended {
            Ok((rec, event)) => {
                apply(&mut results[i], rec);
                events.extend(event);
            }
            Err(e) => {
                // The record stays pending past its deadline: a read records TIMEOUT.
                tracing::warn!(command = %id, error = %e, "could not record the timeout");
                results[i].status = CommandStatus::Timeout;
                results[i].error = Some(NO_ANSWER.into());
            }
        }
    }
    events
}
