//! `mir tools generate device-template`: the generated project builds (offline, against
//! this repository's SDK) and its device connects to the hub, streams telemetry and
//! answers its command.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_generated_device_template_builds_and_connects() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("tpl-device");
    let out = hub.mir(&[
        "tools",
        "generate",
        "device-template",
        "tpl-device",
        "--dir",
        project.to_str().unwrap(),
        "--target",
        &hub.mqtt(),
    ]);
    assert!(out.ok, "{out:?}");
    for f in [
        "Cargo.toml",
        "build.rs",
        "src/main.rs",
        "device.yaml",
        "README.md",
    ] {
        assert!(project.join(f).exists(), "{f}");
    }
    assert!(project.join("proto/mir/device/v1/mir.proto").exists());
    // Generating again into the same place is refused.
    let again = hub.mir(&[
        "tools",
        "generate",
        "device-template",
        "tpl-device",
        "--dir",
        project.to_str().unwrap(),
    ]);
    assert!(!again.ok && again.stderr.contains("--force"), "{again:?}");

    // Build offline with this workspace's lock file and target dir (artifacts reused).
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(root.join("Cargo.lock"), project.join("Cargo.lock")).unwrap();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(cargo)
        .args(["build", "--offline", "--quiet"])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "the template does not build:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );

    // Run it: device.yaml says where to connect and its id.
    let home = tempfile::tempdir().unwrap();
    let _device = Background::from(
        Command::new(target_dir.join("debug").join("tpl-device"))
            .current_dir(&project)
            .env("HOME", home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually(
        Duration::from_secs(30),
        "tpl-device online with its schema",
        || {
            let twin = hub.twin("tpl-device/default");
            twin["status"]["online"] == true
                && twin["status"]["schema"]["packageNames"]
                    .as_array()
                    .is_some_and(|p| p.contains(&json!("schema.v1")))
        },
    )
    .await;
    eventually(Duration::from_secs(20), "telemetry stored", || {
        let v = hub.json(&[
            "tlm",
            "query",
            "tpl-device",
            "-n",
            "schema.v1.Env",
            "--since",
            "5m",
        ]);
        v["rows"].as_array().is_some_and(|r| !r.is_empty())
    })
    .await;
    let v: Value = hub.json(&[
        "cmd",
        "send",
        "tpl-device",
        "-n",
        "schema.v1.ActivateHVACCmd",
        "-p",
        r#"{"durationSec": 2}"#,
    ]);
    let r = v
        .as_array()
        .cloned()
        .or_else(|| v["results"].as_array().cloned())
        .unwrap();
    assert_eq!(r[0]["status"], "SUCCESS", "{v}");
    assert_eq!(r[0]["response"], json!({"success": true}));
    let out = hub.mir(&[
        "cfg",
        "send",
        "tpl-device",
        "-n",
        "schema.v1.DataRateProp",
        "-p",
        r#"{"sec": 3}"#,
    ]);
    assert!(out.ok, "{out:?}");
    eventually(Duration::from_secs(15), "DataRateStatus reported", || {
        hub.twin("tpl-device/default")["properties"]["reported"]["schema.v1.DataRateStatus"]
            == json!({"sec": 3})
    })
    .await;
}
