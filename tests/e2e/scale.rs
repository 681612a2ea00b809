//! Fleet scale on the AWS adapters (moto's server): 5,000 twins listed page by page
//! through the `mir` CLI, and a presence sweep that reads only online devices.
//!
//! `#[ignore]`d without an AWS-compatible endpoint; `scripts/test.sh` runs it with one.

use std::{process::Command, sync::Arc};

use chrono::{Duration, Utc};
use futures::{stream, StreamExt};
use mir_hub::registry::{self, Function};
use mir_proto::DeviceId;
use mir_shared::{domain::Twin, ports::TwinStore};
use serde_json::Value;

use super::support::*;

const FLEET: usize = 5_000;
const ONLINE: usize = 60;
const STALE: usize = 40;

/// How many items the twins table's sparse online index holds, read by the AWS CLI.
fn online_index_count(table: &str) -> u64 {
    let endpoint = std::env::var("MIR_TEST_AWS_ENDPOINT").unwrap();
    let out = Command::new("aws")
        .args([
            "dynamodb",
            "scan",
            "--table-name",
            table,
            "--index-name",
            "gsi2",
        ])
        .args([
            "--select",
            "COUNT",
            "--endpoint-url",
            &endpoint,
            "--output",
            "json",
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("the aws CLI runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Count"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
async fn five_thousand_twins_page_through_the_cli_and_the_sweep_reads_only_online_devices() {
    let hub = TestHub::start_aws(cli());
    let twins: Arc<dyn TwinStore> = hub.core().ports.twins.clone().unwrap();
    // The sweep below runs at `later`; the hub's own sweep, at the real time, finds none
    // (the stale ones are due 20 minutes from now: far beyond the test's own length,
    // even on a loaded machine).
    let now = Utc::now();
    let later = now + Duration::minutes(30);
    // GIVEN 5,000 twins in two namespaces, 60 online, 40 of those stale by `later`.
    stream::iter(0..FLEET)
        .map(|i| {
            let twins = twins.clone();
            async move {
                let mut t =
                    Twin::auto_provisioned(&DeviceId::new(format!("scale-{i:04}")).unwrap());
                t.meta.namespace = if i % 2 == 0 { "even" } else { "odd" }.into();
                if i < ONLINE {
                    t.status.online = true;
                    t.status.last_heartbeat = Some(now - Duration::minutes(10));
                    t.status.stale_at = Some(if i < STALE {
                        now + Duration::minutes(20)
                    } else {
                        now + Duration::minutes(60)
                    });
                }
                twins.create(&t).await.unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let table = hub.aws_table("twins").unwrap();
    assert_eq!(
        online_index_count(&table),
        ONLINE as u64,
        "only online twins are indexed"
    );

    // WHEN `mir dev ls` lists the fleet THEN it pages through all 5,000, each once.
    let proxy = hub.recording_proxy();
    let out = hub
        .cli()
        .cmd(["device", "ls", "-o", "json"])
        .api(&proxy.url())
        .run();
    assert!(out.ok, "{}", out.stderr);
    let listed: Value = serde_json::from_str(&out.stdout).unwrap();
    let listed = listed
        .as_array()
        .or_else(|| listed["devices"].as_array())
        .unwrap()
        .clone();
    let mut ids: Vec<&str> = listed
        .iter()
        .map(|t| t["spec"]["deviceId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), FLEET);
    let pages: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/v1/devices")
        .collect();
    assert!(pages.len() >= FLEET / 1_000, "{} pages", pages.len());
    assert!(
        pages.iter().skip(1).all(|r| r.query.contains("nextToken=")),
        "follows nextToken"
    );
    // And a namespace pages the same way.
    let odd = hub.json(&["device", "ls", "/odd"]);
    let odd = odd
        .as_array()
        .or_else(|| odd["devices"].as_array())
        .unwrap()
        .len();
    assert_eq!(odd, FLEET / 2);

    // WHEN the sweep runs THEN it finds exactly the stale online devices in the index...
    let mut stale = mir_shared::domain::page::collect_all(|p| {
        let twins = twins.clone();
        async move { twins.stale(later, &p).await }
    })
    .await
    .unwrap();
    stale.sort();
    let expected: Vec<String> = (0..STALE).map(|i| format!("scale-{i:04}")).collect();
    assert_eq!(stale, expected);
    // ...and marks them offline, which takes them out of the index.
    let Some(Function::Presence { schedule, .. }) = registry::function("presence") else {
        panic!("the presence function");
    };
    let outcome = schedule(&hub.core().ports, later).await.unwrap();
    assert_eq!(
        outcome["changed"].as_array().unwrap().len(),
        STALE,
        "{outcome}"
    );
    assert_eq!(online_index_count(&table), (ONLINE - STALE) as u64);
    let t = twins.get("scale-0001").await.unwrap().unwrap().value;
    assert!(
        !t.status.online && t.status.stale_at.is_none(),
        "{:?}",
        t.status
    );
    let t = twins.get("scale-0041").await.unwrap().unwrap().value;
    assert!(t.status.online, "not stale yet");
}
