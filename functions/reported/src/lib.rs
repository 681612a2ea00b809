//! `reported`: a device reported properties (rule `mir/+/cfg/reported`).
//!
//! Each property is decoded with the device's schema and stored as proto3 JSON under
//! `properties.reported`, only if its device time is newer than the stored one: replays
//! and duplicate deliveries change nothing.
//!
//! Architecture: see docs/architecture.md in the repository (sections Routes, Delivery semantics).

use std::collections::BTreeMap;

use prost::Message;
use serde_json::Value;

use mir_proto::{topics::DeviceTopic, wire::ReportedProperties};
use mir_shared::{
    domain::{Event, EventReason},
    rule_event::RuleEvent,
    service::{self, Change, HandlerError},
};

mir_shared::deps! {
    /// The ports `reported` uses.
    pub struct Deps { twins, schemas, events, cache }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportedOutcome {
    pub device_id: String,
    pub applied: Vec<String>,
    pub ignored_older: Vec<String>,
    pub rejected: Vec<(String, String)>,
}

pub async fn handle(deps: &Deps<'_>, event: &RuleEvent) -> Result<ReportedOutcome, HandlerError> {
    let id = event.device()?;
    let msg = ReportedProperties::decode(event.payload_bytes()?.as_slice())
        .map_err(HandlerError::malformed("ReportedProperties"))?;
    let (twin, _) = service::provision_sender(
        deps.twins,
        deps.events,
        event,
        DeviceTopic::Reported,
        "reported properties",
    )
    .await?;
    if twin.value.spec.disabled {
        return Err(HandlerError::DeviceDisabled {
            device: id.to_string(),
            what: "reported properties",
        });
    }
    let Some(schema) = deps.cache.get(deps.schemas, id.as_str()).await? else {
        return Err(HandlerError::NoSchema(id.to_string()));
    };
    let received_at = event.received_at();
    let mut decoded: BTreeMap<String, (Value, chrono::DateTime<chrono::Utc>)> = BTreeMap::new();
    let mut rejected = Vec::new();
    for p in &msg.properties {
        let json = schema
            .message(&p.name)
            .and_then(|d| schema.proto_to_json(&d, &p.payload));
        let at = if p.updated_at_ns > 0 {
            service::from_nanos(p.updated_at_ns)
        } else {
            received_at
        };
        match json {
            Ok(v) => {
                // Within one message the last value of a name wins.
                decoded.insert(p.name.clone(), (v, at));
            }
            Err(e) => rejected.push((p.name.clone(), e.to_string())),
        }
    }
    let mut applied = Vec::new();
    let mut ignored = Vec::new();
    let twin = service::update_twin(deps.twins, id.as_str(), |twin| {
        applied.clear();
        ignored.clear();
        for (name, (value, at)) in &decoded {
            let newer = twin
                .status
                .properties
                .reported
                .get(name)
                .is_none_or(|t| t < at);
            if newer {
                twin.properties.reported.insert(name.clone(), value.clone());
                twin.status.properties.reported.insert(name.clone(), *at);
                applied.push(name.clone());
            } else {
                ignored.push(name.clone());
            }
        }
        Ok(if applied.is_empty() {
            Change::Unchanged
        } else {
            Change::Changed
        })
    })
    .await?
    .ok_or_else(|| HandlerError::UnknownDevice(id.to_string()))?;
    let cause = event.cause(DeviceTopic::Reported);
    let mut events = Vec::new();
    if !applied.is_empty() {
        let values: serde_json::Map<String, Value> = applied
            .iter()
            .filter_map(|n| decoded.get(n).map(|(v, _)| (n.clone(), v.clone())))
            .collect();
        events.push(
            Event::new(
                EventReason::ReportedPropertiesUpdated,
                id.as_str(),
                received_at,
                &cause,
                format!("reported {}", applied.join(", ")),
            )
            .for_twin(&twin.value)
            .with_payload(Value::Object(values)),
        );
    }
    if !rejected.is_empty() {
        events.push(
            Event::new(
                EventReason::InvalidMessage,
                id.as_str(),
                received_at,
                &cause,
                format!("reported properties refused: {}", rejected[0].1),
            )
            .for_twin(&twin.value)
            .with_payload(serde_json::json!({ "rejected": rejected })),
        );
    }
    deps.events.append(&events).await?;
    Ok(ReportedOutcome {
        device_id: id.to_string(),
        applied,
        ignored_older: ignored,
        rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_proto::examples::weather;
    use mir_shared::testing::{reported_event, TestWorld};

    fn deps(w: &TestWorld) -> Deps<'_> {
        Deps::try_from(&w.ports).expect("the test world has every port")
    }

    #[tokio::test]
    async fn a_newer_report_is_applied_and_an_older_replay_is_ignored() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let new = weather::DataRateStatus { sec: 5 }.encode_to_vec();
        let old = weather::DataRateStatus { sec: 1 }.encode_to_vec();
        let out = handle(
            &deps(&w),
            &reported_event("w1", "schema.v1.DataRateStatus", new, 2_000_000_000, 3_000),
        )
        .await
        .expect("ok");
        assert_eq!(out.applied, ["schema.v1.DataRateStatus"]);
        let out = handle(
            &deps(&w),
            &reported_event("w1", "schema.v1.DataRateStatus", old, 1_000_000_000, 4_000),
        )
        .await
        .expect("ok");
        assert_eq!(out.ignored_older, ["schema.v1.DataRateStatus"]);
        let twin = w.twin("w1").await;
        assert_eq!(
            twin.properties.reported["schema.v1.DataRateStatus"],
            serde_json::json!({"sec": 5})
        );
        assert_eq!(w.reasons("w1").await, ["ReportedPropertiesUpdated"]);
    }

    #[tokio::test]
    async fn an_unknown_property_is_refused_and_recorded() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let out = handle(
            &deps(&w),
            &reported_event("w1", "schema.v1.Ghost", vec![], 1, 1),
        )
        .await
        .expect("ok");
        assert_eq!(out.rejected.len(), 1);
        assert!(w.twin("w1").await.properties.reported.is_empty());
        assert_eq!(w.reasons("w1").await, ["InvalidMessage"]);
    }
}
