//! `api-config`: `/v1/config` — list the configuration messages of devices with their
//! templates and current desired values, and set a desired property.
//!
//! Setting validates the JSON against each device's schema and refuses a value too
//! large for MQTT or a twin (413) before anything is written; then, for every targeted
//! device concurrently ([`CONCURRENCY`] at once) and within the invocation's deadline
//! (less [`FINISH_MARGIN`]), writes the desired value in the twin first (optimistic
//! concurrency) and pushes it to the device if it is online; an offline device pulls it
//! when it connects. A device not reached in time is an ERROR with nothing written.
//!
//! Architecture: see docs/architecture.md in the repository (sections Routes, Delivery semantics).

use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use futures::{stream, StreamExt};
use prost::Message;
use tokio::time::Instant;

use mir_proto::wire::{DesiredProperties, PropertyValue};
use mir_shared::{
    api::{
        self, ApiError, ApiRequest, Catalog, ConfigResult, ConfigResults, ConfigStatus, SendConfig,
    },
    domain::{Event, EventReason, Twin},
    invocation::Invocation,
    ports::{StoreError, MAX_STORED_ITEM_BYTES},
    schema::{MessageKind, Schema},
    service::{self, Change, HandlerError},
};

/// Time kept back from the invocation's deadline to answer.
pub const FINISH_MARGIN: Duration = Duration::from_secs(1);
/// Devices written and pushed to at once.
pub const CONCURRENCY: usize = 64;

mir_shared::deps! {
    /// The ports `api-config` uses.
    pub struct Deps { twins, schemas, events, publisher, cache, clock }
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
        "GET /v1/config" => api::respond(list(deps, &req).await),
        "POST /v1/config" => match req.json::<SendConfig>() {
            Ok(body) => api::respond(send(deps, body, invocation).await.map(|r| (200, r))),
            Err(e) => api::error_response(&e),
        },
        other => api::error_response(&ApiError::not_found(format!("no route {other}"))),
    }
}

async fn list(deps: &Deps<'_>, req: &ApiRequest) -> Result<(u16, Catalog), ApiError> {
    let found = service::catalog(
        deps.twins,
        deps.schemas,
        deps.cache,
        &req.targets()?,
        req.query_value("name"),
        MessageKind::Config,
    )
    .await?;
    Ok((200, found))
}

fn result_for(twin: &Twin, status: ConfigStatus) -> ConfigResult {
    ConfigResult {
        device_id: twin.spec.device_id.clone(),
        name: twin.meta.name.clone(),
        namespace: twin.meta.namespace.clone(),
        status,
        desired: None,
        error: None,
    }
}

/// A device the value goes to, validated: its schema and the normalized JSON.
struct Ready {
    index: usize,
    twin: Twin,
    schema: std::sync::Arc<Schema>,
    normalized: serde_json::Value,
}

pub async fn send(
    deps: &Deps<'_>,
    cfg: SendConfig,
    invocation: Invocation,
) -> Result<ConfigResults, ApiError> {
    api::require_targets(&cfg.targets, cfg.all_devices)?;
    api::refuse_large_json("config", &cfg.payload)?;
    let now = deps.clock.now();
    let until = Instant::now() + invocation.remaining(now).saturating_sub(FINISH_MARGIN);
    let twins = deps.twins.list(&cfg.targets).await?;
    if twins.is_empty() {
        return Err(ApiError::not_found("no device matches the targets"));
    }
    let mut results = Vec::with_capacity(twins.len());
    let mut ready = Vec::new();
    for twin in twins.into_iter().map(|t| t.value) {
        let index = results.len();
        let mut result = result_for(&twin, ConfigStatus::Error);
        match validate(deps, &twin, &cfg).await {
            Ok((schema, normalized, encoded_len)) => {
                api::refuse_large_message(
                    &format!("desired {}", cfg.name),
                    &twin.spec.device_id,
                    encoded_len,
                )?;
                if cfg.dry_run {
                    result.status = ConfigStatus::Validated;
                    result.desired = Some(normalized);
                } else {
                    ready.push(Ready {
                        index,
                        twin,
                        schema,
                        normalized,
                    });
                }
            }
            Err(HandlerError::Store(e)) if e.is_retryable() => return Err(e.into()),
            Err(e) => result.error = Some(e.to_string()),
        }
        results.push(result);
    }
    let cfg = &cfg;
    let applied: Vec<_> = stream::iter(ready)
        .map(|r| async move {
            let index = r.index;
            let outcome = if Instant::now() >= until {
                Err(None)
            } else {
                apply(deps, &r, cfg).await.map_err(Some)
            };
            (index, outcome)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (index, outcome) in applied {
        let result = &mut results[index];
        match outcome {
            Ok((status, desired)) => {
                result.status = status;
                result.desired = Some(desired);
            }
            Err(Some(HandlerError::Store(e))) if e.is_retryable() => return Err(e.into()),
            Err(Some(e)) => result.error = Some(e.to_string()),
            Err(None) => {
                result.error =
                    Some("not applied: the call's time ran out before this device".into())
            }
        }
    }
    Ok(ConfigResults { results })
}

/// The device's schema, the normalized JSON and the size of the message that pushes it.
async fn validate(
    deps: &Deps<'_>,
    twin: &Twin,
    cfg: &SendConfig,
) -> Result<(std::sync::Arc<Schema>, serde_json::Value, usize), HandlerError> {
    let id = twin.device_id()?;
    let schema = deps
        .cache
        .get(deps.schemas, id.as_str())
        .await?
        .ok_or_else(|| HandlerError::NoSchema(id.to_string()))?;
    let desc = schema.message_of_kind(&cfg.name, MessageKind::Config)?;
    let bytes = schema.json_to_proto(&desc, &cfg.payload)?;
    let normalized = schema.proto_to_json(&desc, &bytes)?;
    let message = DesiredProperties {
        properties: vec![PropertyValue {
            name: cfg.name.clone(),
            payload: bytes.into(),
            updated_at_ns: i64::MAX,
            version: 0,
        }],
        complete: false,
    };
    Ok((schema, normalized, message.encoded_len()))
}

/// Writes the desired value in the twin, records the event, pushes it if online.
async fn apply(
    deps: &Deps<'_>,
    ready: &Ready,
    cfg: &SendConfig,
) -> Result<(ConfigStatus, serde_json::Value), HandlerError> {
    let id = ready.twin.device_id()?;
    let normalized = &ready.normalized;
    let now = deps.clock.now();
    let updated = service::update_twin(deps.twins, id.as_str(), |t| {
        if t.properties.desired.get(&cfg.name) == Some(normalized) {
            return Ok(Change::Unchanged);
        }
        t.properties
            .desired
            .insert(cfg.name.clone(), normalized.clone());
        t.status.properties.desired.insert(cfg.name.clone(), now);
        let len = serde_json::to_vec(t).map_or(0, |v| v.len());
        if len > MAX_STORED_ITEM_BYTES {
            return Err(StoreError::TooLarge(format!(
                "with this value the twin of {id} would be {len} bytes; a stored item is \
                 at most {MAX_STORED_ITEM_BYTES} bytes"
            ))
            .into());
        }
        Ok(Change::Changed)
    })
    .await?
    .ok_or_else(|| HandlerError::UnknownDevice(id.to_string()))?
    .value;
    let ev = Event::new(
        EventReason::DesiredPropertiesUpdated,
        id.as_str(),
        now,
        &format!(
            "config|{}|{}",
            cfg.name,
            now.timestamp_nanos_opt().unwrap_or(0)
        ),
        format!("desired {}", cfg.name),
    )
    .for_twin(&updated)
    .with_payload(serde_json::json!({ cfg.name.clone(): normalized }));
    deps.events.append(&[ev]).await?;
    let sent = service::push_desired(
        deps.publisher,
        &ready.schema,
        &updated,
        std::slice::from_ref(&cfg.name),
    )
    .await?;
    Ok((
        if sent {
            ConfigStatus::Sent
        } else {
            ConfigStatus::Stored
        },
        normalized.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_shared::ports::{Clock, TwinStore};
    use mir_shared::testing::{api_request, response_json, TestWorld};
    use serde_json::json;

    fn deps(w: &TestWorld) -> Deps<'_> {
        Deps::try_from(&w.ports).expect("the test world has every port")
    }

    fn plenty(w: &TestWorld) -> Invocation {
        Invocation::starting(w.clock.now(), std::time::Duration::from_secs(29))
    }

    async fn post(w: &TestWorld, body: serde_json::Value) -> (u16, serde_json::Value) {
        response_json(
            &handle(
                &deps(w),
                &api_request("POST /v1/config", "/v1/config", "", Some(body)),
                plenty(w),
            )
            .await,
        )
    }

    #[tokio::test]
    async fn desired_is_stored_first_and_pushed_to_an_online_device() {
        let w = TestWorld::new();
        let mut twin = w.with_weather_device("w1").await;
        twin.status.online = true;
        TwinStore::update(&w.store, &twin, 1).await.expect("online");
        let (_, body) = post(&w, json!({"targets": {"ids": ["w1"]}, "name": "schema.v1.DataRateProp", "payload": {"sec": 5}})).await;
        assert_eq!(body["results"][0]["status"], "SENT", "{body}");
        assert_eq!(
            w.twin("w1").await.properties.desired["schema.v1.DataRateProp"],
            json!({"sec": 5})
        );
        assert_eq!(w.publisher.published()[0].0, "mir/w1/cfg/desired");
        assert_eq!(w.reasons("w1").await, ["DesiredPropertiesUpdated"]);
    }

    #[tokio::test]
    async fn an_offline_device_gets_it_stored_for_later() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let (_, body) = post(&w, json!({"targets": {"ids": ["w1"]}, "name": "schema.v1.DataRateProp", "payload": {"sec": 9}})).await;
        assert_eq!(body["results"][0]["status"], "STORED", "{body}");
        assert!(w.publisher.published().is_empty());
        let (_, cat) = response_json(
            &handle(
                &deps(&w),
                &api_request(
                    "GET /v1/config",
                    "/v1/config",
                    "ids=w1&name=schema.v1.DataRateProp",
                    None,
                ),
                plenty(&w),
            )
            .await,
        );
        assert_eq!(
            cat["devices"][0]["messages"][0]["desired"],
            json!({"sec": 9})
        );
    }

    #[tokio::test]
    async fn every_targeted_device_gets_it_in_one_call() {
        let w = TestWorld::new();
        let ids: Vec<String> = (0..40).map(|i| format!("d{i:02}")).collect();
        for id in &ids {
            let mut twin = w.with_weather_device(id).await;
            twin.status.online = id.as_str() < "d30";
            TwinStore::update(&w.store, &twin, 1).await.expect("online");
        }
        let (status, body) = post(&w, json!({"targets": {"ids": ids}, "name": "schema.v1.DataRateProp", "payload": {"sec": 7}})).await;
        assert_eq!(status, 200, "{body}");
        let results = body["results"].as_array().expect("results");
        assert_eq!(results.len(), 40);
        for r in results {
            let online = r["deviceId"].as_str().unwrap_or_default() < "d30";
            assert_eq!(r["status"], if online { "SENT" } else { "STORED" }, "{r}");
        }
        assert_eq!(w.publisher.published().len(), 30);
        for id in &ids {
            assert_eq!(
                w.twin(id).await.properties.desired["schema.v1.DataRateProp"],
                json!({"sec": 7})
            );
        }
    }

    #[tokio::test]
    async fn a_value_too_large_for_mqtt_or_a_twin_is_refused_with_413_and_nothing_is_written() {
        let w = TestWorld::new();
        let mut twin = w.with_blob_device("b1").await;
        twin.status.online = true;
        TwinStore::update(&w.store, &twin, 1).await.expect("online");
        let text = |n: usize| "x".repeat(n);
        // 140 KiB of text: fits a twin as JSON, over 128 KiB as a message.
        let (status, body) = post(&w, json!({"targets": {"ids": ["b1"]}, "name": "blob.v1.NoteProp", "payload": {"text": text(140 * 1024)}})).await;
        assert_eq!(status, 413, "{body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains("131072 bytes") && msg.contains("MQTT"),
            "{msg}"
        );
        // 210 KiB: over what a twin holds of one value.
        let (status, body) = post(&w, json!({"targets": {"ids": ["b1"]}, "name": "blob.v1.NoteProp", "payload": {"text": text(210 * 1024)}, "dryRun": true})).await;
        assert_eq!(status, 413, "{body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains("204800 bytes") && msg.contains("400 KB"),
            "{msg}"
        );
        assert!(w.twin("b1").await.properties.desired.is_empty());
        assert!(w.publisher.published().is_empty());
        // 100 KiB goes through.
        let (_, body) = post(&w, json!({"targets": {"ids": ["b1"]}, "name": "blob.v1.NoteProp", "payload": {"text": text(100 * 1024)}})).await;
        assert_eq!(
            body["results"][0]["status"], "SENT",
            "{}",
            body["results"][0]["error"]
        );
    }

    #[tokio::test]
    async fn with_no_time_left_nothing_is_written() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let invocation = Invocation::starting(w.clock.now(), FINISH_MARGIN / 2);
        let (_, body) = response_json(
            &handle(
                &deps(&w),
                &api_request("POST /v1/config", "/v1/config", "", Some(json!({"targets": {"ids": ["w1"]}, "name": "schema.v1.DataRateProp", "payload": {"sec": 5}}))),
                invocation,
            )
            .await,
        );
        assert_eq!(body["results"][0]["status"], "ERROR", "{body}");
        assert!(w.twin("w1").await.properties.desired.is_empty());
    }

    #[tokio::test]
    async fn invalid_config_names_the_field_and_a_command_is_not_config() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let (_, body) = post(&w, json!({"targets": {"ids": ["w1"]}, "name": "schema.v1.DataRateProp", "payload": {"seconds": 9}})).await;
        assert!(
            body["results"][0]["error"]
                .as_str()
                .unwrap_or("")
                .contains("seconds"),
            "{body}"
        );
        let (_, body) = post(
            &w,
            json!({"targets": {"ids": ["w1"]}, "name": "schema.v1.ActivateHVACCmd", "payload": {}}),
        )
        .await;
        assert_eq!(body["results"][0]["status"], "ERROR");
        assert!(w.twin("w1").await.properties.desired.is_empty());
    }

    #[tokio::test]
    async fn a_config_send_without_targets_needs_the_all_devices_flag() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let cfg = json!({"name": "schema.v1.DataRateProp", "payload": {"sec": 5}});
        let (status, body) = post(&w, cfg.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            body["error"],
            "no targets: name the devices (ids, names, namespaces, labels), or set allDevices to send to every device"
        );
        let mut all = cfg;
        all["allDevices"] = json!(true);
        let (status, body) = post(&w, all).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["results"][0]["deviceId"], "w1");
    }
}
