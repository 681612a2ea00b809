//! Mir's quick start, line by line as Mir's documentation prints it, against
//! the hub (in-process: the guide's `mir local` line is the test's hub): a swarm started with `mir swarm --ids power,weather`, then each CLI line
//! of the guide, each output checked.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// Splits a command line as a POSIX shell would for what the guide uses: words, and
/// single-quoted strings kept whole.
pub fn words(line: &str) -> Vec<String> {
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

/// Runs one line of the guide (`mir ...`) against the hub, with `$EDITOR` set.
fn line(hub: &TestHub, editor: &std::path::Path, text: &str) -> CliOutput {
    let w = words(text);
    assert_eq!(w[0], "mir", "{text}");
    let args: Vec<&str> = w[1..].iter().map(String::as_str).collect();
    hub.with_editor(editor, &args)
}

fn ok(hub: &TestHub, editor: &std::path::Path, text: &str) -> String {
    let out = line(hub, editor, text);
    assert!(out.ok, "`{text}` failed:\n{}\n{}", out.stdout, out.stderr);
    out.stdout
}

/// Mir's quick start as its guide prints it (`mir local` standing for `mir infra up`
/// and `mir serve`; the guide's `mir swarm --ids power` is started with `weather` too).
const MIR_QUICK_START: [&str; 14] = [
    "mir local",
    "mir swarm --ids power,weather",
    "mir device list",
    "mir device ls power",
    "mir tlm list power",
    "mir cmd send power",
    "mir command send power/default -n swarm.v1.ActivateHVAC -j",
    r#"mir command send power/default -n swarm.v1.ActivateHVAC -p '{"durationSec": 5}'"#,
    "mir command send power/default -n swarm.v1.ActivateHVAC -e",
    "mir cfg send power/default",
    "mir config send power/default -n swarm.v1.DataRateProp -c",
    "mir config send power/default -n swarm.v1.DataRateProp -j",
    r#"mir config send power/default -n swarm.v1.DataRateProp -p '{"sec": 5}'"#,
    "mir config send power/default -n swarm.v1.DataRateProp -e",
];

#[test]
fn the_readme_prints_mirs_quick_start_verbatim() {
    assert_eq!(crate::readme::block("Mir's quick start"), MIR_QUICK_START);
}

fn reported_sec(hub: &TestHub) -> Value {
    hub.twin("power/default")["properties"]["reported"]["swarm.v1.DataRateProp"]["sec"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirs_quick_start_works_as_printed() {
    let hub = hub();
    let scripts = tempfile::tempdir().unwrap();
    let editor = editor_script(scripts.path(), "none", "true");
    let seven = editor_script(
        scripts.path(),
        "seven",
        r#"printf '{"durationSec": 7}' > "$1""#,
    );
    let nine = editor_script(scripts.path(), "nine", r#"printf '{"sec": 9}' > "$1""#);
    let mut swarm = None;

    for text in MIR_QUICK_START {
        match text {
            // The hub is this test's (on free ports).
            "mir local" => {}
            // Terminal 3 (MIR_SWARM_TARGET: the hub's MQTT port).
            "mir swarm --ids power,weather" => {
                let w = words(text);
                swarm = Some(
                    hub.cmd(&w[1..].iter().map(String::as_str).collect::<Vec<_>>())
                        .env("MIR_SWARM_TARGET", hub.mqtt())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn(),
                );
                eventually(Duration::from_secs(60), "power and weather online", || {
                    let v = hub.json(&["device", "ls", "--ids", "power,weather"]);
                    v.as_array().is_some_and(|a| {
                        a.len() == 2 && a.iter().all(|t| t["status"]["online"] == true)
                    })
                })
                .await;
                eventually(
                    Duration::from_secs(20),
                    "power's schema in its twin",
                    || {
                        hub.twin("power/default")["status"]["schema"]["packageNames"]
                            .as_array()
                            .is_some_and(|p| p.iter().any(|n| n == "swarm.v1"))
                    },
                )
                .await;
            }
            "mir device list" => {
                let list = ok(&hub, &editor, text);
                assert!(list.contains("NAME/NAMESPACE"), "{list}");
                for name in ["power/default", "weather/default"] {
                    let row = list
                        .lines()
                        .find(|l| l.starts_with(name))
                        .unwrap_or_else(|| panic!("no row {name} in\n{list}"));
                    assert!(row.contains("true"), "{name} not online: {row}");
                }
            }
            "mir device ls power" => {
                let twin: Value = serde_yaml::from_str(&ok(&hub, &editor, text)).unwrap();
                assert_eq!(twin["apiVersion"], "mir/v1alpha");
                assert_eq!(twin["meta"]["name"], "power");
                assert_eq!(twin["status"]["online"], true);
            }
            "mir tlm list power" => {
                let tlm = ok(&hub, &editor, text);
                assert!(tlm.contains("power/default"), "{tlm}");
                for m in ["swarm.v1.EnvironmentTlm", "swarm.v1.PowerConsumption"] {
                    assert!(tlm.contains(m), "{m} missing from\n{tlm}");
                }
                for f in ["temperature, humidity", "power, voltage"] {
                    assert!(tlm.contains(f), "fields {f} missing from\n{tlm}");
                }
            }
            "mir cmd send power" => {
                let cmds = ok(&hub, &editor, text);
                assert!(cmds.contains("swarm.v1.ActivateHVAC{}"), "{cmds}");
            }
            t if t.ends_with("ActivateHVAC -j") => {
                let tpl: Value = serde_json::from_str(&ok(&hub, &editor, t)).unwrap();
                assert_eq!(tpl, serde_json::json!({"durationSec": 0}));
            }
            t if t.contains("ActivateHVAC -p") => {
                let sent = ok(&hub, &editor, t);
                assert!(
                    sent.contains("1. power/default COMMAND_RESPONSE_STATUS_SUCCESS"),
                    "{sent}"
                );
                assert!(sent.contains("\"durationSec\": 5"), "the echo: {sent}");
            }
            t if t.ends_with("ActivateHVAC -e") => {
                let sent = ok(&hub, &seven, t);
                assert!(sent.contains("COMMAND_RESPONSE_STATUS_SUCCESS"), "{sent}");
                assert!(sent.contains("\"durationSec\": 7"), "the echo: {sent}");
            }
            "mir cfg send power/default" => {
                let cfgs = ok(&hub, &editor, text);
                assert!(cfgs.contains("swarm.v1.DataRateProp{}"), "{cfgs}");
            }
            t if t.ends_with("DataRateProp -c") => {
                // Nothing desired yet: the current value is the template.
                let current: Value = serde_json::from_str(&ok(&hub, &editor, t)).unwrap();
                assert_eq!(current, serde_json::json!({"sec": 0}));
            }
            t if t.ends_with("DataRateProp -j") => {
                let tpl: Value = serde_json::from_str(&ok(&hub, &editor, t)).unwrap();
                assert_eq!(tpl, serde_json::json!({"sec": 0}));
            }
            t if t.contains("DataRateProp -p") => {
                let sent = ok(&hub, &editor, t);
                assert!(sent.contains("1. power/default"), "{sent}");
                eventually(
                    Duration::from_secs(20),
                    "the swarm reports sec 5 back",
                    || reported_sec(&hub) == 5,
                )
                .await;
                let c = ok(
                    &hub,
                    &editor,
                    "mir config send power/default -n swarm.v1.DataRateProp -c",
                );
                let current: Value = serde_json::from_str(&c).unwrap();
                assert_eq!(current, serde_json::json!({"sec": 5}));
            }
            t if t.ends_with("DataRateProp -e") => {
                ok(&hub, &nine, t);
                eventually(
                    Duration::from_secs(20),
                    "the swarm reports sec 9 back",
                    || reported_sec(&hub) == 9,
                )
                .await;
            }
            other => panic!("a quick-start line without a check: {other}"),
        }
    }

    // Telemetry flows for both messages.
    for (message, field) in [
        ("swarm.v1.PowerConsumption", "power"),
        ("swarm.v1.EnvironmentTlm", "humidity"),
    ] {
        eventually(
            Duration::from_secs(30),
            &format!("{message} stored"),
            || {
                let q = hub.json(&[
                    "tlm",
                    "query",
                    "power/default",
                    "-n",
                    message,
                    "--since",
                    "5m",
                ]);
                q["rows"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|row| row["values"][field].is_number()))
            },
        )
        .await;
    }
    // The hub's health and metrics, read by curl: the counters moved.
    let health = curl(&format!("{}/healthz", hub.api()));
    assert_eq!(health.trim(), r#"{"status":"ok"}"#);
    let metrics = curl(&format!("{}/metrics", hub.api()));
    for series in [
        "mir_hub_messages_in_total{kind=\"tlm\"}",
        "mir_hub_messages_in_total{kind=\"hello\"}",
        "mir_hub_invocations_total{function=\"telemetry\"}",
        "mir_hub_messages_out_total{kind=\"cmd/req\"}",
    ] {
        let n: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0);
        assert!(n >= 1.0, "{series} is {n}:\n{metrics}");
    }
    drop(swarm);
}

/// `curl -sS --fail URL`: a client that is not ours.
fn curl(url: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", url])
        .output()
        .expect("curl is installed");
    assert!(out.status.success(), "curl {url}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn the_quick_start_splitter_keeps_quoted_json_whole() {
    assert_eq!(
        words(r#"mir cmd send p -p '{"durationSec": 5}'"#),
        ["mir", "cmd", "send", "p", "-p", r#"{"durationSec": 5}"#]
    );
}
