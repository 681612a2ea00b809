use std::sync::Arc;

use super::*;
use mir_shared::{
    adapters::embedded::EmbeddedStore,
    ports::{CommandStore, DevicePublisher, PublishError, TwinStore},
    testing::{api_request, response_json, TestWorld},
};
use serde_json::{json, Value};

/// A device side for tests: answers every command request published to it.
struct Responder {
    store: EmbeddedStore,
    succeed: bool,
}

#[async_trait::async_trait]
impl DevicePublisher for Responder {
    async fn publish(&self, topic: &str, payload: bytes::Bytes) -> Result<(), PublishError> {
        let req = CommandRequest::decode(payload).map_err(|e| PublishError::Failed {
            message: e.to_string(),
            source: None,
        })?;
        assert!(topic.ends_with("/cmd/req"));
        let store = self.store.clone();
        let succeed = self.succeed;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let outcome = CommandOutcome {
                status: if succeed {
                    CommandStatus::Success
                } else {
                    CommandStatus::Error
                },
                response_name: succeed.then(|| "schema.v1.ActivateHVACResp".to_string()),
                response: succeed.then(|| json!({"success": true})),
                error: (!succeed).then(|| "jammed".to_string()),
                completed_at: chrono::Utc::now(),
            };
            let _ = store.complete(&req.id, outcome).await;
        });
        Ok(())
    }
}

async fn online(w: &TestWorld, id: &str) {
    let mut twin = w.with_weather_device(id).await;
    twin.status.online = true;
    TwinStore::update(&w.store, &twin, 1).await.expect("online");
}

fn deps<'a>(w: &'a TestWorld, publisher: &'a dyn DevicePublisher) -> Deps<'a> {
    Deps {
        publisher,
        ..Deps::try_from(&w.ports).expect("the test world has every port")
    }
}

async fn send_json(w: &TestWorld, publisher: &dyn DevicePublisher, body: Value) -> (u16, Value) {
    response_json(
        &handle(
            &deps(w, publisher),
            &api_request("POST /v1/commands", "/v1/commands", "", Some(body)),
        )
        .await,
    )
}

#[tokio::test]
async fn a_command_to_an_online_device_returns_its_decoded_answer() {
    let w = TestWorld::new();
    online(&w, "w1").await;
    let responder = Responder {
        store: w.store.clone(),
        succeed: true,
    };
    let (status, body) = send_json(&w, &responder, json!({"targets": {"ids": ["w1"]}, "name": "schema.v1.ActivateHVACCmd", "payload": {"durationSec": 5}})).await;
    assert_eq!(status, 200, "{body}");
    let r = &body["results"][0];
    assert_eq!(r["status"], "SUCCESS", "{body}");
    assert_eq!(r["response"], json!({"success": true}));
    let mut reasons = w.reasons("w1").await;
    reasons.sort();
    assert_eq!(reasons, ["CommandSent"]);
}

#[tokio::test]
async fn an_unanswered_command_times_out_and_a_late_answer_changes_nothing() {
    let w = TestWorld::new();
    online(&w, "w1").await;
    let (_, body) = send_json(&w, w.publisher.as_ref(), json!({"targets": {"ids": ["w1"]}, "name": "schema.v1.ActivateHVACCmd", "payload": {}, "timeoutMs": 50})).await;
    let r = &body["results"][0];
    assert_eq!(r["status"], "TIMEOUT", "{body}");
    let id = r["commandId"].as_str().expect("id").to_string();
    let late = CommandOutcome {
        status: CommandStatus::Success,
        response_name: None,
        response: None,
        error: None,
        completed_at: chrono::Utc::now(),
    };
    let (rec, changed) = w.store.complete(&id, late).await.expect("complete");
    assert!(!changed);
    assert_eq!(rec.status, CommandStatus::Timeout);
}

#[tokio::test]
async fn an_offline_device_fails_fast_without_a_record() {
    let w = TestWorld::new();
    w.with_weather_device("w1").await;
    let (_, body) = send_json(
        &w,
        w.publisher.as_ref(),
        json!({"targets": {"ids": ["w1"]}, "name": "schema.v1.ActivateHVACCmd", "payload": {}}),
    )
    .await;
    assert_eq!(body["results"][0]["status"], "ERROR");
    assert_eq!(body["results"][0]["error"], "device is offline");
    // No command record: no id to poll, nothing sent, no CommandSent in the audit trail.
    assert!(body["results"][0]["commandId"].is_null(), "{body}");
    assert!(w.publisher.published().is_empty());
    assert!(!w.reasons("w1").await.contains(&"CommandSent".to_string()));
}

#[tokio::test]
async fn bad_json_and_unknown_commands_say_what_is_wrong_and_nothing_is_sent() {
    let w = TestWorld::new();
    online(&w, "w1").await;
    let (_, body) = send_json(&w, w.publisher.as_ref(), json!({"targets": {"ids": ["w1"]}, "name": "schema.v1.ActivateHVACCmd", "payload": {"durationSec": "long"}})).await;
    assert!(
        body["results"][0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("durationSec"),
        "{body}"
    );
    let (_, body) = send_json(
        &w,
        w.publisher.as_ref(),
        json!({"targets": {"ids": ["w1"]}, "name": "schema.v1.Reboot", "payload": {}}),
    )
    .await;
    assert!(
        body["results"][0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("schema.v1.ActivateHVACCmd"),
        "{body}"
    );
    let (status, _) = send_json(
        &w,
        w.publisher.as_ref(),
        json!({"targets": {"ids": ["nobody"]}, "name": "x", "payload": {}}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = send_json(&w, w.publisher.as_ref(), json!({"name": 5})).await;
    assert_eq!(status, 400, "{body}");
    assert!(w.publisher.published().is_empty());
}

#[tokio::test]
async fn a_dry_run_validates_without_sending() {
    let w = TestWorld::new();
    online(&w, "w1").await;
    let (_, body) = send_json(&w, w.publisher.as_ref(), json!({"targets": {"ids": ["w1"]}, "name": "schema.v1.ActivateHVACCmd", "payload": {"durationSec": 1}, "dryRun": true})).await;
    assert_eq!(body["results"][0]["status"], "VALIDATED");
    assert!(w.publisher.published().is_empty());
}

#[tokio::test]
async fn the_catalog_lists_commands_with_templates() {
    let w = TestWorld::new();
    online(&w, "w1").await;
    let publisher = Arc::clone(&w.publisher);
    let resp = handle(
        &deps(&w, publisher.as_ref()),
        &api_request("GET /v1/commands", "/v1/commands", "ids=w1", None),
    )
    .await;
    let (_, body) = response_json(&resp);
    assert_eq!(
        body["devices"][0]["messages"][0]["name"],
        "schema.v1.ActivateHVACCmd"
    );
    assert_eq!(
        body["devices"][0]["messages"][0]["template"],
        json!({"durationSec": 0})
    );
}
