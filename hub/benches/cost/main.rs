//! The cost model: simulated devices through the real handlers (the hub's registry, as
//! Lambda runs them) on the DynamoDB adapters at an AWS-compatible endpoint (moto),
//! every DynamoDB request metered (`meter.rs`) and priced at list prices.
//!
//! ```sh
//! scripts/cost-model.sh     # starts moto, runs this, prints the tables of docs/cost.md
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod meter;

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Duration, TimeZone, Utc};
use mir_hub::registry::{self, Function};
use mir_proto::{
    examples::weather::Env,
    wire::{Heartbeat, TelemetryBatch, TelemetryItem},
};
use mir_shared::{
    adapters::aws::AwsEnvironment,
    ports::{DevicePublisher, Ports, PublishError},
    rule_event::RuleEvent,
    testing::hello_event,
};
use prost::Message;
use serde_json::{json, Value};

use meter::{Call, Indexes, Meter, Units};

/// List prices, us-east-1, as published on 2025-11-01 (DynamoDB on-demand after its
/// 2024-11-01 reduction; Lambda arm64).
mod price {
    pub const DATE: &str = "2025-11-01, us-east-1";
    pub const WRU: f64 = 0.625e-6;
    pub const RRU: f64 = 0.125e-6;
    /// AWS IoT Core messaging, per message (metered in 5 KB blocks).
    pub const IOT_MESSAGE: f64 = 1.0e-6;
    pub const IOT_MESSAGE_BLOCK: usize = 5 * 1024;
    /// Per connection-minute.
    pub const IOT_CONNECTION_MINUTE: f64 = 0.08e-6;
    /// A rule triggered, plus its one action (the Lambda invoke).
    pub const IOT_RULE_AND_ACTION: f64 = 0.15e-6 + 0.15e-6;
    pub const LAMBDA_REQUEST: f64 = 0.20e-6;
    pub const LAMBDA_GB_SECOND: f64 = 0.0000133334;
    /// The functions' memory (infra/cdk/lib/mir-function.ts) and an assumed 20 ms billed
    /// per invocation (warm; see BENCHMARKS.md for the measured handler times).
    pub const LAMBDA_GB_SECONDS_PER_INVOCATION: f64 = 0.25 * 0.020;
}

const MINUTES_PER_MONTH: f64 = 30.0 * 24.0 * 60.0;

struct NullPublisher;

#[async_trait]
impl DevicePublisher for NullPublisher {
    async fn publish(&self, _topic: &str, _payload: Bytes) -> Result<(), PublishError> {
        Ok(())
    }
}

fn rule(name: &str) -> registry::RuleFn {
    match registry::function(name) {
        Some(Function::Rule(f)) => f,
        other => panic!("{name} is not a rule function: {other:?}"),
    }
}

fn at(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + s, 0).single().unwrap()
}

/// The size of one IoT message in 5 KB blocks.
fn blocks(bytes: usize) -> f64 {
    bytes.max(1).div_ceil(price::IOT_MESSAGE_BLOCK) as f64
}

struct Bench {
    moto: String,
    meter: Meter,
    ports: Ports,
    indexes: Indexes,
    http: reqwest::Client,
}

impl Bench {
    async fn start(moto: &str) -> Bench {
        let meter = Meter::start(moto).await;
        let prefix = format!("cost-{}", uuid::Uuid::new_v4().simple());
        let env = AwsEnvironment::for_endpoint(&meter.url, &prefix, Default::default())
            .await
            .unwrap();
        let ports = Ports {
            publisher: Some(Arc::new(NullPublisher)),
            ..env.ports
        };
        Bench {
            moto: moto.to_string(),
            meter,
            ports,
            indexes: Indexes::default(),
            http: reqwest::Client::new(),
        }
    }

    async fn run(&self, function: &str, ev: &RuleEvent) {
        let out = rule(function)(&self.ports, ev).await;
        if let Err(e) = out {
            panic!("{function} failed: {e}");
        }
    }

    /// The item at `key` as stored now (read from moto directly, not metered).
    async fn stored(&self, table: &str, key: &Value) -> Option<Value> {
        let resp = self
            .http
            .post(&self.moto)
            .header("x-amz-target", "DynamoDB_20120810.GetItem")
            .header("content-type", "application/x-amz-json-1.0")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x")
            .body(json!({"TableName": table, "Key": key, "ConsistentRead": true}).to_string())
            .send()
            .await
            .ok()?;
        let v: Value = resp.json().await.ok()?;
        v.get("Item").cloned()
    }

    /// The units of the calls made since the last take.
    async fn units(&self) -> (Units, HashMap<String, u64>) {
        let calls: Vec<Call> = self.meter.take();
        let mut stored = HashMap::new();
        for c in &calls {
            let keys: Vec<(String, Value)> = match c.op.as_str() {
                "UpdateItem" => vec![(
                    c.request["TableName"].as_str().unwrap_or("").to_string(),
                    c.request["Key"].clone(),
                )],
                "TransactWriteItems" => c.request["TransactItems"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| {
                        let (_, op) = a.as_object()?.iter().next()?;
                        op.get("Key").map(|k| {
                            (
                                op["TableName"].as_str().unwrap_or("").to_string(),
                                k.clone(),
                            )
                        })
                    })
                    .collect(),
                _ => vec![],
            };
            for (t, k) in keys {
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    stored.entry(format!("{t}|{k}"))
                {
                    slot.insert(self.stored(&t, &k).await);
                }
            }
        }
        let lookup = |t: &str, k: &Value| stored.get(&format!("{t}|{k}")).cloned().flatten();
        let mut total = Units::default();
        let mut ops: HashMap<String, u64> = HashMap::new();
        for c in &calls {
            total += self.indexes.units(c, &lookup);
            *ops.entry(c.op.clone()).or_default() += 1;
        }
        (total, ops)
    }
}

fn env(i: u32) -> Env {
    Env {
        ts: 0,
        temperature: 20 + (i % 7) as i32,
        pressure: 1013 + (i % 5) as i32,
        humidity: 40 + (i % 30) as i32,
        wind_speed: 3.5 + f64::from(i % 10) / 10.0,
        ..Default::default()
    }
}

fn batch(n: usize, seq0: u64) -> Vec<u8> {
    TelemetryBatch {
        items: (0..n)
            .map(|i| TelemetryItem {
                name: "schema.v1.Env".into(),
                payload: env(i as u32).encode_to_vec().into(),
                seq: seq0 + i as u64,
                sent_at_ns: (1_780_000_000 + seq0 as i64 + i as i64) * 1_000_000_000,
                clock_unsynced: false,
            })
            .collect(),
    }
    .encode_to_vec()
}

/// Dollars of the DynamoDB units.
fn ddb(u: &Units) -> f64 {
    u.wru * price::WRU + u.rru * price::RRU
}

/// Dollars of one device message through IoT Core, its rule and one Lambda invocation.
fn message_path(bytes: usize) -> f64 {
    blocks(bytes) * price::IOT_MESSAGE
        + price::IOT_RULE_AND_ACTION
        + price::LAMBDA_REQUEST
        + price::LAMBDA_GB_SECONDS_PER_INVOCATION * price::LAMBDA_GB_SECOND
}

fn fmt_ops(ops: &HashMap<String, u64>, per: f64) -> String {
    let mut v: Vec<_> = ops.iter().collect();
    v.sort();
    v.iter()
        .map(|(k, n)| format!("{k} {:.2}", **n as f64 / per))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let moto = std::env::var("MIR_TEST_AWS_ENDPOINT")
        .expect("MIR_TEST_AWS_ENDPOINT (scripts/cost-model.sh starts moto)");
    let devices = 20u32;
    println!("# Mir Serverless cost model (prices: {})\n", price::DATE);

    // ---- an idle connected device: heartbeats every 15 min (the aws profile's default)
    let b = Bench::start(&moto).await;
    let interval = 900u32;
    for d in 0..devices {
        let id = format!("idle-{d}");
        b.run("hello", &hello_event(&id, at(0).timestamp_millis()))
            .await;
    }
    let hb = |k: i64| {
        Heartbeat {
            sent_at_ns: 0,
            uptime_sec: k as u64,
            queued: 0,
            interval_sec: interval,
            ..Default::default()
        }
        .encode_to_vec()
    };
    for d in 0..devices {
        b.run(
            "heartbeat",
            &RuleEvent::new(&format!("idle-{d}"), &format!("idle-{d}"), &hb(0), at(1)),
        )
        .await;
    }
    b.units().await; // the first heartbeat brings each device online: not the steady state
    let beats = 10i64;
    for k in 1..=beats {
        for d in 0..devices {
            let id = format!("idle-{d}");
            b.run(
                "heartbeat",
                &RuleEvent::new(&id, &id, &hb(k), at(1 + k * i64::from(interval))),
            )
            .await;
        }
        // AWS delivers some twice: a duplicate costs a failed conditional write.
    }
    let (u, ops) = b.units().await;
    let n = (beats * i64::from(devices)) as f64;
    let per_beat = Units {
        requests: 0,
        wru: u.wru / n,
        rru: u.rru / n,
    };
    let beats_month = MINUTES_PER_MONTH * 60.0 / f64::from(interval);
    let hb_bytes = hb(1).len() + 40;
    let idle_ddb = ddb(&per_beat) * beats_month;
    let idle_path = message_path(hb_bytes) * beats_month;
    let idle_conn = MINUTES_PER_MONTH * price::IOT_CONNECTION_MINUTE;
    // The sweep: once a minute, 8 index queries for a fleet of 100,000 (eventually
    // consistent, a few items each): its share per device is below a millionth of a dollar.
    let sweep = MINUTES_PER_MONTH * 8.0 * 0.5 * price::RRU / 100_000.0;
    println!(
        "## Idle connected device (heartbeat every {} min)\n",
        interval / 60
    );
    println!(
        "- per heartbeat: {} requests ({}), {:.2} WRU, {:.2} RRU",
        u.requests as f64 / n,
        fmt_ops(&ops, n),
        per_beat.wru,
        per_beat.rru
    );
    println!("- per month: {beats_month:.0} heartbeats");
    println!("| item | $ per device-month |\n|---|---|");
    println!("| IoT connection (43,200 min) | {idle_conn:.5} |");
    println!("| IoT messages, rule + action, Lambda | {idle_path:.5} |");
    println!("| DynamoDB | {idle_ddb:.5} |");
    println!("| sweep share (fleet of 100,000) | {sweep:.7} |");
    println!(
        "| **total** | **{:.4}** |\n",
        idle_conn + idle_path + idle_ddb + sweep
    );

    // ---- telemetry, per million messages, batched and naive
    for (label, size) in [
        ("SDK batching, 50 messages per batch", 50usize),
        ("naive: one message per MQTT message", 1),
    ] {
        let b = Bench::start(&moto).await;
        for d in 0..devices {
            b.run(
                "hello",
                &hello_event(&format!("tlm-{d}"), at(0).timestamp_millis()),
            )
            .await;
        }
        let warm = batch(size, 0);
        for d in 0..devices {
            let id = format!("tlm-{d}");
            b.run("telemetry", &RuleEvent::new(&id, &id, &warm, at(1)))
                .await;
        }
        b.units().await;
        let batches = if size == 1 { 50 } else { 5 };
        for k in 0..batches {
            for d in 0..devices {
                let id = format!("tlm-{d}");
                let payload = batch(size, 1_000 + (k * size) as u64);
                b.run(
                    "telemetry",
                    &RuleEvent::new(&id, &id, &payload, at(10 + k as i64)),
                )
                .await;
            }
        }
        let (u, ops) = b.units().await;
        let messages = (batches * size) as f64 * f64::from(devices);
        let invocations = batches as f64 * f64::from(devices);
        let bytes = batch(size, 0).len() + 40;
        let per_million = 1.0e6 / messages;
        let path = message_path(bytes) * invocations * per_million;
        let d = ddb(&u) * per_million;
        println!("## Telemetry, {label} (DynamoDB sink)\n");
        println!(
            "- per batch: {:.2} requests ({}), {:.2} WRU, {:.2} RRU; {} bytes per MQTT message",
            u.requests as f64 / invocations,
            fmt_ops(&ops, invocations),
            u.wru / invocations,
            u.rru / invocations,
            bytes
        );
        println!("| item | $ per million messages |\n|---|---|");
        println!("| IoT messages, rule + action, Lambda | {path:.4} |");
        println!("| DynamoDB | {d:.4} |");
        println!("| **total** | **{:.4}** |\n", path + d);
        if size == 1 {
            // An active device: one message every 10 s, each its own batch (the SDK's
            // 50 ms linger), on top of the idle device's connection.
            let month = MINUTES_PER_MONTH * 6.0;
            println!("Active device (one message every 10 s, {month:.0} a month, unbatched): ${:.3} per device-month with its connection\n", (path + d) * month / 1.0e6 + idle_conn);
        } else {
            let month = MINUTES_PER_MONTH * 6.0;
            println!("Active device (one message every 10 s, batched by 50 with a 500 s linger): ${:.4} per device-month with its connection\n", (path + d) * month / 1.0e6 + idle_conn);
        }
    }
    let _ = Duration::zero();
}
