//! `command-response`: a device answered a command (rule `mir/+/cmd/resp`).
//!
//! Completes the pending command record with the decoded response, conditionally (only
//! a PENDING record changes, as when `api-commands` records TIMEOUT). A duplicate, or an
//! answer after the record ended, changes nothing; an answer received after the
//! command's deadline ends a still pending record as TIMEOUT; an answer too large to
//! store ends it as ERROR; a device cannot answer another device's command.
//!
//! Architecture: see docs/architecture.md in the repository (sections Routes, Delivery semantics).

use prost::Message;

use mir_proto::{
    topics::DeviceTopic,
    wire::{CommandResponse, CommandResponseStatus},
};
use mir_shared::{
    domain::{command::CommandOutcome, CommandStatus, Event, EventReason},
    ports::StoreError,
    rule_event::RuleEvent,
    service::HandlerError,
};

mir_shared::deps! {
    /// The ports `command-response` uses.
    pub struct Deps { commands, schemas, events, cache }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseOutcome {
    pub command_id: String,
    pub status: CommandStatus,
    pub changed: bool,
}

pub async fn handle(deps: &Deps<'_>, event: &RuleEvent) -> Result<ResponseOutcome, HandlerError> {
    let id = event.device()?;
    let resp = CommandResponse::decode(event.payload_bytes()?.as_slice())
        .map_err(HandlerError::malformed("CommandResponse"))?;
    let record = deps
        .commands
        .get(&resp.id)
        .await?
        .ok_or_else(|| HandlerError::UnknownCommand(resp.id.clone()))?;
    if record.device_id != id.as_str() {
        return Err(HandlerError::NotItsCommand {
            device: id.to_string(),
            command: resp.id.clone(),
            owner: record.device_id.clone(),
        });
    }
    let status = CommandStatus::from_wire(
        CommandResponseStatus::try_from(resp.status).unwrap_or(CommandResponseStatus::Error),
    );
    let mut outcome = CommandOutcome {
        status,
        response_name: None,
        response: None,
        error: (!resp.error.is_empty()).then(|| resp.error.clone()),
        completed_at: event.received_at(),
    };
    if status == CommandStatus::Success && !resp.name.is_empty() {
        let decoded = match deps.cache.get(deps.schemas, id.as_str()).await? {
            Some(schema) => schema
                .message(&resp.name)
                .and_then(|d| schema.proto_to_json(&d, &resp.payload))
                .map_err(|e| e.to_string()),
            None => Err(format!("device {id} has no schema")),
        };
        match decoded {
            Ok(json) => {
                outcome.response_name = Some(resp.name.clone());
                outcome.response = Some(json);
            }
            Err(e) => {
                outcome.status = CommandStatus::Error;
                outcome.error = Some(format!(
                    "the device answered with an undecodable {}: {e}",
                    resp.name
                ));
            }
        }
    }
    if status == CommandStatus::Error && outcome.error.is_none() {
        outcome.error = Some("the device reported an error".into());
    }
    if event.received_at() > record.deadline {
        // Received after the deadline: the command timed out whatever the answer, as
        // api-commands and the reads of the record say; a still pending record ends so.
        outcome = CommandOutcome {
            status: CommandStatus::Timeout,
            response_name: None,
            response: None,
            error: Some(format!(
                "the device answered after the deadline ({})",
                record.deadline.to_rfc3339()
            )),
            completed_at: event.received_at(),
        };
    }
    let (record, changed) = match deps.commands.complete(&resp.id, outcome).await {
        Err(StoreError::TooLarge(what)) => {
            // The answer does not fit in the record: the command ends with an ERROR
            // saying so rather than staying pending.
            let too_large = CommandOutcome {
                status: CommandStatus::Error,
                response_name: None,
                response: None,
                error: Some(format!("the answer is too large to store: {what}")),
                completed_at: event.received_at(),
            };
            deps.commands.complete(&resp.id, too_large).await?
        }
        other => other?,
    };
    if changed {
        let (reason, msg) = match record.status {
            CommandStatus::Success => (
                EventReason::CommandCompleted,
                format!("{} completed", record.name),
            ),
            _ => (
                EventReason::CommandFailed,
                format!(
                    "{} failed: {}",
                    record.name,
                    record.error.as_deref().unwrap_or("error")
                ),
            ),
        };
        let ev = Event::new(
            reason,
            id.as_str(),
            event.received_at(),
            &event.cause(DeviceTopic::CommandResponse),
            msg,
        )
        .with_payload(serde_json::json!({ "commandId": record.id, "response": record.response }));
        let mut ev = ev;
        ev.name = record.device_name.clone();
        ev.namespace = record.namespace.clone();
        deps.events.append(&[ev]).await?;
    }
    Ok(ResponseOutcome {
        command_id: record.id,
        status: record.status,
        changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_shared::ports::CommandStore;
    use mir_shared::{
        domain::CommandRecord,
        testing::{at_ms, command_response_event, TestWorld},
    };

    async fn pending(w: &TestWorld, device: &str) -> String {
        let rec = CommandRecord {
            id: "c1".into(),
            device_id: device.into(),
            device_name: device.into(),
            namespace: "default".into(),
            name: "schema.v1.ActivateHVACCmd".into(),
            request: serde_json::json!({"durationSec": 1}),
            status: CommandStatus::Pending,
            response_name: None,
            response: None,
            error: None,
            created_at: at_ms(0),
            deadline: at_ms(10_000),
            completed_at: None,
        };
        CommandStore::create(&w.store, &rec).await.expect("create");
        rec.id
    }

    fn deps(w: &TestWorld) -> Deps<'_> {
        Deps::try_from(&w.ports).expect("the test world has every port")
    }

    #[tokio::test]
    async fn a_success_is_decoded_and_a_duplicate_changes_nothing() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let id = pending(&w, "w1").await;
        let ev = command_response_event("w1", &id, true, 1_000);
        let out = handle(&deps(&w), &ev).await.expect("ok");
        assert!(out.changed);
        assert_eq!(out.status, CommandStatus::Success);
        let rec = CommandStore::get(&w.store, &id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(rec.response, Some(serde_json::json!({"success": true})));
        let again = handle(&deps(&w), &ev).await.expect("dup");
        assert!(!again.changed);
        assert_eq!(w.reasons("w1").await, ["CommandCompleted"]);
    }

    #[tokio::test]
    async fn another_device_cannot_answer_the_command() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let id = pending(&w, "w1").await;
        assert!(
            handle(&deps(&w), &command_response_event("w2", &id, true, 1))
                .await
                .is_err()
        );
        let rec = CommandStore::get(&w.store, &id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(rec.status, CommandStatus::Pending);
    }

    #[tokio::test]
    async fn an_answer_received_after_the_deadline_ends_a_pending_command_as_timeout() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let id = pending(&w, "w1").await;
        // The deadline is at 10 s; this answer was received at 10.001 s.
        let out = handle(&deps(&w), &command_response_event("w1", &id, true, 10_001))
            .await
            .expect("ok");
        assert!(out.changed);
        assert_eq!(out.status, CommandStatus::Timeout);
        let rec = CommandStore::get(&w.store, &id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(rec.status, CommandStatus::Timeout);
        assert!(rec.response.is_none());
        assert!(
            rec.error
                .as_deref()
                .is_some_and(|e| e.starts_with("the device answered after the deadline")),
            "{rec:?}"
        );
        // An answer at the deadline itself is in time.
        let mut on_time = CommandStore::get(&w.store, &id)
            .await
            .expect("get")
            .expect("exists");
        on_time.id = "c2".into();
        on_time.status = CommandStatus::Pending;
        on_time.error = None;
        on_time.completed_at = None;
        CommandStore::create(&w.store, &on_time)
            .await
            .expect("create");
        let out = handle(&deps(&w), &command_response_event("w1", "c2", true, 10_000))
            .await
            .expect("ok");
        assert_eq!(out.status, CommandStatus::Success);
    }

    #[tokio::test]
    async fn an_error_answer_fails_the_command_with_the_devices_message() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let id = pending(&w, "w1").await;
        let out = handle(&deps(&w), &command_response_event("w1", &id, false, 1))
            .await
            .expect("ok");
        assert_eq!(out.status, CommandStatus::Error);
        let rec = CommandStore::get(&w.store, &id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(rec.error.as_deref(), Some("hvac jammed"));
    }
}
