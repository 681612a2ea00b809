//! Each Lambda binary links only the AWS SDK clients its `access` in routes.json needs:
//! DynamoDB always, the IoT clients when it publishes or issues certificates, Timestream
//! when it touches telemetry (the sink is chosen at deploy time), EventBridge when it puts
//! events on the feed. Read from
//! `cargo tree` of each function crate alone, with its default (`lambda`) features.

use std::collections::BTreeSet;
use std::process::Command;

use mir_shared::routes::RoutesTable;

/// The `aws-sdk-*` crates in the normal dependency tree of `krate` built alone.
fn sdk_clients(krate: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            krate,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {krate} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with("aws-sdk-"))
        .map(str::to_string)
        .collect()
}

fn expected(access: &std::collections::BTreeMap<String, serde_json::Value>) -> BTreeSet<String> {
    let on = |k: &str| {
        access
            .get(k)
            .is_some_and(|v| v != &serde_json::Value::Bool(false))
    };
    let mut want = BTreeSet::from([
        "aws-sdk-dynamodb".to_string(),
        // aws-config's credential providers (web identity, assume role).
        "aws-sdk-sts".to_string(),
    ]);
    if on("publish") || on("certificates") {
        want.extend(["aws-sdk-iot".into(), "aws-sdk-iotdataplane".into()]);
    }
    // `telemetryFeed`: the bus when the deployment turns the telemetry feed on.
    if on("feed") || on("telemetryFeed") {
        want.insert("aws-sdk-eventbridge".into());
    }
    if on("telemetry") {
        want.extend([
            "aws-sdk-timestreamwrite".into(),
            "aws-sdk-timestreamquery".into(),
        ]);
    }
    want
}

#[test]
fn every_function_links_only_the_sdk_clients_its_access_needs() {
    let routes = RoutesTable::load().expect("routes.json parses");
    let mut wrong = Vec::new();
    for f in &routes.functions {
        let got = sdk_clients(&f.crate_name);
        let want = expected(&f.access);
        if got != want {
            wrong.push(format!("{}: links {got:?}, needs {want:?}", f.crate_name));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_device_route_without_publish_links_no_iot_client() {
    // heartbeat's access is twins and events only.
    let got = sdk_clients("mir-fn-heartbeat");
    assert_eq!(
        got,
        BTreeSet::from(["aws-sdk-dynamodb".to_string(), "aws-sdk-sts".to_string()])
    );
}
