//! `mir swarm` against the hub: two device groups from a swarm file piped on stdin,
//! twins with the file's meta, generated telemetry stored, commands echoed and desired
//! properties reported back.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const SWARM: &str = r#"
apiVersion: mir/v1alpha
kind: swarm
meta: {name: e2e, namespace: swarm}
swarm:
  logLevel: warn
  deployBatchSize: 4
  devices:
    - count: 15
      meta:
        name: sensor
        namespace: swa
        labels: {type: environmental, site: lab}
        annotations: {swarm: "true"}
      telemetry:
        - name: Environment
          interval: 1s
          tags: {unit_system: metric}
          fields: [temperature, level, consumption]
      commands:
        - name: Calibrate
          delay: 200ms
          fields: [mode]
      properties:
        - name: SensorConfig
          delay: 200ms
          fields: [sampleRate, enabled]
    - count: 5
      meta:
        name: meter
        namespace: swb
        labels: {type: power}
      telemetry:
        - name: Power
          interval: 1s
          fields: [power]
  fields:
    - name: temperature
      type: float64
      tags: {unit: C}
      generator: {expr: "20 + rand(0, 1)"}
    - name: level
      type: int8
      generator: {expr: "1000"}
    - name: consumption
      type: message
      fields: [power]
    - name: power
      type: float32
      generator: {expr: "max(100, 50)"}
    - name: mode
      type: int32
    - name: sampleRate
      type: int32
    - name: enabled
      type: bool
"#;

fn rows(v: &Value) -> Vec<Value> {
    v.as_array()
        .cloned()
        .or_else(|| v["devices"].as_array().cloned())
        .or_else(|| v["results"].as_array().cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_swarm_file_deploys_groups_that_stream_echo_commands_and_report_properties() {
    let hub = hub();
    let swarm = hub
        .cmd(&["swarm", "--target", &hub.mqtt(), "--duration", "120s"])
        .stdin(SWARM)
        .spawn();

    // THEN the 20 devices are online in their namespaces with the file's labels and
    // their schema (presence and hello are separate invocations, in any order).
    let has_schema = |t: &Value| {
        t["status"]["schema"]["packageNames"]
            .as_array()
            .is_some_and(|p| p.contains(&json!("swarm.e2e")))
    };
    eventually(Duration::from_secs(60), "15 sensors online in swa", || {
        let v = hub.json(&["device", "ls", "/swa"]);
        let r = rows(&v);
        r.len() == 15
            && r.iter()
                .all(|t| t["status"]["online"] == true && has_schema(t))
    })
    .await;
    eventually(Duration::from_secs(30), "5 meters online in swb", || {
        let r = rows(&hub.json(&["device", "ls", "/swb", "--label", "type=power"]));
        r.len() == 5 && r.iter().all(|t| t["status"]["online"] == true)
    })
    .await;
    let twin = hub.twin("sensor__7/swa");
    assert_eq!(twin["spec"]["deviceId"], "sensor__7");
    assert_eq!(
        twin["meta"]["labels"],
        json!({"type": "environmental", "site": "lab"})
    );
    assert_eq!(twin["meta"]["annotations"]["swarm"], "true");
    assert!(has_schema(&twin), "{twin}");

    // Telemetry with generated values: rand in range, int8 clamped, nested messages.
    let mut q = Value::Null;
    eventually(Duration::from_secs(30), "telemetry rows", || {
        q = hub.json(&[
            "tlm",
            "query",
            "sensor__3/swa",
            "-n",
            "swarm.e2e.Environment",
            "--since",
            "5m",
        ]);
        rows(&q["rows"]).len() >= 3
    })
    .await;
    for row in rows(&q["rows"]) {
        let v = &row["values"];
        let t = v["temperature"].as_f64().unwrap();
        assert!((20.0..21.0).contains(&t), "{row}");
        assert_eq!(v["level"], 127, "{row}");
        assert_eq!(v["consumption.power"], 100.0, "{row}");
    }
    eventually(Duration::from_secs(30), "meter telemetry rows", || {
        let q = hub.json(&[
            "tlm",
            "query",
            "meter__4/swb",
            "-n",
            "swarm.e2e.Power",
            "--since",
            "5m",
        ]);
        !rows(&q["rows"]).is_empty()
    })
    .await;

    // A command is echoed back: the response is the request. (The answer queues behind
    // the device's telemetry, which the localstack profile stores slowly: the longest
    // wait the API allows.)
    let out = hub.json(&[
        "cmd",
        "send",
        "sensor__0/swa",
        "-n",
        "swarm.e2e.Calibrate",
        "-p",
        r#"{"mode": 3}"#,
        "--timeout",
        "25s",
    ]);
    let r = &rows(&out)[0];
    assert_eq!(r["status"], "SUCCESS", "{r}");
    assert_eq!(r["responseName"], "swarm.e2e.Calibrate");
    assert_eq!(r["response"], json!({"mode": 3}));
    // The meters have no commands.
    let list = hub.mir(&["cmd", "send", "meter__0/swb"]);
    assert!(!list.stdout.contains("Calibrate"), "{list:?}");

    // A desired property is reported back after its delay.
    let out = hub.mir(&[
        "cfg",
        "send",
        "sensor__1/swa",
        "-n",
        "swarm.e2e.SensorConfig",
        "-p",
        r#"{"sampleRate": 9, "enabled": true}"#,
    ]);
    assert!(out.ok, "{out:?}");
    eventually(Duration::from_secs(15), "reported SensorConfig", || {
        hub.twin("sensor__1/swa")["properties"]["reported"]["swarm.e2e.SensorConfig"]
            == json!({"sampleRate": 9, "enabled": true})
    })
    .await;

    // Ctrl-C stops the swarm cleanly, after reporting progress.
    let out = swarm.interrupt();
    let stderr = out.stderr;
    assert!(out.ok, "{stderr}");
    assert!(
        stderr.contains("Swarm running: 20 of 20 devices deployed"),
        "{stderr}"
    );
    // Piped, the progress bar prints nothing. (The devices' own log lines, coloured, are
    // left out: a device may warn while the swarm stops, e.g. of a connection closed or
    // of messages not acknowledged yet.)
    let output: String = stderr
        .lines()
        .filter(|l| !l.contains("mir_device_sdk::"))
        .collect();
    assert!(
        !output.contains('\r') && !output.contains("[#") && !output.contains("\x1b["),
        "{stderr}"
    );
    assert!(stderr.contains("Stopped:"), "{stderr}");
    eventually(Duration::from_secs(20), "sensors offline", || {
        rows(&hub.json(&["device", "ls", "/swa"]))
            .iter()
            .all(|t| t["status"]["online"] == false)
    })
    .await;
}

#[test]
fn the_template_runs_as_printed_and_bad_files_fail_with_clear_errors() {
    let no_hub = |args: &[&str]| cli().cmd(args).api("http://127.0.0.1:9");
    let t = no_hub(&["swarm", "-j"]).run();
    assert!(t.ok && t.stdout.contains("kind: swarm"), "{t:?}");
    // A mistake is reported before anything is deployed.
    let bad = t.stdout.replace("type: float32", "type: float33");
    let out = no_hub(&["swarm", "-f", "-"]).stdin(&bad).run();
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("unknown type \"float33\""), "{out:?}");
    // A valid file with no hub says what to do.
    let out = no_hub(&["swarm"]).stdin(&t.stdout).run();
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("mir local"), "{out:?}");
}
