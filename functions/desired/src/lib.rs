//! `desired`: a device asks for its desired properties (rule `mir/+/cfg/desired/get`,
//! sent on every connect). Publishes all of them, encoded with the device's schema, on
//! `mir/{id}/cfg/desired`. A request that arrives before the device's first `Hello`
//! (invocations run in any order) cannot be encoded yet: the device is asked for its
//! schema (`hello/get`) and the `hello` function publishes the desired properties once
//! it has stored the schema, so the request succeeds as `deferred`, not retried.
//!
//! Architecture: see docs/architecture.md in the repository (sections Routes, Delivery semantics).

use prost::Message;

use mir_proto::topics::DeviceTopic;
use mir_shared::{
    rule_event::RuleEvent,
    service::{self, HandlerError},
};

mir_shared::deps! {
    /// The ports `desired` uses.
    pub struct Deps { twins, schemas, events, publisher, cache }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredOutcome {
    pub device_id: String,
    pub sent: Vec<String>,
    pub skipped: Vec<(String, String)>,
    /// No schema yet: `hello` sends the desired properties when the schema arrives.
    pub deferred: bool,
}

pub async fn handle(deps: &Deps<'_>, event: &RuleEvent) -> Result<DesiredOutcome, HandlerError> {
    let id = event.device()?;
    let (twin, _) = service::provision_sender(
        deps.twins,
        deps.events,
        event,
        DeviceTopic::DesiredGet,
        "desired properties request",
    )
    .await?;
    let (msg, skipped) = if twin.value.properties.desired.is_empty() {
        (
            mir_proto::wire::DesiredProperties {
                properties: vec![],
                complete: true,
            },
            vec![],
        )
    } else {
        let Some(schema) = deps.cache.get(deps.schemas, id.as_str()).await? else {
            let ask = deps
                .publisher
                .publish(&DeviceTopic::HelloGet.for_device(&id), Vec::new().into())
                .await;
            if let Err(e) = ask {
                tracing::info!(device = %id, error = %e, "could not ask the device for its schema");
            }
            return Ok(DesiredOutcome {
                device_id: id.to_string(),
                sent: Vec::new(),
                skipped: Vec::new(),
                deferred: true,
            });
        };
        service::desired_message(&schema, &twin.value, None)
    };
    for (name, reason) in &skipped {
        tracing::warn!(device = %id, property = %name, %reason, "desired property not sent");
    }
    let sent = msg.properties.iter().map(|p| p.name.clone()).collect();
    deps.publisher
        .publish(
            &DeviceTopic::Desired.for_device(&id),
            msg.encode_to_vec().into(),
        )
        .await?;
    Ok(DesiredOutcome {
        device_id: id.to_string(),
        sent,
        skipped,
        deferred: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_proto::{examples::weather, wire::DesiredProperties};
    use mir_shared::{
        ports::TwinStore,
        testing::{rule_event, TestWorld},
    };

    #[tokio::test]
    async fn the_device_gets_every_desired_property_encoded() {
        let w = TestWorld::new();
        let mut twin = w.with_weather_device("w1").await;
        twin.properties.desired.insert(
            "schema.v1.DataRateProp".into(),
            serde_json::json!({"sec": 7}),
        );
        w.store.update(&twin, 1).await.expect("update");
        let deps = Deps::try_from(&w.ports).expect("the test world has every port");
        let out = handle(&deps, &rule_event("w1", b"", 1)).await.expect("ok");
        assert_eq!(out.sent, ["schema.v1.DataRateProp"]);
        let (topic, payload) = w.publisher.published().remove(0);
        assert_eq!(topic, "mir/w1/cfg/desired");
        let msg = DesiredProperties::decode(payload).expect("decodes");
        assert!(msg.complete);
        assert_eq!(
            weather::DataRateProp::decode(msg.properties[0].payload.clone())
                .expect("prop")
                .sec,
            7
        );
    }

    #[tokio::test]
    async fn a_request_before_the_schema_asks_for_it_and_is_deferred_to_hello() {
        let w = TestWorld::new();
        let mut twin = mir_shared::domain::Twin::auto_provisioned(
            &mir_proto::DeviceId::new("w2").expect("id"),
        );
        twin.properties.desired.insert(
            "schema.v1.DataRateProp".into(),
            serde_json::json!({"sec": 7}),
        );
        w.store.create(&twin).await.expect("create");
        let deps = Deps::try_from(&w.ports).expect("the test world has every port");
        let out = handle(&deps, &rule_event("w2", b"", 1))
            .await
            .expect("ok, not retried");
        assert!(out.deferred && out.sent.is_empty());
        let topics: Vec<String> = w
            .publisher
            .published()
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(topics, ["mir/w2/hello/get"]);
    }

    #[tokio::test]
    async fn a_device_with_nothing_desired_gets_an_empty_complete_set() {
        let w = TestWorld::new();
        let deps = Deps::try_from(&w.ports).expect("the test world has every port");
        handle(&deps, &rule_event("w9", b"", 1)).await.expect("ok");
        let msg = DesiredProperties::decode(w.publisher.published()[0].1.clone()).expect("decodes");
        assert!(msg.complete && msg.properties.is_empty());
    }
}
