//! `hello`: a device announced itself (rule `mir/+/hello`).
//!
//! Auto-provisions an unknown device in namespace `default`, stores the device's schema
//! (compressed, only when it changed), and updates `status.schema` of its twin.
//! When the schema changed and the twin has desired properties, they are published to
//! the device encoded with the new schema: a `cfg/desired/get` that arrived before the
//! first `Hello` (invocations run in any order) found no schema to encode them with, so
//! the device gets them from here, within the same second rather than at a retry.
//!
//! A hello is how a device registers: one received after the device was deleted creates
//! it again (on AWS a deleted device's certificates are revoked, so only a device given
//! new credentials gets this far; locally the plain port lets it in). A hello received
//! before the deletion and delivered after it is ignored: nothing is stored.
//!
//! Architecture: see docs/architecture.md in the repository (sections Routes, Delivery semantics).

use std::sync::Arc;

use prost::Message;

use mir_proto::{topics::DeviceTopic, wire::Hello};
use mir_shared::{
    domain::{presence, Event, EventReason},
    ports::StoredSchema,
    rule_event::RuleEvent,
    schema::{self, Schema},
    service::{self, AfterDelete, Change, HandlerError},
};

mir_shared::deps! {
    /// What the handler needs.
    pub struct Deps { twins, schemas, events, cache, publisher, stale_after }
}

/// What the handler did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloOutcome {
    pub device_id: String,
    pub created: bool,
    pub schema_changed: bool,
    pub package_names: Vec<String>,
    /// Sent before the device was deleted: ignored, nothing stored.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Desired properties published to the device (encoded with the new schema).
    pub desired_sent: Vec<String>,
}

pub async fn handle(deps: &Deps<'_>, event: &RuleEvent) -> Result<HelloOutcome, HandlerError> {
    let id = event.device()?;
    let hello = Hello::decode(event.payload_bytes()?.as_slice())
        .map_err(HandlerError::malformed("Hello"))?;
    let raw = schema::hello_schema_bytes(&hello)?;
    let decoded = Arc::new(Schema::from_descriptor_set(&raw)?);
    let hash = service::schema_hash(&raw);
    let package_names = decoded.package_names();
    let received_at = event.received_at();
    let mut outcome = HelloOutcome {
        device_id: id.to_string(),
        created: false,
        schema_changed: false,
        package_names: package_names.clone(),
        deleted: false,
        desired_sent: Vec::new(),
    };

    let cause = event.cause(DeviceTopic::Hello);
    let how = "first hello";
    let provisioned = service::provision(
        deps.twins,
        deps.events,
        &id,
        received_at,
        &cause,
        how,
        AfterDelete::Recreate,
    );
    let Some((_, created)) = provisioned.await? else {
        outcome.deleted = true;
        return Ok(outcome);
    };
    outcome.created = created;

    let previous = deps.schemas.get(id.as_str()).await?;
    let schema_changed = previous.as_ref().is_none_or(|p| p.hash != hash);
    outcome.schema_changed = schema_changed;
    if schema_changed {
        deps.schemas
            .put(&StoredSchema {
                device_id: id.to_string(),
                compressed: schema::compress(&raw).into(),
                hash: hash.clone(),
                package_names: package_names.clone(),
                updated_at: received_at,
            })
            .await?;
    }
    deps.cache.insert(id.as_str(), hash, decoded.clone());

    let names = package_names.clone();
    let interval = (hello.heartbeat_interval_sec > 0).then_some(hello.heartbeat_interval_sec);
    let twin = service::update_twin(deps.twins, id.as_str(), |twin| {
        let new_interval = interval.is_some() && twin.status.heartbeat_interval_sec != interval;
        if new_interval {
            // The staleness follows the interval the device said.
            twin.status.heartbeat_interval_sec = interval;
            presence::set_stale_at(&mut twin.status, deps.stale_after);
        }
        let s = &mut twin.status.schema;
        let newer = s.last_schema_fetch.is_none_or(|t| t < received_at);
        if s.package_names == names && !newer {
            return Ok(if new_interval {
                Change::Changed
            } else {
                Change::Unchanged
            });
        }
        s.package_names = names.clone();
        if newer {
            s.last_schema_fetch = Some(received_at);
        }
        Ok(Change::Changed)
    })
    .await?
    .ok_or_else(|| HandlerError::UnknownDevice(id.to_string()))?;

    let mut events = Vec::new();
    if schema_changed {
        events.push(
            Event::new(EventReason::SchemaUpdated, id.as_str(), received_at, &cause, format!("schema with packages {}", package_names.join(", ")))
                .for_twin(&twin.value)
                .with_payload(serde_json::json!({ "packageNames": package_names, "sdkVersion": hello.sdk_version })),
        );
    }
    deps.events.append(&events).await?;
    if schema_changed && !twin.value.properties.desired.is_empty() {
        outcome.desired_sent = push_desired(deps, &id, &decoded, &twin.value).await;
    }
    Ok(outcome)
}

/// Publishes the desired properties; a failure is logged only (the device asks for them
/// on its next connection, and a retry of this hello would find the schema unchanged).
async fn push_desired(
    deps: &Deps<'_>,
    id: &mir_proto::DeviceId,
    schema: &Schema,
    twin: &mir_shared::domain::Twin,
) -> Vec<String> {
    let (msg, skipped) = service::desired_message(schema, twin, None);
    for (name, reason) in &skipped {
        tracing::warn!(device = %id, property = %name, %reason, "desired property not sent");
    }
    let sent = msg.properties.iter().map(|p| p.name.clone()).collect();
    let topic = DeviceTopic::Desired.for_device(id);
    match deps
        .publisher
        .publish(&topic, msg.encode_to_vec().into())
        .await
    {
        Ok(()) => sent,
        Err(e) => {
            tracing::info!(device = %id, error = %e, "could not publish the desired properties");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_shared::ports::TwinStore;
    use mir_shared::testing::{hello_event, TestWorld};

    fn deps(w: &TestWorld) -> Deps<'_> {
        Deps::try_from(&w.ports).expect("the test world has every port")
    }

    #[tokio::test]
    async fn an_unknown_device_saying_hello_is_provisioned_with_its_schema() {
        let w = TestWorld::new();
        let out = handle(&deps(&w), &hello_event("weather", 1_000))
            .await
            .expect("ok");
        assert!(out.created && out.schema_changed);
        let twin = w.twin("weather").await;
        assert_eq!(twin.display_name(), "weather/default");
        assert_eq!(
            twin.status.schema.package_names,
            ["google.protobuf", "mir.device.v1", "schema.v1"]
        );
        assert!(w.store_schema("weather").await.is_some());
        let mut reasons = w.reasons("weather").await;
        reasons.sort();
        assert_eq!(reasons, ["DeviceCreated", "SchemaUpdated"]);
    }

    #[tokio::test]
    async fn a_first_hello_brings_the_desired_properties_set_before_the_schema_was_known() {
        let w = TestWorld::new();
        let mut twin = mir_shared::domain::Twin::auto_provisioned(
            &mir_proto::DeviceId::new("weather").expect("id"),
        );
        twin.properties.desired.insert(
            "schema.v1.DataRateProp".into(),
            serde_json::json!({"sec": 7}),
        );
        w.store
            .create(&twin)
            .await
            .expect("created before any hello");
        let out = handle(&deps(&w), &hello_event("weather", 1_000))
            .await
            .expect("ok");
        assert_eq!(out.desired_sent, ["schema.v1.DataRateProp"]);
        let (topic, payload) = w.publisher.published().remove(0);
        assert_eq!(topic, "mir/weather/cfg/desired");
        let msg = mir_proto::wire::DesiredProperties::decode(payload).expect("decodes");
        let prop =
            mir_proto::examples::weather::DataRateProp::decode(msg.properties[0].payload.clone())
                .expect("encoded with the new schema");
        assert_eq!(prop.sec, 7);
        // The same hello again: the schema did not change, nothing is pushed again.
        let again = handle(&deps(&w), &hello_event("weather", 2_000))
            .await
            .expect("ok");
        assert!(again.desired_sent.is_empty());
        assert_eq!(w.publisher.published().len(), 1);
    }

    #[tokio::test]
    async fn the_same_hello_delivered_twice_changes_nothing_the_second_time() {
        let w = TestWorld::new();
        let ev = hello_event("weather", 1_000);
        handle(&deps(&w), &ev).await.expect("first");
        let before = w.twin_versioned("weather").await;
        let out = handle(&deps(&w), &ev).await.expect("again");
        assert!(!out.created && !out.schema_changed);
        assert_eq!(w.twin_versioned("weather").await, before);
        assert_eq!(w.reasons("weather").await.len(), 2);
    }

    #[tokio::test]
    async fn a_hello_received_after_the_delete_registers_the_device_again_and_an_older_one_does_not(
    ) {
        let w = TestWorld::new();
        handle(&deps(&w), &hello_event("weather", 1_000))
            .await
            .expect("first");
        TwinStore::delete(&w.store, "weather", mir_shared::testing::at_ms(5_000))
            .await
            .expect("deleted");
        mir_shared::ports::SchemaStore::delete(&w.store, "weather")
            .await
            .expect("schema deleted");
        let late = handle(&deps(&w), &hello_event("weather", 4_000))
            .await
            .expect("ignored, not failed");
        assert!(late.deleted && !late.created, "{late:?}");
        assert!(TwinStore::get(&w.store, "weather")
            .await
            .expect("read")
            .is_none());
        assert!(
            w.store_schema("weather").await.is_none(),
            "no schema left behind"
        );
        let again = handle(&deps(&w), &hello_event("weather", 6_000))
            .await
            .expect("registered again");
        assert!(again.created && !again.deleted);
        assert!(w.store_schema("weather").await.is_some());
        assert!(TwinStore::tombstone(&w.store, "weather")
            .await
            .expect("read")
            .is_none());
    }

    #[tokio::test]
    async fn a_malformed_hello_is_refused_without_touching_the_store() {
        let w = TestWorld::new();
        let mut ev = hello_event("weather", 1_000);
        ev.payload = "//8=".into();
        let err = handle(&deps(&w), &ev).await.expect_err("malformed");
        assert!(!err.is_retryable(), "{err}");
        assert!(w.store_schema("weather").await.is_none());
        let mut ev = hello_event("weather", 1_000);
        ev.client_id = "intruder".into();
        let err = handle(&deps(&w), &ev).await.expect_err("another client");
        assert!(
            matches!(
                err,
                HandlerError::Event(mir_shared::rule_event::RuleEventError::ClientMismatch { .. })
            ),
            "{err}"
        );
        assert!(TwinStore::get(&w.store, "weather")
            .await
            .expect("read")
            .is_none());
    }
}
