//! End-to-end: the hub in-process on ephemeral ports (`mir-test-support`), real SDK
//! devices, the real `mir` CLI.
#![allow(clippy::unwrap_used)]

mod bad_input;
mod fleet;
mod kill;
mod provision;
mod quickstart;
mod readme;
mod redrive;
mod scale;
mod support;
mod watch;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mir_proto::examples::weather::Env;
use serde_json::{json, Value};

use support::*;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn reasons(hub: &TestHub, device: &str) -> Vec<String> {
    let v = hub.json(&["event", "ls", "--device", device, "--limit", "200"]);
    v.as_array()
        .or_else(|| v["events"].as_array())
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_announces_its_schema_streams_telemetry_and_is_seen_by_the_cli() {
    let hub = hub();
    let dev = TestDevice::start(&hub, "weather", Behaviour::Succeed).await;

    // GIVEN the device connected, THEN its twin shows the schema packages.
    eventually(Duration::from_secs(10), "schema in the twin", || {
        hub.twin("weather/default")["status"]["schema"]["packageNames"]
            .as_array()
            .is_some_and(|p| p.contains(&json!("schema.v1")))
    })
    .await;
    let twin = hub.twin("weather/default");
    assert_eq!(twin["status"]["online"], true);
    assert_eq!(twin["apiVersion"], "mir/v1alpha");

    // WHEN it sends readings with its own timestamps
    let base = now_ns() - 60_000_000_000;
    for i in 0..5 {
        let env = Env {
            ts: base + i * 1_000_000_000,
            temperature: 20 + i as i32,
            pressure: 1000,
            humidity: 50,
            wind_speed: 1.5,
            raining: i % 2 == 0,
            station: "roof".into(),
        };
        dev.mir.send_telemetry(&env).await.unwrap();
    }
    // THEN they are stored with those timestamps and fields, and read back.
    let mut rows = Value::Null;
    eventually(Duration::from_secs(10), "5 telemetry rows", || {
        rows = hub.json(&[
            "tlm",
            "query",
            "weather/default",
            "-n",
            "schema.v1.Env",
            "--since",
            "10m",
        ]);
        rows["rows"].as_array().is_some_and(|r| r.len() == 5)
    })
    .await;
    let rows = rows["rows"].as_array().unwrap();
    let first_time =
        chrono::DateTime::parse_from_rfc3339(rows[0]["time"].as_str().unwrap()).unwrap();
    assert_eq!(first_time.timestamp_nanos_opt().unwrap(), base);
    assert_eq!(rows[4]["values"]["temperature"], 24);
    assert_eq!(rows[0]["values"]["raining"], true);
    assert_eq!(rows[0]["values"]["station"], "roof");

    let list = hub.mir(&["tlm", "list", "weather"]);
    assert!(
        list.ok && list.stdout.contains("schema.v1.Env"),
        "{}",
        list.stdout
    );
    let link = format!("{}/#/devices/weather/telemetry/schema.v1.Env", hub.api());
    assert!(list.stdout.contains(&link), "{link} in {}", list.stdout);
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_succeed_fail_time_out_and_fail_fast_when_offline() {
    let hub = hub();
    let ok = TestDevice::start(&hub, "w-ok", Behaviour::Succeed).await;
    let bad = TestDevice::start(&hub, "w-bad", Behaviour::Fail).await;
    let slow = TestDevice::start(&hub, "w-slow", Behaviour::Slow(Duration::from_secs(4))).await;
    let gone = TestDevice::start(&hub, "w-gone", Behaviour::Succeed).await;
    eventually(Duration::from_secs(10), "schemas", || {
        hub.mir(&["cmd", "send", "w-gone"])
            .stdout
            .contains("ActivateHVACCmd")
    })
    .await;
    gone.stop().await;
    eventually(Duration::from_secs(10), "w-gone offline", || {
        hub.twin("w-gone/default")["status"]["online"] == false
    })
    .await;

    // The template, like Mir's -j.
    let t = hub.mir(&[
        "cmd",
        "send",
        "w-ok/default",
        "-n",
        "schema.v1.ActivateHVACCmd",
        "-j",
    ]);
    assert_eq!(
        serde_json::from_str::<Value>(&t.stdout).unwrap(),
        json!({"durationSec": 0})
    );

    let send = |target: &str, extra: &[&str]| {
        let mut args = vec![
            "cmd",
            "send",
            target,
            "-n",
            "schema.v1.ActivateHVACCmd",
            "-p",
            r#"{"durationSec": 1}"#,
        ];
        args.extend(extra);
        args.extend(["-o", "json"]);
        let out = hub.mir(&args);
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"));
        v.as_array()
            .cloned()
            .or_else(|| v["results"].as_array().cloned())
            .unwrap()[0]
            .clone()
    };
    let r = send("w-ok/default", &[]);
    assert_eq!(r["status"], "SUCCESS", "{r}");
    assert_eq!(r["responseName"], "schema.v1.ActivateHVACResp");
    assert_eq!(r["response"], json!({"success": true}));

    let r = send("w-bad/default", &[]);
    assert_eq!(r["status"], "ERROR");
    assert!(r["error"].as_str().unwrap().contains("hvac jammed"), "{r}");

    let r = send("w-slow/default", &["--timeout", "1s"]);
    assert_eq!(r["status"], "TIMEOUT", "{r}");

    let started = std::time::Instant::now();
    let r = send("w-gone/default", &[]);
    assert_eq!(r["status"], "ERROR");
    assert!(r["error"].as_str().unwrap().contains("offline"), "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an offline device fails fast"
    );

    // The Mir-style text output, and a non-zero exit when a device did not succeed.
    let text = hub.mir(&[
        "cmd",
        "send",
        "w-ok/default",
        "-n",
        "schema.v1.ActivateHVACCmd",
        "-p",
        r#"{"durationSec": 0}"#,
    ]);
    assert!(
        text.ok
            && text
                .stdout
                .contains("1. w-ok/default COMMAND_RESPONSE_STATUS_SUCCESS"),
        "{}",
        text.stdout
    );
    let text = hub.mir(&[
        "cmd",
        "send",
        "w-bad/default",
        "-n",
        "schema.v1.ActivateHVACCmd",
    ]);
    assert_eq!(text.code, Some(1), "{text:?}");

    let r = reasons(&hub, "w-ok");
    assert!(
        r.contains(&"CommandSent".to_string()) && r.contains(&"CommandCompleted".to_string()),
        "{r:?}"
    );
    assert!(reasons(&hub, "w-bad").contains(&"CommandFailed".to_string()));
    for d in [ok, bad, slow] {
        d.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn desired_properties_are_stored_delivered_reported_and_pulled_again_on_reconnect() {
    let hub = hub();
    let dev = TestDevice::start(&hub, "w-cfg", Behaviour::Succeed).await;
    eventually(Duration::from_secs(10), "schema", || {
        hub.mir(&["cfg", "send", "w-cfg"])
            .stdout
            .contains("DataRateProp")
    })
    .await;

    let out = hub.mir(&[
        "cfg",
        "send",
        "w-cfg/default",
        "-n",
        "schema.v1.DataRateProp",
        "-p",
        r#"{"sec": 5}"#,
    ]);
    assert!(out.ok && out.stdout.contains("SENT"), "{out:?}");
    eventually(Duration::from_secs(10), "reported back", || {
        hub.twin("w-cfg/default")["properties"]["reported"]["schema.v1.DataRateStatus"]
            == json!({"sec": 5})
    })
    .await;
    let twin = hub.twin("w-cfg/default");
    assert_eq!(
        twin["properties"]["desired"]["schema.v1.DataRateProp"],
        json!({"sec": 5})
    );
    assert!(twin["status"]["properties"]["desired"]["schema.v1.DataRateProp"].is_string());
    assert_eq!(dev.desired().last(), Some(&5));

    // -c shows the current value.
    let cur = hub.mir(&[
        "cfg",
        "send",
        "w-cfg/default",
        "-n",
        "schema.v1.DataRateProp",
        "-c",
    ]);
    assert_eq!(
        serde_json::from_str::<Value>(&cur.stdout).unwrap(),
        json!({"sec": 5})
    );

    // WHEN the device is offline, a change is stored for later (from stdin this time)
    dev.stop().await;
    eventually(Duration::from_secs(10), "offline", || {
        hub.twin("w-cfg/default")["status"]["online"] == false
    })
    .await;
    let out = hub.mir_stdin(
        &[
            "cfg",
            "send",
            "w-cfg/default",
            "-n",
            "schema.v1.DataRateProp",
        ],
        r#"{"sec": 9}"#,
    );
    assert!(out.ok && out.stdout.contains("STORED"), "{out:?}");
    // THEN the device pulls it when it reconnects, and reports it.
    let dev = TestDevice::start(&hub, "w-cfg", Behaviour::Succeed).await;
    eventually(Duration::from_secs(10), "pulled on reconnect", || {
        dev.desired().contains(&9)
    })
    .await;
    eventually(Duration::from_secs(10), "reported 9", || {
        hub.twin("w-cfg/default")["properties"]["reported"]["schema.v1.DataRateStatus"]
            == json!({"sec": 9})
    })
    .await;

    let r = reasons(&hub, "w-cfg");
    for want in [
        "DeviceCreated",
        "DeviceOnline",
        "SchemaUpdated",
        "DesiredPropertiesUpdated",
        "ReportedPropertiesUpdated",
        "DeviceOffline",
    ] {
        assert!(r.contains(&want.to_string()), "missing {want} in {r:?}");
    }
    dev.stop().await;
}
