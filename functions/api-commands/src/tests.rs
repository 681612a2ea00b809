use std::{collections::HashSet, sync::Arc, time::Duration};

use super::*;
use mir_proto::wire::CommandRequest;
use mir_shared::{
    adapters::embedded::EmbeddedStore,
    ports::{Clock, CommandStore, DevicePublisher, PublishError, StoreResult, TwinStore},
    testing::{api_request, response_json, TestWorld},
};
use prost::Message;
use serde_json::{json, Value};

/// A device side for tests: answers every command request published to it 20 ms
/// later, except to the `silent` devices, which never answer.
struct Responder {
    store: EmbeddedStore,
    succeed: bool,
    silent: HashSet<String>,
}

impl Responder {
    fn new(w: &TestWorld, succeed: bool) -> Self {
        Self {
            store: w.store.clone(),
            succeed,
            silent: HashSet::new(),
        }
    }
}

#[async_trait::async_trait]
impl DevicePublisher for Responder {
    async fn publish(&self, topic: &str, payload: bytes::Bytes) -> Result<(), PublishError> {
        let req = CommandRequest::decode(payload).map_err(|e| PublishError::Failed {
            message: e.to_string(),
            source: None,
        })?;
        assert!(topic.ends_with("/cmd/req"));
        let (device, _) = mir_proto::topics::parse(topic).map_err(|e| PublishError::Failed {
            message: e.to_string(),
            source: None,
        })?;
        if self.silent.contains(device.as_str()) {
            return Ok(());
        }
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

/// An invocation with API Gateway's whole 29 s ahead.
fn plenty(w: &TestWorld) -> Invocation {
    Invocation::starting(w.clock.now(), Duration::from_secs(29))
}

async fn send_within(deps: &Deps<'_>, invocation: Invocation, body: Value) -> (u16, Value) {
    response_json(
        &handle(
            deps,
            &api_request("POST /v1/commands", "/v1/commands", "", Some(body)),
            invocation,
        )
        .await,
    )
}

async fn send_json(w: &TestWorld, publisher: &dyn DevicePublisher, body: Value) -> (u16, Value) {
    send_within(&deps(w, publisher), plenty(w), body).await
}

async fn get_json(w: &TestWorld, id: &str) -> (u16, Value) {
    let publisher = Arc::clone(&w.publisher);
    response_json(
        &handle(
            &deps(w, publisher.as_ref()),
            &api_request(
                "GET /v1/commands/{commandId}",
                &format!("/v1/commands/{id}"),
                "",
                None,
            ),
            plenty(w),
        )
        .await,
    )
}

fn ids_of(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["commandId"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_command_to_an_online_device_returns_its_decoded_answer() {
    let w = TestWorld::new();
    online(&w, "w1").await;
    let responder = Responder::new(&w, true);
    let (status, body) = send_json(&w, &responder, json!({"targets": {"ids": ["w1"]}, "name": "schema.v1.ActivateHVACCmd", "payload": {"durationSec": 5}})).await;
    assert_eq!(status, 200, "{body}");
    let r = &body["results"][0];
    assert_eq!(r["status"], "SUCCESS", "{body}");
    assert_eq!(r["response"], json!({"success": true}));
    let mut reasons = w.reasons("w1").await;
    reasons.sort();
    assert_eq!(reasons, ["CommandSent"]);
}

/// Lambda has 3 s left and the caller asks for 10 s: the call ends its wait at the
/// invocation's deadline less the margin, answers before the deadline, and every
/// device that did not answer is TIMEOUT in its result and in its record.
#[tokio::test(start_paused = true)]
async fn with_3_s_left_of_a_lambda_the_call_returns_in_time_and_the_silent_devices_time_out() {
    let w = TestWorld::new();
    let ids: Vec<String> = (0..20).map(|i| format!("d{i:02}")).collect();
    for id in &ids {
        online(&w, id).await;
    }
    let mut responder = Responder::new(&w, true);
    responder.silent = ids.iter().skip(15).cloned().collect();
    let invocation = Invocation::starting(w.clock.now(), Duration::from_secs(3));
    let started = tokio::time::Instant::now();
    let (status, body) = send_within(
        &deps(&w, &responder),
        invocation,
        json!({"targets": {"ids": ids}, "name": "schema.v1.ActivateHVACCmd", "payload": {"durationSec": 1}, "timeoutMs": 10_000}),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(
        took < Duration::from_secs(3),
        "answered after the Lambda deadline: {took:?}"
    );
    assert!(
        took >= Duration::from_secs(3) - FINISH_MARGIN,
        "the silent devices did not get until the deadline: {took:?}"
    );
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 20);
    for r in results {
        let silent = responder
            .silent
            .contains(r["deviceId"].as_str().unwrap_or(""));
        let want = if silent { "TIMEOUT" } else { "SUCCESS" };
        assert_eq!(r["status"], want, "{r}");
        if silent {
            assert_eq!(r["error"], NO_ANSWER);
        }
    }
    let records = w.store.get_many(&ids_of(&body)).await.expect("records");
    assert_eq!(records.len(), 20);
    assert!(records.iter().all(|r| r.status != CommandStatus::Pending));
    // The devices were told the deadline the call kept: 3 s less the margin.
    let deadline = w.clock.now()
        + chrono::Duration::from_std(Duration::from_secs(3) - FINISH_MARGIN).expect("small");
    assert!(
        records.iter().all(|r| r.deadline == deadline),
        "{:?}",
        records[0].deadline
    );
    let mut reasons = w.reasons("d19").await;
    reasons.sort();
    assert_eq!(reasons, ["CommandFailed", "CommandSent"]);
}

/// An invocation already out of time sends nothing and records nothing.
#[tokio::test(start_paused = true)]
async fn an_invocation_without_time_left_sends_nothing() {
    let w = TestWorld::new();
    online(&w, "w1").await;
    let invocation = Invocation::starting(w.clock.now(), FINISH_MARGIN / 2);
    let (status, body) = send_within(
        &deps(&w, w.publisher.as_ref()),
        invocation,
        json!({"targets": {"ids": ["w1"]}, "name": "schema.v1.ActivateHVACCmd", "payload": {}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["status"], "ERROR");
    assert!(body["results"][0]["commandId"].is_null(), "{body}");
    assert!(w.publisher.published().is_empty());
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

/// The command store of the world, whose batched reads never see an answer: as if
/// every answer landed between the last read and the deadline.
struct StaleReads(EmbeddedStore);

#[async_trait::async_trait]
impl CommandStore for StaleReads {
    async fn create(&self, record: &CommandRecord) -> StoreResult<()> {
        CommandStore::create(&self.0, record).await
    }
    async fn get(&self, id: &str) -> StoreResult<Option<CommandRecord>> {
        CommandStore::get(&self.0, id).await
    }
    async fn complete(
        &self,
        id: &str,
        outcome: CommandOutcome,
    ) -> StoreResult<(CommandRecord, bool)> {
        self.0.complete(id, outcome).await
    }
    async fn get_many(&self, ids: &[String]) -> StoreResult<Vec<CommandRecord>> {
        let mut found = self.0.get_many(ids).await?;
        for r in &mut found {
            r.status = CommandStatus::Pending;
        }
        Ok(found)
    }
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_lands_at_the_deadline_wins_over_the_timeout() {
    let w = TestWorld::new();
    online(&w, "w1").await;
    let responder = Responder::new(&w, true);
    let stale = StaleReads(w.store.clone());
    let deps = Deps {
        commands: &stale,
        ..deps(&w, &responder)
    };
    let (_, body) = send_within(&deps, plenty(&w), json!({"targets": {"ids": ["w1"]}, "name": "schema.v1.ActivateHVACCmd", "payload": {}, "timeoutMs": 500})).await;
    assert_eq!(body["results"][0]["status"], "SUCCESS", "{body}");
    assert_eq!(body["results"][0]["response"], json!({"success": true}));
    assert_eq!(w.reasons("w1").await, ["CommandSent"], "no CommandFailed");
}

/// `noWait`: the record is PENDING until its deadline; a read past it records TIMEOUT,
/// after which an answer changes nothing.
#[tokio::test]
async fn a_no_wait_command_nobody_answers_reads_as_timeout_past_its_deadline() {
    let w = TestWorld::new();
    online(&w, "w1").await;
    let (_, body) = send_json(&w, w.publisher.as_ref(), json!({"targets": {"ids": ["w1"]}, "name": "schema.v1.ActivateHVACCmd", "payload": {}, "timeoutMs": 5_000, "noWait": true})).await;
    assert_eq!(body["results"][0]["status"], "PENDING", "{body}");
    let id = ids_of(&body).pop().expect("a command id");
    let (_, rec) = get_json(&w, &id).await;
    assert_eq!(rec["status"], "PENDING", "{rec}");
    let start = w.clock.now();
    w.clock.set(start + chrono::Duration::milliseconds(5_001));
    let (status, rec) = get_json(&w, &id).await;
    assert_eq!((status, &rec["status"]), (200, &json!("TIMEOUT")), "{rec}");
    assert_eq!(rec["error"], NO_ANSWER);
    let stored = CommandStore::get(&w.store, &id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        stored.status,
        CommandStatus::Timeout,
        "recorded, not only shown"
    );
    let late = CommandOutcome {
        status: CommandStatus::Success,
        response_name: None,
        response: None,
        error: None,
        completed_at: chrono::Utc::now(),
    };
    assert!(!w.store.complete(&id, late).await.expect("complete").1);
    let (_, again) = get_json(&w, &id).await;
    assert_eq!(again, rec, "a second read changes nothing");
    let mut reasons = w.reasons("w1").await;
    reasons.sort();
    assert_eq!(reasons, ["CommandFailed", "CommandSent"]);
}

#[tokio::test]
async fn a_payload_too_large_for_mqtt_or_a_record_is_refused_with_413_and_nothing_is_sent() {
    let w = TestWorld::new();
    let mut twin = w.with_blob_device("b1").await;
    twin.status.online = true;
    TwinStore::update(&w.store, &twin, 1).await.expect("online");
    // 100 KiB of bytes: 136 KiB of base64 JSON (fits a record), 100 KiB encoded: sent.
    use base64::Engine;
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
    let (status, body) = send_json(&w, w.publisher.as_ref(), json!({"targets": {"ids": ["b1"]}, "name": "blob.v1.UploadCmd", "payload": {"data": b64(100 * 1024)}, "noWait": true})).await;
    assert_eq!(
        (status, &body["results"][0]["status"]),
        (200, &json!("PENDING")),
        "{body}"
    );
    assert_eq!(w.publisher.published().len(), 1);
    // 140 KiB of bytes: 187 KiB of JSON (fits a record), over 128 KiB encoded.
    let (status, body) = send_json(&w, w.publisher.as_ref(), json!({"targets": {"ids": ["b1"]}, "name": "blob.v1.UploadCmd", "payload": {"data": b64(140 * 1024)}})).await;
    assert_eq!(status, 413, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("131072 bytes") && msg.contains("MQTT") && msg.contains("b1"),
        "{msg}"
    );
    // 160 KiB of bytes: 213 KiB of JSON, over what a record holds; a dry run too.
    for dry_run in [false, true] {
        let (status, body) = send_json(&w, w.publisher.as_ref(), json!({"targets": {"ids": ["b1"]}, "name": "blob.v1.UploadCmd", "payload": {"data": b64(160 * 1024)}, "dryRun": dry_run})).await;
        assert_eq!(status, 413, "{body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains("204800 bytes") && msg.contains("400 KB"),
            "{msg}"
        );
    }
    assert_eq!(w.publisher.published().len(), 1, "nothing more was sent");
    assert_eq!(
        w.reasons("b1").await,
        ["CommandSent"],
        "nothing more was recorded"
    );
}

#[tokio::test]
async fn a_device_the_broker_cannot_reach_fails_with_its_record_ended() {
    let w = TestWorld::new();
    online(&w, "w1").await;
    w.publisher.set_offline("w1");
    let (_, body) = send_json(
        &w,
        w.publisher.as_ref(),
        json!({"targets": {"ids": ["w1"]}, "name": "schema.v1.ActivateHVACCmd", "payload": {}}),
    )
    .await;
    assert_eq!(body["results"][0]["status"], "ERROR", "{body}");
    assert_eq!(body["results"][0]["error"], "device is offline");
    let id = ids_of(&body).pop().expect("a record");
    let rec = CommandStore::get(&w.store, &id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(rec.status, CommandStatus::Error);
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
        plenty(&w),
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

#[tokio::test]
async fn a_send_without_targets_needs_the_all_devices_flag() {
    let w = TestWorld::new();
    online(&w, "w1").await;
    let cmd =
        json!({"name": "schema.v1.ActivateHVACCmd", "payload": {"durationSec": 1}, "dryRun": true});
    let (status, body) = send_json(&w, w.publisher.as_ref(), cmd.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"],
        "no targets: name the devices (ids, names, namespaces, labels), or set allDevices to send to every device"
    );
    let mut all = cmd.clone();
    all["allDevices"] = json!(true);
    let (status, body) = send_json(&w, w.publisher.as_ref(), all.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            &body["results"][0]["deviceId"],
            &body["results"][0]["status"]
        ),
        (&json!("w1"), &json!("VALIDATED"))
    );
    all["targets"] = json!({"ids": ["w1"]});
    let (status, body) = send_json(&w, w.publisher.as_ref(), all).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("allDevices and targets exclude each other"))
    );
    assert!(w.publisher.published().is_empty());
}
