//! Mir's quick start, line by line as Mir's documentation prints it, against
//! `mir local`: a swarm started with `mir swarm --ids power,weather`, then each CLI line
//! of the guide, each output checked.

use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::support::*;

/// Splits a command line as a POSIX shell would for what the guide uses: words, and
/// single-quoted strings kept whole.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    assert!(!quoted, "unbalanced quote in {line:?}");
    if any {
        out.push(cur);
    }
    out
}

/// A `mir swarm` process, stopped on drop.
struct SwarmProcess(Child);

impl Drop for SwarmProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs one line of the guide (`mir ...`) against the hub, with `$EDITOR` set.
fn line(hub: &LocalHub, editor: &std::path::Path, text: &str) -> CliOutput {
    let w = words(text);
    assert_eq!(w[0], "mir", "{text}");
    let args: Vec<&str> = w[1..].iter().map(String::as_str).collect();
    with_editor(hub, editor, &args)
}

fn ok(hub: &LocalHub, editor: &std::path::Path, text: &str) -> String {
    let out = line(hub, editor, text);
    assert!(out.ok, "`{text}` failed:\n{}\n{}", out.stdout, out.stderr);
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirs_quick_start_works_as_printed() {
    let hub = LocalHub::start();
    let home = tempfile::tempdir().unwrap();
    let scripts = tempfile::tempdir().unwrap();

    // Terminal 3: `mir swarm --ids power,weather` (MIR_SWARM_TARGET: the hub's port).
    let swarm = words("mir swarm --ids power,weather");
    let _swarm = SwarmProcess(
        Command::new(MIR)
            .args(&swarm[1..])
            .args(["--api", &hub.api()])
            .env("MIR_SWARM_TARGET", hub.mqtt())
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually(60, "power and weather online", || {
        let v = hub.json(&["device", "ls", "--ids", "power,weather"]);
        v.as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|t| t["status"]["online"] == true))
    })
    .await;
    eventually(20, "power's schema in its twin", || {
        hub.twin("power/default")["status"]["schema"]["packageNames"]
            .as_array()
            .is_some_and(|p| p.iter().any(|n| n == "swarm.v1"))
    })
    .await;
    let editor = editor_script(scripts.path(), "none", "true");

    // `mir device list`: both devices, online.
    let list = ok(&hub, &editor, "mir device list");
    assert!(list.contains("NAME/NAMESPACE"), "{list}");
    for name in ["power/default", "weather/default"] {
        let row = list
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name} in\n{list}"));
        assert!(row.contains("true"), "{name} not online: {row}");
    }

    // `mir device ls power`: the twin.
    let twin = ok(&hub, &editor, "mir device ls power");
    let twin: Value = serde_yaml::from_str(&twin).unwrap();
    assert_eq!(twin["apiVersion"], "mir/v1alpha");
    assert_eq!(twin["meta"]["name"], "power");
    assert_eq!(twin["status"]["online"], true);

    // `mir tlm list power`: both telemetry messages with their fields.
    let tlm = ok(&hub, &editor, "mir tlm list power");
    assert!(tlm.contains("power/default"), "{tlm}");
    for m in ["swarm.v1.EnvironmentTlm", "swarm.v1.PowerConsumption"] {
        assert!(tlm.contains(m), "{m} missing from\n{tlm}");
    }
    for f in ["temperature", "humidity", "power", "voltage"] {
        assert!(tlm.contains(f), "field {f} missing from\n{tlm}");
    }

    // `mir cmd send power`: the commands.
    let cmds = ok(&hub, &editor, "mir cmd send power");
    assert!(cmds.contains("swarm.v1.ActivateHVAC"), "{cmds}");

    // The command's payload template, a send, an edited send.
    let tpl = ok(
        &hub,
        &editor,
        "mir command send power/default -n swarm.v1.ActivateHVAC -j",
    );
    let tpl: Value = serde_json::from_str(&tpl).unwrap();
    assert_eq!(tpl, serde_json::json!({"durationSec": 0}));
    let sent = ok(
        &hub,
        &editor,
        r#"mir command send power/default -n swarm.v1.ActivateHVAC -p '{"durationSec": 5}'"#,
    );
    assert!(sent.contains("power/default"), "{sent}");
    assert!(sent.contains("SUCCESS"), "{sent}");
    assert!(sent.contains("\"durationSec\": 5"), "the echo: {sent}");
    let seven = editor_script(
        scripts.path(),
        "seven",
        r#"printf '{"durationSec": 7}' > "$1""#,
    );
    let edited = line(
        &hub,
        &seven,
        "mir command send power/default -n swarm.v1.ActivateHVAC -e",
    );
    assert!(edited.ok, "{edited:?}");
    assert!(edited.stdout.contains("SUCCESS"), "{edited:?}");
    assert!(edited.stdout.contains("\"durationSec\": 7"), "{edited:?}");

    // `mir cfg send power/default`: the configuration messages.
    let cfgs = ok(&hub, &editor, "mir cfg send power/default");
    assert!(cfgs.contains("swarm.v1.DataRateProp"), "{cfgs}");

    // Current value (none yet: the template), template, send, edited send.
    let current = ok(
        &hub,
        &editor,
        "mir config send power/default -n swarm.v1.DataRateProp -c",
    );
    assert_eq!(
        serde_json::from_str::<Value>(&current).unwrap(),
        serde_json::json!({"sec": 0})
    );
    let tpl = ok(
        &hub,
        &editor,
        "mir config send power/default -n swarm.v1.DataRateProp -j",
    );
    assert_eq!(
        serde_json::from_str::<Value>(&tpl).unwrap(),
        serde_json::json!({"sec": 0})
    );
    let sent = ok(
        &hub,
        &editor,
        r#"mir config send power/default -n swarm.v1.DataRateProp -p '{"sec": 5}'"#,
    );
    assert!(sent.contains("power/default"), "{sent}");
    eventually(20, "the swarm reports sec 5 back", || {
        hub.twin("power/default")["properties"]["reported"]["swarm.v1.DataRateProp"]["sec"] == 5
    })
    .await;
    let current = ok(
        &hub,
        &editor,
        "mir config send power/default -n swarm.v1.DataRateProp -c",
    );
    assert_eq!(
        serde_json::from_str::<Value>(&current).unwrap(),
        serde_json::json!({"sec": 5})
    );
    let nine = editor_script(scripts.path(), "nine", r#"printf '{"sec": 9}' > "$1""#);
    let edited = line(
        &hub,
        &nine,
        "mir config send power/default -n swarm.v1.DataRateProp -e",
    );
    assert!(edited.ok, "{edited:?}");
    eventually(20, "the swarm reports sec 9 back", || {
        hub.twin("power/default")["properties"]["reported"]["swarm.v1.DataRateProp"]["sec"] == 9
    })
    .await;

    // Telemetry flows for both messages.
    eventually(30, "power telemetry stored", || {
        let q = hub.json(&[
            "tlm",
            "query",
            "power/default",
            "-n",
            "swarm.v1.PowerConsumption",
            "--since",
            "5m",
        ]);
        q["rows"]
            .as_array()
            .is_some_and(|r| r.iter().any(|row| row["values"]["power"].is_number()))
    })
    .await;
}

#[test]
fn the_quick_start_splitter_keeps_quoted_json_whole() {
    assert_eq!(
        words(r#"mir cmd send p -p '{"durationSec": 5}'"#),
        ["mir", "cmd", "send", "p", "-p", r#"{"durationSec": 5}"#]
    );
}
