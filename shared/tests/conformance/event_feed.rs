//! The event feed on AWS, end to end but for Lambda's event source mapping, against the
//! endpoint: events appended through the DynamoDB adapter to an events table with a
//! stream; its records read by the AWS CLI (`dynamodbstreams get-records`) and shaped as
//! Lambda delivers them; decoded by `lambda::stream_events`; published by `event-feed`
//! on an EventBridge bus; routed by a rule (source `mir`) to an SQS queue; and read from
//! the queue by the AWS CLI. And the telemetry feed: a batch through the telemetry
//! handler with the bus as its `telemetry_feed`, each stored point on the bus as a
//! `Telemetry` entry, read from a rule's queue by the AWS CLI.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use mir_shared::{
    adapters::eventbridge::{aws_sdk_eventbridge, EventBridgeFeed},
    domain::{Event, EventReason, FeedEvent, TelemetryPoint, Twin},
    lambda::stream_events,
    ports::Ports,
};

use crate::support::{aws_env, random_prefix, required_endpoint};

/// The AWS CLI against the endpoint; its JSON output (`null` when it prints nothing).
fn aws_cli(args: &[&str]) -> Value {
    let out = Command::new("aws")
        .args(args)
        .args(["--endpoint-url", &required_endpoint(), "--output", "json"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_PAGER", "")
        .output()
        .expect("the aws CLI runs");
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).expect("the aws CLI prints JSON")
}

/// Every record of the stream, in the shape of a Lambda DynamoDB stream event.
fn stream_as_lambda_event(stream_arn: &str) -> Value {
    let stream = aws_cli(&[
        "dynamodbstreams",
        "describe-stream",
        "--stream-arn",
        stream_arn,
    ]);
    let mut records = Vec::new();
    for shard in stream["StreamDescription"]["Shards"]
        .as_array()
        .expect("shards")
    {
        let shard_id = shard["ShardId"].as_str().expect("shard id");
        let it = aws_cli(&[
            "dynamodbstreams",
            "get-shard-iterator",
            "--stream-arn",
            stream_arn,
            "--shard-id",
            shard_id,
            "--shard-iterator-type",
            "TRIM_HORIZON",
        ]);
        let iterator = it["ShardIterator"].as_str().expect("iterator").to_string();
        let got = aws_cli(&[
            "dynamodbstreams",
            "get-records",
            "--shard-iterator",
            &iterator,
        ]);
        for mut r in got["Records"].as_array().cloned().unwrap_or_default() {
            // Lambda adds the stream's ARN and sends the creation time in epoch seconds;
            // the CLI prints it as a date.
            r["eventSourceARN"] = json!(stream_arn);
            let at = &r["dynamodb"]["ApproximateCreationDateTime"];
            if let Some(text) = at.as_str() {
                let t: DateTime<Utc> = text.parse().expect("a date");
                r["dynamodb"]["ApproximateCreationDateTime"] = json!(t.timestamp());
            }
            records.push(r);
        }
    }
    json!({ "Records": records })
}

/// A bus named `<prefix>-bus` whose rule `pattern` sends to a new queue: (bus, queue URL).
fn bus_to_queue(prefix: &str, pattern: &str) -> (String, String) {
    let bus = format!("{prefix}-bus");
    aws_cli(&["events", "create-event-bus", "--name", &bus]);
    let (queue_url, queue_arn) = queue(prefix);
    aws_cli(&[
        "events",
        "put-rule",
        "--name",
        "to-queue",
        "--event-bus-name",
        &bus,
        "--event-pattern",
        pattern,
    ]);
    aws_cli(&[
        "events",
        "put-targets",
        "--rule",
        "to-queue",
        "--event-bus-name",
        &bus,
        "--targets",
        &format!("Id=q,Arn={queue_arn}"),
    ]);
    (bus, queue_url)
}

fn queue(prefix: &str) -> (String, String) {
    let created = aws_cli(&[
        "sqs",
        "create-queue",
        "--queue-name",
        &format!("{prefix}-q"),
    ]);
    let url = created["QueueUrl"].as_str().expect("queue url").to_string();
    let attrs = aws_cli(&[
        "sqs",
        "get-queue-attributes",
        "--queue-url",
        &url,
        "--attribute-names",
        "QueueArn",
    ]);
    let arn = attrs["Attributes"]["QueueArn"]
        .as_str()
        .expect("queue arn")
        .to_string();
    (url, arn)
}

/// The EventBridge envelopes in the queue, until `want` distinct event ids came (or 60
/// receives found no more).
fn drain(url: &str, want: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut ids = BTreeSet::new();
    for _ in 0..60 {
        if ids.len() >= want {
            break;
        }
        let got = aws_cli(&[
            "sqs",
            "receive-message",
            "--queue-url",
            url,
            "--max-number-of-messages",
            "10",
            "--wait-time-seconds",
            "1",
        ]);
        for m in got["Messages"].as_array().cloned().unwrap_or_default() {
            let body: Value =
                serde_json::from_str(m["Body"].as_str().expect("body")).expect("JSON body");
            ids.insert(body["detail"]["id"].as_str().unwrap_or("").to_string());
            out.push(body);
            let handle = m["ReceiptHandle"].as_str().expect("receipt handle");
            aws_cli(&[
                "sqs",
                "delete-message",
                "--queue-url",
                url,
                "--receipt-handle",
                handle,
            ]);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
async fn stored_events_reach_a_rule_on_the_bus_once_each_with_their_devices_labels() {
    let env = aws_env().await;
    let prefix = random_prefix();
    let events_table = env.config.events_table.clone().expect("events table");
    let updated = aws_cli(&[
        "dynamodb",
        "update-table",
        "--table-name",
        &events_table,
        "--stream-specification",
        "StreamEnabled=true,StreamViewType=NEW_IMAGE",
    ]);
    let stream_arn = updated["TableDescription"]["LatestStreamArn"]
        .as_str()
        .expect("the table's stream")
        .to_string();
    let (bus, queue_url) = bus_to_queue(&prefix, r#"{"source":["mir"]}"#);

    // A labelled device, and events of it and of a device that has no twin.
    let twins = env.ports.twins().expect("twins");
    let mut twin = Twin::auto_provisioned(&mir_proto::DeviceId::new("f1").expect("id"));
    twin.meta.name = "pump-1".into();
    twin.meta.namespace = "plant-a".into();
    twin.meta.labels = BTreeMap::from([("site".to_string(), "north".to_string())]);
    twins.create(&twin).await.expect("twin");
    let t0 = mir_shared::testing::at_ms(1_790_000_000_000);
    let events: Vec<Event> = (0..12)
        .map(|i| {
            let (reason, device) = if i % 3 == 0 {
                (EventReason::DeviceOffline, "f2")
            } else {
                (EventReason::DeviceOnline, "f1")
            };
            Event::new(
                reason,
                device,
                t0 + chrono::Duration::seconds(i),
                &format!("cause-{i}"),
                "m",
            )
        })
        .collect();
    let store = env.ports.events().expect("events");
    store.append(&events).await.expect("appended");
    // Appended again (a redelivered input): the same items.
    store.append(&events).await.expect("appended again");

    let lambda_event = stream_as_lambda_event(&stream_arn);
    let batch = serde_json::from_value(lambda_event).expect("a Lambda DynamoDB stream event");
    let (from_stream, sequences): (Vec<Event>, Vec<String>) =
        stream_events(batch).into_iter().unzip();
    let mut stream_ids: Vec<&str> = from_stream.iter().map(|e| e.id.as_str()).collect();
    stream_ids.sort_unstable();
    let mut want_ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    want_ids.sort_unstable();
    assert_eq!(stream_ids, want_ids, "each event once off the stream");
    assert!(sequences.iter().all(|s| !s.is_empty()), "{sequences:?}");

    let feed = EventBridgeFeed::new(aws_sdk_eventbridge::Client::new(&env.sdk), &bus);
    let ports = Ports {
        feed: Some(Arc::new(feed)),
        ..env.ports.clone()
    };
    let deps = mir_fn_event_feed::Deps::try_from(&ports).expect("deps");
    let out = mir_fn_event_feed::handle(&deps, from_stream)
        .await
        .expect("published");
    assert_eq!(out.published, events.len());

    let envelopes = drain(&queue_url, events.len());
    let mut by_id: BTreeMap<String, FeedEvent> = BTreeMap::new();
    for e in &envelopes {
        assert_eq!(e["source"], json!("mir"));
        let doc: FeedEvent = serde_json::from_value(e["detail"].clone()).expect("a feed event");
        assert_eq!(e["detail-type"], json!(doc.reason.as_str()));
        by_id.insert(doc.id.clone(), doc);
    }
    assert_eq!(
        by_id.keys().map(String::as_str).collect::<Vec<_>>(),
        want_ids,
        "every event on the bus"
    );
    assert_eq!(envelopes.len(), events.len(), "none twice");
    for doc in by_id.values() {
        if doc.device_id == "f1" {
            assert_eq!(
                (doc.name.as_str(), doc.namespace.as_str()),
                ("pump-1", "plant-a")
            );
            assert_eq!(doc.labels.get("site").map(String::as_str), Some("north"));
        } else {
            assert!(doc.labels.is_empty(), "{doc:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
async fn with_the_telemetry_feed_each_stored_point_reaches_a_telemetry_rule_with_its_labels() {
    use mir_shared::{adapters::memory::RecordingPublisher, ports::StoredSchema, testing};
    use prost::Message;

    let env = aws_env().await;
    let prefix = random_prefix();
    let (bus, queue_url) =
        bus_to_queue(&prefix, r#"{"source":["mir"],"detail-type":["Telemetry"]}"#);
    let device = format!("{prefix}-t1");
    let mut twin = Twin::auto_provisioned(&mir_proto::DeviceId::new(&device).expect("id"));
    twin.meta.labels = BTreeMap::from([("site".to_string(), "north".to_string())]);
    env.ports
        .twins()
        .expect("twins")
        .create(&twin)
        .await
        .expect("twin");
    env.ports
        .schemas()
        .expect("schemas")
        .put(&StoredSchema {
            device_id: device.clone(),
            compressed: mir_shared::schema::compress(mir_proto::examples::weather::DESCRIPTOR_SET)
                .into(),
            hash: mir_shared::service::schema_hash(mir_proto::examples::weather::DESCRIPTOR_SET),
            package_names: vec!["schema.v1".into()],
            updated_at: testing::at_ms(0),
        })
        .await
        .expect("schema");
    let ports = Ports {
        feed: Some(Arc::new(EventBridgeFeed::new(
            aws_sdk_eventbridge::Client::new(&env.sdk),
            &bus,
        ))),
        publisher: Some(Arc::new(RecordingPublisher::new())),
        ..env.ports.clone()
    };
    let deps = mir_fn_telemetry::Deps::try_from(&ports).expect("deps");
    let t = 1_790_000_000_000_000_000;
    let items = [
        ("schema.v1.Env", testing::env(t, 20).encode_to_vec(), 1),
        ("schema.v1.Env", vec![0xff, 0xff], 2),
        (
            "schema.v1.Env",
            testing::env(t + 1_000_000_000, 21).encode_to_vec(),
            3,
        ),
    ];
    let out = mir_fn_telemetry::handle(&deps, &testing::telemetry_event(&device, &items, 5_000))
        .await
        .expect("stored and published");
    assert_eq!(out.written, 2);

    let envelopes = drain(&queue_url, 2);
    assert_eq!(envelopes.len(), 2, "{envelopes:#?}");
    let mut points: Vec<TelemetryPoint> = envelopes
        .iter()
        .map(|e| {
            assert_eq!(e["source"], json!("mir"));
            assert_eq!(e["detail-type"], json!("Telemetry"));
            serde_json::from_value(e["detail"].clone()).expect("a telemetry point")
        })
        .collect();
    points.sort_by_key(|p| p.seq);
    assert_eq!(points.iter().map(|p| p.seq).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(
        points[0].labels.get("site").map(String::as_str),
        Some("north")
    );
    assert_eq!(
        points[1].values.get("temperature"),
        Some(&mir_shared::telemetry::FieldValue::Int(21))
    );
}
