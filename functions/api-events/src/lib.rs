//! `api-events`: `/v1/events` lists the audit trail, newest first, filtered by device,
//! reason and time, one page at a time (`limit`, `nextToken`); `POST /v1/events` records
//! a module's custom event ([`PublishEvent`]: reason `Custom`, its name in
//! `customName`), which the event feed then fans out like Mir's own.
//!
//! Architecture: see docs/architecture.md in the repository (sections Routes, Delivery semantics).

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};

use mir_shared::{
    api::{self, ApiError, ApiRequest, EventList, PublishEvent},
    domain::{Event, EventFilter, EventReason},
};

mir_shared::deps! {
    /// The ports `api-events` uses.
    pub struct Deps { events, clock }
}

pub async fn handle(deps: &Deps<'_>, event: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let req = match ApiRequest::from_event(event) {
        Ok(r) => r,
        Err(e) => return api::error_response(&e),
    };
    match req.route_key.as_str() {
        "GET /v1/events" => api::respond(list(deps, &req).await),
        "POST /v1/events" => api::respond(publish(deps, &req).await),
        other => api::error_response(&ApiError::not_found(format!("no route {other}"))),
    }
}

/// Reads the filter from the query string: `deviceId`, `reason`, `since` (inclusive)
/// and `until` (exclusive), each a duration back from now (`15m`) or an RFC 3339 time.
pub fn filter(
    req: &ApiRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<EventFilter, ApiError> {
    let reason = match req.query_value("reason") {
        Some(r) => {
            Some(EventReason::from_name(r).map_err(|e| ApiError::bad_request(e.to_string()))?)
        }
        None => None,
    };
    let time = |name: &str| {
        req.query_value(name)
            .map(|s| api::parse_since(s, now))
            .transpose()
    };
    let (since, until) = (time("since")?, time("until")?);
    if let (Some(s), Some(u)) = (since, until) {
        if s >= u {
            return Err(ApiError::bad_request(format!(
                "since ({}) must be before until ({})",
                s.to_rfc3339(),
                u.to_rfc3339()
            )));
        }
    }
    Ok(EventFilter {
        device_id: req.query_value("deviceId").map(String::from),
        reason,
        since,
        until,
    })
}

/// One page: `limit` (default and maximum of [`ApiRequest::page`]) and `nextToken`
/// from the previous page.
async fn list(deps: &Deps<'_>, req: &ApiRequest) -> Result<(u16, EventList), ApiError> {
    let f = filter(req, deps.clock.now())?;
    let page = deps.events.list(&f, &req.page()?).await?;
    Ok((
        200,
        EventList {
            events: page.items,
            next_token: page.next_token,
        },
    ))
}

/// Records the custom event of the body: 201 with the stored event. A retried request
/// (same request id) records it once.
async fn publish(deps: &Deps<'_>, req: &ApiRequest) -> Result<(u16, Event), ApiError> {
    let body: PublishEvent = req.json()?;
    api::refuse_large_json("event", &body.payload)?;
    let event = body
        .to_event(&req.caller, deps.clock.now())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    deps.events.append(std::slice::from_ref(&event)).await?;
    Ok((201, event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_shared::ports::EventStore;
    use mir_shared::{
        domain::Event,
        testing::{api_request, at_ms, response_json, TestWorld},
    };

    #[tokio::test]
    async fn events_filter_by_device_reason_and_time_newest_first() {
        let w = TestWorld::new();
        let evs = vec![
            Event::new(EventReason::DeviceOnline, "a", at_ms(1_000), "1", "on"),
            Event::new(EventReason::DeviceOffline, "a", at_ms(2_000), "2", "off"),
            Event::new(EventReason::DeviceOnline, "b", at_ms(3_000), "3", "on"),
        ];
        w.store.append(&evs).await.expect("append");
        w.store.append(&evs).await.expect("idempotent");
        let deps = Deps::try_from(&w.ports).expect("the test world has every port");
        let call = |q: &'static str| {
            let req = api_request("GET /v1/events", "/v1/events", q, None);
            let deps = &deps;
            async move { response_json(&handle(deps, &req).await) }
        };
        let (_, all) = call("").await;
        assert_eq!(all["events"].as_array().map(Vec::len), Some(3));
        assert_eq!(all["events"][0]["deviceId"], "b");
        let (_, a) = call("deviceId=a&reason=deviceonline").await;
        assert_eq!(a["events"].as_array().map(Vec::len), Some(1));
        let (_, recent) = call("since=2026-01-01T00:00:00Z").await;
        assert_eq!(recent["events"].as_array().map(Vec::len), Some(0));
        let (status, body) = call("reason=Exploded").await;
        assert_eq!(status, 400);
        assert!(body["error"]
            .as_str()
            .unwrap_or("")
            .contains("DeviceOnline"));
        let (_, early) = call("until=1970-01-01T00:00:02Z").await;
        assert_eq!(early["events"].as_array().map(Vec::len), Some(1));
        assert_eq!(early["events"][0]["reason"], "DeviceOnline");
        let (status, body) = call("since=1970-01-01T00:00:02Z&until=1970-01-01T00:00:01Z").await;
        assert_eq!(status, 400);
        assert!(body["error"]
            .as_str()
            .unwrap_or("")
            .contains("before until"));
    }

    fn post(body: serde_json::Value) -> aws_lambda_events::apigw::ApiGatewayV2httpRequest {
        api_request("POST /v1/events", "/v1/events", "", Some(body))
    }

    #[tokio::test]
    async fn a_custom_event_is_stored_with_its_name_type_payload_and_caller() {
        let w = TestWorld::new();
        let deps = Deps::try_from(&w.ports).expect("the test world has every port");
        let req = post(serde_json::json!({
            "deviceId": "w1", "type": "Warning", "name": "DeviceOfflineAlert",
            "message": "offline for 5 minutes", "payload": {"minutes": 5}
        }));
        let (status, body) = response_json(&handle(&deps, &req).await);
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["reason"], "Custom");
        assert_eq!(body["customName"], "DeviceOfflineAlert");
        assert_eq!(body["type"], "Warning");
        assert_eq!(body["actor"], "arn:aws:iam::123456789012:user/operator");
        let again = response_json(&handle(&deps, &req).await).1;
        assert_eq!(
            again["id"], body["id"],
            "the id derives from the request id"
        );
        let (_, listed) = response_json(
            &handle(
                &deps,
                &api_request("GET /v1/events", "/v1/events", "reason=custom", None),
            )
            .await,
        );
        let events = listed["events"].as_array().cloned().unwrap_or_default();
        assert_eq!(events.len(), 1, "{listed}");
        assert_eq!(events[0]["payload"]["minutes"], 5);
        assert_eq!(events[0]["message"], "offline for 5 minutes");
    }

    #[tokio::test]
    async fn a_custom_event_with_a_bad_name_device_or_body_is_a_bad_request() {
        let w = TestWorld::new();
        let deps = Deps::try_from(&w.ports).expect("the test world has every port");
        let cases = [
            (
                serde_json::json!({"deviceId": "w1", "name": "DeviceOnline"}),
                "is Mir's reason DeviceOnline",
            ),
            (
                serde_json::json!({"deviceId": "w1", "name": "on fire"}),
                "has ' '",
            ),
            (
                serde_json::json!({"deviceId": " ", "name": "Alert"}),
                "deviceId is required",
            ),
            (
                serde_json::json!({"deviceId": "a/b", "name": "Alert"}),
                "device id",
            ),
            (
                serde_json::json!({"deviceId": "w1", "name": "Alert", "reason": "DeviceOnline"}),
                "unknown field `reason`",
            ),
            (
                serde_json::json!({"deviceId": "w1", "name": "Alert", "type": "Fatal"}),
                "unknown variant `Fatal`",
            ),
            (
                serde_json::json!({"deviceId": "w1", "name": "Alert", "message": "m".repeat(1025)}),
                "at most 1024",
            ),
        ];
        for (body, expected) in cases {
            let (status, answer) = response_json(&handle(&deps, &post(body.clone())).await);
            assert_eq!(status, 400, "{body} -> {answer}");
            let error = answer["error"].as_str().unwrap_or("");
            assert!(error.contains(expected), "{body}: {error}");
        }
        let huge = serde_json::json!({"deviceId": "w1", "name": "Alert",
            "payload": "x".repeat(api::MAX_PAYLOAD_JSON_BYTES)});
        let (status, _) = response_json(&handle(&deps, &post(huge)).await);
        assert_eq!(status, 413);
        let listed = w
            .store
            .list(&EventFilter::default(), &Default::default())
            .await
            .expect("list");
        assert!(listed.items.is_empty(), "nothing refused was stored");
    }

    #[tokio::test]
    async fn pages_follow_next_token_to_the_last_which_has_none() {
        let w = TestWorld::new();
        let evs: Vec<Event> = (0..5)
            .map(|i| {
                let cause = format!("c{i}");
                Event::new(
                    EventReason::CommandSent,
                    "a",
                    at_ms(i * 1_000),
                    &cause,
                    "sent",
                )
            })
            .collect();
        w.store.append(&evs).await.expect("append");
        let deps = Deps::try_from(&w.ports).expect("the test world has every port");
        let call = |q: String| {
            let deps = &deps;
            async move {
                let req = api_request("GET /v1/events", "/v1/events", &q, None);
                response_json(&handle(deps, &req).await)
            }
        };
        let mut seen = Vec::new();
        let mut query = "limit=2".to_string();
        let mut pages = 0;
        loop {
            let (status, body) = call(query.clone()).await;
            assert_eq!(status, 200, "{body}");
            pages += 1;
            for e in body["events"].as_array().into_iter().flatten() {
                seen.push(e["id"].as_str().unwrap_or("").to_string());
            }
            match body["nextToken"].as_str() {
                Some(t) => query = format!("limit=2&nextToken={t}"),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        let newest_first: Vec<String> = evs.iter().rev().map(|e| e.id.clone()).collect();
        assert_eq!(seen, newest_first);
        let (status, body) = call("nextToken=bm90LWEtdG9rZW4".into()).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"]
            .as_str()
            .unwrap_or("")
            .contains("invalid page token"));
        let (status, _) = call("limit=0".into()).await;
        assert_eq!(status, 400);
    }
}
