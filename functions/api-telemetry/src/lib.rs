//! `api-telemetry`: `/v1/telemetry` lists the telemetry messages of each device (from
//! its schema, with what is stored of each); `/v1/telemetry/query` returns recent
//! values of one message of one device.
//!
//! `GET /v1/telemetry/query?ids=<device>&name=<message>` takes `since` (default 15m:
//! a duration back from now or an RFC 3339 time), `until` (same forms; default now and
//! later), `limit` (rows per page, default [`DEFAULT_LIMIT`], at most
//! [`MAX_PAGE_LIMIT`](mir_shared::domain::page::MAX_PAGE_LIMIT)) and `nextToken`. The first page holds the newest `limit` rows of
//! the window, and the rows of every page are oldest first; `nextToken` (absent on the
//! last page) asks for the `limit` rows before them. So a caller that wants the newest N
//! rows follows tokens until it has N, putting each page before the previous one (as
//! `mir telemetry query --limit N` does). A token that is not one this API gave is a 400.
//!
//! Architecture: see docs/architecture.md in the repository (sections Routes, Delivery semantics).

use std::collections::BTreeSet;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};

use mir_shared::{
    api::{
        self, ApiError, ApiRequest, DeviceTelemetry, TelemetryList, TelemetryQueryResult,
        TelemetryRow,
    },
    ports::{TelemetryQuery, TelemetrySeries},
    schema::MessageKind,
    service,
};

/// Rows of a query page when the caller gives no `limit`.
pub const DEFAULT_LIMIT: usize = 100;

mir_shared::deps! {
    /// The ports `api-telemetry` uses.
    pub struct Deps { twins, schemas, telemetry, cache, clock }
}

pub async fn handle(deps: &Deps<'_>, event: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let req = match ApiRequest::from_event(event) {
        Ok(r) => r,
        Err(e) => return api::error_response(&e),
    };
    match req.route_key.as_str() {
        "GET /v1/telemetry" => api::respond(list(deps, &req).await),
        "GET /v1/telemetry/query" => api::respond(query(deps, &req).await),
        other => api::error_response(&ApiError::not_found(format!("no route {other}"))),
    }
}

async fn list(deps: &Deps<'_>, req: &ApiRequest) -> Result<(u16, TelemetryList), ApiError> {
    let mut devices = Vec::new();
    for twin in deps
        .twins
        .list(&req.targets()?)
        .await?
        .into_iter()
        .map(|t| t.value)
    {
        let id = twin.spec.device_id.clone();
        let stored = deps.telemetry.series(&id).await?;
        let mut entry = DeviceTelemetry {
            device_id: id.clone(),
            name: twin.meta.name.clone(),
            namespace: twin.meta.namespace.clone(),
            messages: vec![],
            fields: Default::default(),
            error: None,
        };
        let declared: BTreeSet<String> = match deps.cache.get(deps.schemas, &id).await? {
            Some(schema) => {
                let declared = schema.messages_of(MessageKind::Telemetry);
                for name in &declared {
                    if let Ok(plan) = schema.telemetry_plan(name) {
                        entry.fields.insert(name.clone(), plan.field_names());
                    }
                }
                declared.into_iter().collect()
            }
            None => {
                entry.error = Some("no schema yet: the device has not connected".into());
                BTreeSet::new()
            }
        };
        let names: BTreeSet<String> = declared
            .iter()
            .cloned()
            .chain(stored.iter().map(|s| s.measure.clone()))
            .collect();
        for name in names {
            entry.messages.push(
                stored
                    .iter()
                    .find(|s| s.measure == name)
                    .cloned()
                    .unwrap_or(TelemetrySeries {
                        measure: name,
                        count: 0,
                        last_time_ns: 0,
                    }),
            );
        }
        devices.push(entry);
    }
    Ok((200, TelemetryList { devices }))
}

async fn query(deps: &Deps<'_>, req: &ApiRequest) -> Result<(u16, TelemetryQueryResult), ApiError> {
    let name = req
        .query_value("name")
        .ok_or_else(|| ApiError::bad_request("name (the telemetry message) is required"))?;
    let twins = deps.twins.list(&req.targets()?).await?;
    let twin = match twins.as_slice() {
        [one] => &one.value,
        [] => return Err(ApiError::not_found("no device matches the targets")),
        many => {
            let names: Vec<String> = many.iter().map(|t| t.value.display_name()).collect();
            return Err(ApiError::bad_request(format!(
                "the query needs one device; the targets match {}",
                names.join(", ")
            )));
        }
    };
    let now = deps.clock.now();
    let since = match req.query_value("since") {
        Some(s) => api::parse_since(s, now)?,
        None => now - chrono::Duration::minutes(15),
    };
    let until = req
        .query_value("until")
        .map(|u| api::parse_since(u, now))
        .transpose()?;
    let mut page = req.page()?;
    if req.query_value("limit").is_none() {
        page.limit = DEFAULT_LIMIT;
    }
    if let Some(schema) = deps.cache.get(deps.schemas, &twin.spec.device_id).await? {
        schema.message_of_kind(name, MessageKind::Telemetry)?;
    }
    let mut query = TelemetryQuery::new(twin.spec.device_id.clone(), name, service::nanos(since))
        .newest_first();
    query.until_ns = until.map(service::nanos);
    query.page = page;
    let page = deps.telemetry.query(&query).await?;
    let mut records = page.items;
    records.reverse();
    let mut columns: Vec<String> = Vec::new();
    let rows = records
        .into_iter()
        .map(|r| {
            for (k, _) in &r.values {
                if !columns.iter().any(|c| **c == **k) {
                    columns.push(k.to_string());
                }
            }
            TelemetryRow {
                time: service::from_nanos(r.time_ns),
                values: r
                    .values
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            }
        })
        .collect();
    Ok((
        200,
        TelemetryQueryResult {
            device_id: twin.spec.device_id.clone(),
            measure: name.to_string(),
            columns,
            rows,
            next_token: page.next_token,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_shared::ports::Clock;
    use mir_shared::{
        ports::TelemetrySink,
        telemetry::RecordContext,
        testing::{api_request, env, response_json, TestWorld},
    };
    use prost::Message;

    async fn seed(w: &TestWorld) {
        w.with_weather_device("w1").await;
        let schema = Schema::from_descriptor_set(mir_proto::examples::weather::DESCRIPTOR_SET)
            .expect("schema");
        let plan = schema.telemetry_plan("schema.v1.Env").expect("plan");
        let ctx = RecordContext {
            device_id: "w1",
            name: "w1",
            namespace: "default",
            received_at_ns: 0,
        };
        let t0 = service::nanos(w.clock.now());
        let recs: Vec<_> = (0..5)
            .map(|i| {
                plan.map(
                    &env(t0 - (5 - i) * 60_000_000_000, 20 + i as i32).encode_to_vec(),
                    &ctx,
                    0,
                    i as u64,
                )
                .expect("map")
            })
            .collect();
        w.store.write(&recs).await.expect("write");
    }
    use mir_shared::schema::Schema;

    fn deps(w: &TestWorld) -> Deps<'_> {
        Deps::try_from(&w.ports).expect("the test world has every port")
    }

    #[tokio::test]
    async fn the_list_shows_declared_messages_with_what_is_stored() {
        let w = TestWorld::new();
        seed(&w).await;
        let (_, body) = response_json(
            &handle(
                &deps(&w),
                &api_request("GET /v1/telemetry", "/v1/telemetry", "ids=w1", None),
            )
            .await,
        );
        assert_eq!(
            body["devices"][0]["messages"][0]["measure"],
            "schema.v1.Env"
        );
        assert_eq!(body["devices"][0]["messages"][0]["count"], 5);
    }

    #[tokio::test]
    async fn a_query_returns_recent_rows_oldest_first_within_the_window() {
        let w = TestWorld::new();
        seed(&w).await;
        let q = "ids=w1&name=schema.v1.Env&since=3m&limit=10";
        let (status, body) = response_json(
            &handle(
                &deps(&w),
                &api_request("GET /v1/telemetry/query", "/v1/telemetry/query", q, None),
            )
            .await,
        );
        assert_eq!(status, 200, "{body}");
        let temps: Vec<i64> = body["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["values"]["temperature"].as_i64().unwrap_or(-1))
            .collect();
        assert_eq!(temps, [22, 23, 24]);
        assert!(body["columns"]
            .as_array()
            .expect("cols")
            .contains(&serde_json::json!("wind_speed")));
    }

    async fn temps(w: &TestWorld, q: &str) -> (u16, Vec<i64>, serde_json::Value) {
        let (status, body) = response_json(
            &handle(
                &deps(w),
                &api_request("GET /v1/telemetry/query", "/v1/telemetry/query", q, None),
            )
            .await,
        );
        let temps = body["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| r["values"]["temperature"].as_i64().unwrap_or(-1))
                    .collect()
            })
            .unwrap_or_default();
        (status, temps, body)
    }

    #[tokio::test]
    async fn pages_walk_back_from_the_newest_rows_each_oldest_first() {
        let w = TestWorld::new();
        seed(&w).await;
        let base = "ids=w1&name=schema.v1.Env&since=1h&limit=2";
        let (status, first, body) = temps(&w, base).await;
        assert_eq!((status, first), (200, vec![23, 24]), "{body}");
        let token = body["nextToken"].as_str().expect("more pages").to_string();
        let (_, second, body) = temps(&w, &format!("{base}&nextToken={token}")).await;
        assert_eq!(second, [21, 22]);
        let token = body["nextToken"].as_str().expect("more pages").to_string();
        let (_, third, body) = temps(&w, &format!("{base}&nextToken={token}")).await;
        assert_eq!(third, [20]);
        assert!(body.get("nextToken").is_none(), "the last page: {body}");
    }

    #[tokio::test]
    async fn until_ends_the_window_and_a_foreign_token_is_a_bad_request() {
        let w = TestWorld::new();
        seed(&w).await;
        // Rows at 5, 4, 3, 2 and 1 minutes ago; until=150s leaves those 5 to 3 min ago.
        let (status, got, body) = temps(&w, "ids=w1&name=schema.v1.Env&since=1h&until=150s").await;
        assert_eq!((status, got), (200, vec![20, 21, 22]), "{body}");
        let (status, _, body) =
            temps(&w, "ids=w1&name=schema.v1.Env&nextToken=bm90LWEtY3Vyc29y").await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or("")
                .starts_with("invalid page token: not a position"),
            "{body}"
        );
        let (status, _, body) = temps(&w, "ids=w1&name=schema.v1.Env&limit=10001").await;
        assert_eq!(status, 400, "{body}");
    }

    #[tokio::test]
    async fn a_query_needs_a_known_telemetry_message() {
        let w = TestWorld::new();
        seed(&w).await;
        let (status, body) = response_json(
            &handle(
                &deps(&w),
                &api_request(
                    "GET /v1/telemetry/query",
                    "/v1/telemetry/query",
                    "ids=w1&name=schema.v1.Nope",
                    None,
                ),
            )
            .await,
        );
        assert_eq!(status, 400);
        assert!(
            body["error"]
                .as_str()
                .unwrap_or("")
                .contains("schema.v1.Env"),
            "{body}"
        );
    }
}
