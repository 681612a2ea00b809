//! `api-config`: `/v1/config` — list the configuration messages of devices with their
//! templates and current desired values, and set a desired property.
//!
//! Setting validates the JSON against each device's schema, writes the desired value in
//! the twin first (optimistic concurrency), then pushes it to the device if it is
//! online; an offline device pulls it when it connects.
//!
//! Architecture: see docs/architecture.md in the repository (sections Routes, Delivery semantics).

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};

use mir_shared::{
    api::{
        self, ApiError, ApiRequest, Catalog, ConfigResult, ConfigResults, ConfigStatus, SendConfig,
    },
    domain::{Event, EventReason, Twin},
    schema::MessageKind,
    service::{self, Change, HandlerError},
};

mir_shared::deps! {
    /// The ports `api-config` uses.
    pub struct Deps { twins, schemas, events, publisher, cache, clock }
}

pub async fn handle(deps: &Deps<'_>, event: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let req = match ApiRequest::from_event(event) {
        Ok(r) => r,
        Err(e) => return api::error_response(&e),
    };
    match req.route_key.as_str() {
        "GET /v1/config" => api::respond(list(deps, &req).await),
        "POST /v1/config" => match req.json::<SendConfig>() {
            Ok(body) => api::respond(send(deps, body).await.map(|r| (200, r))),
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

pub async fn send(deps: &Deps<'_>, cfg: SendConfig) -> Result<ConfigResults, ApiError> {
    let twins = deps.twins.list(&cfg.targets).await?;
    if twins.is_empty() {
        return Err(ApiError::not_found("no device matches the targets"));
    }
    let mut results = Vec::with_capacity(twins.len());
    for twin in twins.into_iter().map(|t| t.value) {
        let mut result = result_for(&twin, ConfigStatus::Error);
        match send_one(deps, &twin, &cfg).await {
            Ok((status, desired)) => {
                result.status = status;
                result.desired = Some(desired);
            }
            Err(HandlerError::Store(e)) if e.is_retryable() => return Err(e.into()),
            Err(e) => result.error = Some(e.to_string()),
        }
        results.push(result);
    }
    Ok(ConfigResults { results })
}

async fn send_one(
    deps: &Deps<'_>,
    twin: &Twin,
    cfg: &SendConfig,
) -> Result<(ConfigStatus, serde_json::Value), HandlerError> {
    let id = twin.device_id()?;
    let schema = deps
        .cache
        .get(deps.schemas, id.as_str())
        .await?
        .ok_or_else(|| HandlerError::NoSchema(id.to_string()))?;
    let desc = schema.message_of_kind(&cfg.name, MessageKind::Config)?;
    let bytes = schema.json_to_proto(&desc, &cfg.payload)?;
    let normalized = schema.proto_to_json(&desc, &bytes)?;
    if cfg.dry_run {
        return Ok((ConfigStatus::Validated, normalized));
    }
    let now = deps.clock.now();
    let updated = service::update_twin(deps.twins, id.as_str(), |t| {
        if t.properties.desired.get(&cfg.name) == Some(&normalized) {
            return Ok(Change::Unchanged);
        }
        t.properties
            .desired
            .insert(cfg.name.clone(), normalized.clone());
        t.status.properties.desired.insert(cfg.name.clone(), now);
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
        &schema,
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
        normalized,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_shared::ports::TwinStore;
    use mir_shared::testing::{api_request, response_json, TestWorld};
    use serde_json::json;

    fn deps(w: &TestWorld) -> Deps<'_> {
        Deps::try_from(&w.ports).expect("the test world has every port")
    }

    async fn post(w: &TestWorld, body: serde_json::Value) -> (u16, serde_json::Value) {
        response_json(
            &handle(
                &deps(w),
                &api_request("POST /v1/config", "/v1/config", "", Some(body)),
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
            )
            .await,
        );
        assert_eq!(
            cat["devices"][0]["messages"][0]["desired"],
            json!({"sec": 9})
        );
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
}
