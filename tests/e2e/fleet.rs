//! The real `mir` binary against the hub for the fleet command groups: devices
//! (create, apply from a file and stdin, update, edit with a scripted `$EDITOR`,
//! delete), commands and config (`-e`, `--dry-run`, `-c`), telemetry listing and
//! event filters, with `-o json` (and YAML) parsed back. Also the swarm and the
//! generated device template.

mod swarm;
mod template;

use std::time::Duration;

use mir_proto::examples::weather::Env;
use serde_json::{json, Value};

use crate::support::*;

fn list(v: &Value, key: &str) -> Vec<Value> {
    v.as_array()
        .cloned()
        .or_else(|| v[key].as_array().cloned())
        .unwrap_or_default()
}

fn reasons(hub: &TestHub, args: &[&str]) -> Vec<String> {
    let mut all = vec!["event", "ls", "--limit", "500"];
    all.extend(args);
    list(&hub.json(&all), "events")
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_are_created_applied_updated_edited_and_deleted_through_the_cli() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();

    // create with flags
    let out = hub.mir(&[
        "device",
        "create",
        "--id",
        "f1",
        "--namespace",
        "fleet",
        "--label",
        "site=lab",
    ]);
    assert!(out.ok, "{out:?}");

    // create -j gives a template; piped back through `apply -f -` (stdin).
    let template = hub.mir(&["device", "create", "-j"]).stdout;
    let yaml = template
        .replace("my-device", "f2")
        .replace("namespace: default", "namespace: fleet");
    let out = hub.mir_stdin(&["device", "apply", "-f", "-"], &yaml);
    assert!(out.ok, "{out:?}");
    assert_eq!(
        hub.twin("f2/fleet")["meta"]["labels"],
        json!({"type": "sensor"})
    );

    // apply -f with two documents: a new device and desired properties on f1.
    let file = dir.path().join("devices.yaml");
    std::fs::write(
        &file,
        "apiVersion: mir/v1alpha\nkind: device\nmeta: {name: f3, namespace: fleet, labels: {site: roof}}\nspec: {deviceId: f3}\n---\n\
         apiVersion: mir/v1alpha\nkind: device\nmeta: {name: f1, namespace: fleet, labels: {site: lab}}\nspec: {deviceId: f1}\n\
         properties:\n  desired:\n    schema.v1.DataRateProp: {sec: 5}\n",
    )
    .unwrap();
    let out = hub.mir(&["device", "apply", "-f", file.to_str().unwrap()]);
    assert!(out.ok, "{out:?}");
    let f1 = hub.twin("f1/fleet");
    assert_eq!(
        f1["properties"]["desired"]["schema.v1.DataRateProp"],
        json!({"sec": 5})
    );

    // ls -o json parsed back, and -o yaml.
    let all = list(&hub.json(&["device", "ls", "/fleet"]), "devices");
    let mut ids: Vec<&str> = all
        .iter()
        .map(|t| t["spec"]["deviceId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["f1", "f2", "f3"]);
    let out = hub.mir(&["device", "ls", "f3/fleet", "-o", "yaml"]);
    let y: serde_yaml::Value = serde_yaml::from_str(&out.stdout).unwrap();
    let y = serde_json::to_value(y).unwrap();
    let y = list(&y, "devices").first().cloned().unwrap_or(y);
    assert_eq!(y["meta"]["labels"]["site"], "roof", "{}", out.stdout);

    // update: a label added, one removed, disabled.
    let out = hub.mir(&[
        "device",
        "update",
        "f1/fleet",
        "--label",
        "floor=2",
        "--remove-label",
        "site",
        "--disabled",
        "true",
    ]);
    assert!(out.ok, "{out:?}");
    let f1 = hub.twin("f1/fleet");
    assert_eq!(f1["meta"]["labels"], json!({"floor": "2"}));
    assert_eq!(f1["spec"]["disabled"], true);
    // label selection
    let floor = list(
        &hub.json(&["device", "ls", "--label", "floor=2"]),
        "devices",
    );
    assert_eq!(floor.len(), 1);

    // edit with a scripted editor: a label and a desired property change.
    let editor = editor_script(
        dir.path(),
        "edit.sh",
        "sed -i 's/type: sensor/type: gateway/' \"$1\"\nsed -i 's/^properties: {}/properties:\\n  desired:\\n    schema.v1.DataRateProp:\\n      sec: 9/' \"$1\"",
    );
    let out = hub.with_editor(&editor, &["device", "edit", "f2/fleet"]);
    assert!(out.ok, "{out:?}");
    let f2 = hub.twin("f2/fleet");
    assert_eq!(f2["meta"]["labels"]["type"], "gateway", "{f2}");
    assert_eq!(
        f2["properties"]["desired"]["schema.v1.DataRateProp"],
        json!({"sec": 9}),
        "{f2}"
    );
    // An editor that changes nothing applies nothing.
    let noop = editor_script(dir.path(), "noop.sh", "true");
    let out = hub.with_editor(&noop, &["device", "edit", "f2/fleet"]);
    assert!(out.ok, "{out:?}");
    assert_eq!(out.stdout, "f2/fleet unchanged\n", "{out:?}");
    // A broken edit is refused and the twin is untouched.
    let broken = editor_script(dir.path(), "broken.sh", "echo 'meta: [' > \"$1\"");
    let out = hub.with_editor(&broken, &["device", "edit", "f2/fleet"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("the edited twin is not valid"),
        "{out:?}"
    );
    assert_eq!(hub.twin("f2/fleet")["meta"]["labels"]["type"], "gateway");

    // delete one by name, then by namespace + label.
    assert!(hub.mir(&["device", "delete", "f3/fleet"]).ok);
    assert!(
        hub.mir(&["device", "delete", "/fleet", "--label", "floor=2"])
            .ok
    );
    let left = list(&hub.json(&["device", "ls", "/fleet"]), "devices");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["spec"]["deviceId"], "f2");
    let out = hub.mir(&["device", "delete", "f3/fleet"]);
    assert!(!out.ok && out.stderr.contains("no device"), "{out:?}");

    // events: filters by device, reason, since and limit.
    let r = reasons(&hub, &["--device", "f1"]);
    for want in ["DeviceCreated", "DeviceUpdated", "DeviceDeleted"] {
        assert!(r.contains(&want.to_string()), "{want} in {r:?}");
    }
    let r = reasons(&hub, &["--reason", "DeviceDeleted"]);
    assert_eq!(r, ["DeviceDeleted", "DeviceDeleted"]);
    let r = reasons(&hub, &["--reason", "DeviceCreated", "--since", "1h"]);
    assert_eq!(r.len(), 3, "{r:?}");
    let r = reasons(&hub, &["--since", "2030-01-01T00:00:00Z"]);
    assert!(r.is_empty(), "{r:?}");
    let one = list(&hub.json(&["event", "ls", "--limit", "1"]), "events");
    assert_eq!(one.len(), 1);
    let text = hub.mir(&["evt", "ls", "--device", "f2/fleet"]);
    assert!(text.ok && text.stdout.contains("DeviceCreated"), "{text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_and_config_are_edited_dry_run_and_sent_and_telemetry_is_listed() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let dev = TestDevice::start(&hub, "fw1", Behaviour::Succeed).await;
    eventually(Duration::from_secs(10), "schema", || {
        hub.mir(&["cmd", "send", "fw1"])
            .stdout
            .contains("ActivateHVACCmd")
    })
    .await;

    // cmd -e: the editor starts from the template and what it writes is sent.
    let editor = editor_script(
        dir.path(),
        "cmd.sh",
        "grep -q durationSec \"$1\"\necho '{\"durationSec\": 3}' > \"$1\"",
    );
    let out = hub.with_editor(
        &editor,
        &[
            "cmd",
            "send",
            "fw1",
            "-n",
            "schema.v1.ActivateHVACCmd",
            "-e",
            "-o",
            "json",
        ],
    );
    assert!(out.ok, "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let r = &list(&v, "results")[0];
    assert_eq!(r["status"], "SUCCESS", "{r}");
    eventually(
        Duration::from_secs(10),
        "HVACStatus reported by the handler",
        || {
            hub.twin("fw1/default")["properties"]["reported"]["schema.v1.HVACStatus"]
                == json!({"online": true})
        },
    )
    .await;

    // --dry-run validates only; a wrong payload names the problem.
    let v = hub.json(&[
        "cmd",
        "send",
        "fw1",
        "-n",
        "schema.v1.ActivateHVACCmd",
        "-p",
        r#"{"durationSec": 0}"#,
        "--dry-run",
    ]);
    assert_eq!(list(&v, "results")[0]["status"], "VALIDATED", "{v}");
    let out = hub.mir(&[
        "cmd",
        "send",
        "fw1",
        "-n",
        "schema.v1.ActivateHVACCmd",
        "-p",
        r#"{"nope": 1}"#,
        "--dry-run",
    ]);
    assert!(
        !out.ok && out.stdout.contains("unknown field `nope`"),
        "{out:?}"
    );
    // The dry run did not reach the device: its reported status is still online=true.
    assert_eq!(
        hub.twin("fw1/default")["properties"]["reported"]["schema.v1.HVACStatus"],
        json!({"online": true})
    );
    // piped stdin as the payload
    let out = hub.mir_stdin(
        &["cmd", "send", "fw1", "-n", "schema.v1.ActivateHVACCmd"],
        r#"{"durationSec": 0}"#,
    );
    assert!(out.ok, "{out:?}");
    eventually(Duration::from_secs(10), "HVACStatus online=false", || {
        hub.twin("fw1/default")["properties"]["reported"]["schema.v1.HVACStatus"] == json!({})
            || hub.twin("fw1/default")["properties"]["reported"]["schema.v1.HVACStatus"]
                == json!({"online": false})
    })
    .await;

    // cfg -e, then -c shows it; the device got it and reported it.
    let editor = editor_script(dir.path(), "cfg.sh", "echo '{\"sec\": 7}' > \"$1\"");
    let out = hub.with_editor(
        &editor,
        &["cfg", "send", "fw1", "-n", "schema.v1.DataRateProp", "-e"],
    );
    assert!(out.ok, "{out:?}");
    let cur = hub.mir(&["cfg", "send", "fw1", "-n", "schema.v1.DataRateProp", "-c"]);
    assert_eq!(
        serde_json::from_str::<Value>(&cur.stdout).unwrap(),
        json!({"sec": 7})
    );
    eventually(Duration::from_secs(10), "reported DataRateStatus 7", || {
        hub.twin("fw1/default")["properties"]["reported"]["schema.v1.DataRateStatus"]
            == json!({"sec": 7})
    })
    .await;
    assert!(dev.desired().contains(&7), "{:?}", dev.desired());
    // cfg --dry-run changes nothing.
    let v = hub.json(&[
        "cfg",
        "send",
        "fw1",
        "-n",
        "schema.v1.DataRateProp",
        "-p",
        r#"{"sec": 99}"#,
        "--dry-run",
    ]);
    assert_eq!(list(&v, "results")[0]["status"], "VALIDATED", "{v}");
    assert_eq!(
        hub.twin("fw1/default")["properties"]["desired"]["schema.v1.DataRateProp"],
        json!({"sec": 7})
    );
    let r = reasons(
        &hub,
        &["--device", "fw1", "--reason", "DesiredPropertiesUpdated"],
    );
    assert_eq!(r.len(), 1, "{r:?}");

    // tlm list: the device's telemetry messages, with what is stored.
    for i in 0..3 {
        dev.mir
            .send_telemetry(&Env {
                temperature: 20 + i,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut v = Value::Null;
    eventually(Duration::from_secs(10), "3 Env stored", || {
        v = hub.json(&["tlm", "list", "fw1/default"]);
        list(&v, "devices")
            .first()
            .and_then(|d| d["messages"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .any(|m| m["measure"] == "schema.v1.Env" && m["count"] == 3)
    })
    .await;
    let text = hub.mir(&["tlm", "ls", "fw1"]);
    assert!(text.ok && text.stdout.contains("schema.v1.Env"), "{text:?}");
    dev.stop().await;
}
