//! `telemetry`: a batch of telemetry from a device (rule `mir/+/tlm`).
//!
//! Decodes the batch with the device's schema, maps each message to one multi-measure
//! record (see `mir_shared::telemetry`) and writes them to the telemetry sink. Items
//! that cannot be mapped (unknown message, malformed bytes) and records the sink
//! rejects are reported in the outcome and in an `InvalidMessage` event, never dropped
//! silently. A device with no schema yet is asked to resend it and the invocation fails
//! as retryable, so the rule's retry delivers the batch once the schema is there.
//!
//! Where the deployment turns the telemetry feed on (the optional `telemetry_feed`
//! port: on AWS the CDK context `mir:telemetryFeed`), the points written then go to
//! the feed as [`TelemetryPoint`]s with the device's labels, from the twin already read;
//! a feed that fails for now fails the invocation as retryable, and the retry writes
//! the same points again (the sink drops what it holds) and publishes them again (at
//! least once: consumers deduplicate by point id).
//!
//! Requests per batch (N points of one message within one hour, DynamoDB): one twin
//! read, one chunk write and one series update, whatever N (before: N point writes).
//! The twin read stays on every batch: it is what refuses a deleted (tombstoned) or
//! disabled device's telemetry and auto-provisions an unknown one, and it gives the
//! name and namespace every point carries; caching it per process would store a
//! deleted device's telemetry until the cache expired. It is a read (a fifth of the
//! price of a write unit); the schema comes from the process's cache.
//!
//! Architecture: see docs/architecture.md in the repository (sections Routes, Delivery semantics).

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;

use mir_proto::{
    topics::DeviceTopic,
    wire::{TelemetryBatch, TelemetryItem},
};
use mir_shared::{
    domain::{Event, EventReason, TelemetryPoint},
    ports::RejectedRecord,
    rule_event::RuleEvent,
    schema::{Schema, SchemaError},
    service::{self, HandlerError},
    telemetry::{RecordContext, TelemetryPlan, TelemetryRecord},
};

mir_shared::deps! {
    /// The ports `telemetry` uses.
    pub struct Deps { twins, schemas, sink, events, publisher, cache, telemetry_feed }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryOutcome {
    pub device_id: String,
    pub received: usize,
    pub written: usize,
    /// `(item index, reason)` of every item not stored.
    pub rejected: Vec<(usize, String)>,
}

/// Maps a decoded batch to records. Items that fail are returned with their reason.
pub fn map_batch(
    schema: &Schema,
    items: &[TelemetryItem],
    ctx: &RecordContext<'_>,
) -> (Vec<TelemetryRecord>, Vec<(usize, String)>) {
    let mut records = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    let mut last: Option<(&str, Arc<TelemetryPlan>)> = None;
    for (index, item) in items.iter().enumerate() {
        let plan = match &last {
            Some((name, plan)) if *name == item.name => plan.clone(),
            _ => match schema.telemetry_plan(&item.name) {
                Ok(plan) => {
                    last = Some((item.name.as_str(), plan.clone()));
                    plan
                }
                Err(e) => {
                    rejected.push((index, e.to_string()));
                    continue;
                }
            },
        };
        // A device whose clock was not set says so: its time is not a real one.
        let fallback = if item.sent_at_ns > 0 && !item.clock_unsynced {
            item.sent_at_ns
        } else {
            ctx.received_at_ns
        };
        match plan.map(&item.payload, ctx, fallback, item.seq) {
            Ok(r) => records.push(r),
            Err(e) => rejected.push((index, e.to_string())),
        }
    }
    (records, rejected)
}

pub async fn handle(deps: &Deps<'_>, event: &RuleEvent) -> Result<TelemetryOutcome, HandlerError> {
    let id = event.device()?;
    let batch = TelemetryBatch::decode(event.payload_bytes()?.as_slice())
        .map_err(HandlerError::malformed("TelemetryBatch"))?;
    let (twin, _) = service::provision_sender(
        deps.twins,
        deps.events,
        event,
        DeviceTopic::Telemetry,
        "telemetry",
    )
    .await?;
    if twin.value.spec.disabled {
        return Err(HandlerError::DeviceDisabled {
            device: id.to_string(),
            what: "telemetry",
        });
    }
    let Some(mut schema) = deps.cache.get(deps.schemas, id.as_str()).await? else {
        ask_for_schema(deps, &id).await;
        return Err(HandlerError::NoSchema(id.to_string()));
    };
    // A message name the cached schema does not know may come from a newer schema.
    if batch.items.iter().any(|i| {
        matches!(
            schema.telemetry_plan(&i.name),
            Err(SchemaError::UnknownMessage { .. })
        )
    }) {
        if let Some(fresh) = deps.cache.load(deps.schemas, id.as_str()).await? {
            schema = fresh;
        }
    }
    let ctx = RecordContext {
        device_id: id.as_str(),
        name: &twin.value.meta.name,
        namespace: &twin.value.meta.namespace,
        received_at_ns: service::nanos(event.received_at()),
    };
    let (records, mut rejected) = map_batch(&schema, &batch.items, &ctx);
    let mut written = 0;
    if !records.is_empty() {
        let report = deps.sink.write(&records).await?;
        written = report.written;
        if let Some(feed) = deps.telemetry_feed {
            let points: Vec<TelemetryPoint> = report
                .stored(&records)
                .map(|r| TelemetryPoint::new(r, twin.value.meta.labels.clone()))
                .collect();
            feed.publish_telemetry(&points).await?;
        }
        // Map record indexes back to item indexes.
        let item_index: Vec<usize> = (0..batch.items.len())
            .filter(|i| !rejected.iter().any(|(r, _)| r == i))
            .collect();
        for RejectedRecord { index, reason } in report.rejected {
            rejected.push((
                item_index.get(index).copied().unwrap_or(index),
                format!("rejected by the store: {reason}"),
            ));
        }
    }
    if !rejected.is_empty() {
        rejected.sort_by_key(|(i, _)| *i);
        tracing::warn!(device = %id, rejected = rejected.len(), first = %rejected[0].1, "telemetry items not stored");
        let detail: Vec<serde_json::Value> = rejected
            .iter()
            .take(20)
            .map(|(i, r)| serde_json::json!({ "item": i, "name": batch.items.get(*i).map(|x| x.name.as_str()), "reason": r }))
            .collect();
        let ev = Event::new(
            EventReason::InvalidMessage,
            id.as_str(),
            event.received_at(),
            &event.cause(DeviceTopic::Telemetry),
            format!(
                "{} of {} telemetry items not stored: {}",
                rejected.len(),
                batch.items.len(),
                rejected[0].1
            ),
        )
        .for_twin(&twin.value)
        .with_payload(serde_json::json!({ "rejected": detail }));
        deps.events.append(&[ev]).await?;
    }
    Ok(TelemetryOutcome {
        device_id: id.to_string(),
        received: batch.items.len(),
        written,
        rejected,
    })
}

async fn ask_for_schema(deps: &Deps<'_>, id: &mir_proto::DeviceId) {
    if let Err(e) = deps
        .publisher
        .publish(&DeviceTopic::HelloGet.for_device(id), Bytes::new())
        .await
    {
        tracing::info!(device = %id, error = %e, "could not ask the device for its schema");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_shared::{
        ports::{TelemetryQuery, TelemetryReader},
        testing::{env, telemetry_event, TestWorld},
    };

    fn deps(w: &TestWorld) -> Deps<'_> {
        Deps::try_from(&w.ports).expect("the test world has every port")
    }

    async fn stored(w: &TestWorld) -> Vec<TelemetryRecord> {
        w.store
            .query(&TelemetryQuery::new("w1", "schema.v1.Env", 0).limit(1000))
            .await
            .expect("query")
            .items
    }

    #[tokio::test]
    async fn a_batch_is_stored_with_the_devices_timestamps_and_fields() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let items = [
            ("schema.v1.Env", env(1_000_000_000, 20).encode_to_vec(), 1),
            ("schema.v1.Env", env(2_000_000_000, 21).encode_to_vec(), 2),
        ];
        let out = handle(&deps(&w), &telemetry_event("w1", &items, 5_000))
            .await
            .expect("ok");
        assert_eq!((out.received, out.written), (2, 2));
        let recs = stored(&w).await;
        assert_eq!(
            recs.iter().map(|r| r.time_ns).collect::<Vec<_>>(),
            [1_000_000_000, 2_000_000_000]
        );
        assert_eq!(
            recs[1].values[0].1,
            mir_shared::telemetry::FieldValue::Int(21)
        );
    }

    #[tokio::test]
    async fn an_item_marked_clock_unsynced_is_stored_at_the_receive_time() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        // No annotated time (ts = 0): the item's time, unless the device says its
        // clock was not set.
        let item = |seq, sent_at_ns, clock_unsynced| mir_proto::wire::TelemetryItem {
            name: "schema.v1.Env".into(),
            payload: env(0, 20).encode_to_vec().into(),
            seq,
            sent_at_ns,
            clock_unsynced,
        };
        let batch = TelemetryBatch {
            items: vec![item(1, 3_000_000, true), item(2, 7_000_000_000, false)],
        };
        let event = mir_shared::testing::rule_event("w1", &batch.encode_to_vec(), 5_000);
        let out = handle(&deps(&w), &event).await.expect("ok");
        assert_eq!(out.written, 2);
        let mut times: Vec<i64> = stored(&w).await.iter().map(|r| r.time_ns).collect();
        times.sort();
        assert_eq!(times, [5_000_000_000, 7_000_000_000]);
    }

    #[tokio::test]
    async fn the_same_batch_delivered_twice_is_stored_once() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let ev = telemetry_event(
            "w1",
            &[("schema.v1.Env", env(1_000, 20).encode_to_vec(), 1)],
            5_000,
        );
        handle(&deps(&w), &ev).await.expect("first");
        handle(&deps(&w), &ev).await.expect("duplicate");
        assert_eq!(stored(&w).await.len(), 1);
        assert_eq!(w.store.series("w1").await.expect("series")[0].count, 1);
    }

    #[tokio::test]
    async fn unknown_and_malformed_items_are_reported_and_the_rest_is_stored() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        let items = [
            ("schema.v1.Nope", vec![], 1),
            ("schema.v1.Env", vec![0xff, 0xff, 0xff], 2),
            ("schema.v1.Env", env(3_000, 22).encode_to_vec(), 3),
        ];
        let out = handle(&deps(&w), &telemetry_event("w1", &items, 5_000))
            .await
            .expect("partial");
        assert_eq!(out.written, 1);
        assert_eq!(
            out.rejected.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            [0, 1]
        );
        assert!(
            out.rejected[0].1.contains("schema.v1.Env"),
            "lists known: {}",
            out.rejected[0].1
        );
        assert_eq!(w.reasons("w1").await, ["InvalidMessage"]);
    }

    /// A labelled weather device `w1` in a world whose telemetry feed records.
    async fn world_with_telemetry_feed() -> (
        TestWorld,
        std::sync::Arc<mir_shared::adapters::memory::RecordingFeed>,
    ) {
        let mut w = TestWorld::new();
        let feed = std::sync::Arc::new(mir_shared::adapters::memory::RecordingFeed::new());
        w.ports.feed = Some(feed.clone());
        let mut twin = w.with_weather_device("w1").await;
        twin.meta.labels.insert("site".into(), "north".into());
        let current = w.twin_versioned("w1").await;
        mir_shared::ports::TwinStore::update(&w.store, &twin, current.version)
            .await
            .expect("labels");
        (w, feed)
    }

    #[tokio::test]
    async fn without_the_telemetry_feed_nothing_is_published() {
        let w = TestWorld::new();
        w.with_weather_device("w1").await;
        assert!(deps(&w).telemetry_feed.is_none());
        let items = [("schema.v1.Env", env(1_000, 20).encode_to_vec(), 1)];
        let out = handle(&deps(&w), &telemetry_event("w1", &items, 5_000))
            .await
            .expect("ok");
        assert_eq!(out.written, 1);
    }

    #[tokio::test]
    async fn with_the_telemetry_feed_each_stored_point_is_published_with_the_devices_labels() {
        let (w, feed) = world_with_telemetry_feed().await;
        let items = [
            ("schema.v1.Env", env(1_000_000_000, 20).encode_to_vec(), 1),
            ("schema.v1.Env", vec![0xff, 0xff, 0xff], 2),
            ("schema.v1.Env", env(2_000_000_000, 21).encode_to_vec(), 3),
        ];
        let out = handle(&deps(&w), &telemetry_event("w1", &items, 5_000))
            .await
            .expect("partial");
        assert_eq!(out.written, 2);
        let points = feed.published_telemetry();
        assert_eq!(
            points.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            [
                "w1/schema.v1.Env/1000000000/1",
                "w1/schema.v1.Env/2000000000/3"
            ]
        );
        assert_eq!(points[0].labels["site"], "north");
        assert_eq!(
            points[1].values["temperature"],
            mir_shared::telemetry::FieldValue::Int(21)
        );
    }

    #[tokio::test]
    async fn a_feed_down_fails_the_batch_as_retryable_and_the_retry_stores_once_and_publishes() {
        let (w, feed) = world_with_telemetry_feed().await;
        let ev = telemetry_event(
            "w1",
            &[("schema.v1.Env", env(1_000, 20).encode_to_vec(), 1)],
            5_000,
        );
        feed.fail_after(0);
        let err = handle(&deps(&w), &ev).await.expect_err("the feed is down");
        assert!(
            matches!(
                err,
                HandlerError::Feed(mir_shared::ports::FeedError::Unavailable { .. })
            ),
            "{err:?}"
        );
        assert!(err.is_retryable());
        handle(&deps(&w), &ev).await.expect("the retry");
        assert_eq!(stored(&w).await.len(), 1);
        assert_eq!(feed.published_telemetry().len(), 1);
    }

    #[tokio::test]
    async fn a_device_without_schema_is_asked_for_it_and_the_batch_can_be_retried() {
        let w = TestWorld::new();
        let ev = telemetry_event(
            "w2",
            &[("schema.v1.Env", env(1, 1).encode_to_vec(), 1)],
            5_000,
        );
        let err = handle(&deps(&w), &ev).await.expect_err("no schema");
        assert!(err.is_retryable());
        assert_eq!(w.publisher.published()[0].0, "mir/w2/hello/get");
    }
}
