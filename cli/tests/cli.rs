//! The real `mir` binary against the real hub (in-process, over a temporary embedded
//! store): the API's own answers, with a recording proxy in front where a test checks
//! what the CLI sent; `mir evt watch` on an aws context against a fake API Gateway
//! ([`aws_watch`]).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use mir_shared::api::{DeviceList, SendCommand};
use mir_shared::domain::Twin;
use mir_test_support::{
    editor_script, eventually, Behaviour, Cli, Invocation, RecordingProxy, TestDevice, TestHub,
};

fn cli() -> Cli {
    Cli::new(env!("CARGO_BIN_EXE_mir"))
}

/// `mir ARGS` with the CLI configuration in `dir/cli.yaml`.
fn mir(dir: &Path, args: &[&str]) -> Invocation {
    cli().cmd(args).env("MIR_CONFIG", dir.join("cli.yaml"))
}

/// A hub with two devices, weather/default (labels type=sensor, old=yes) and power/lab
/// (type=sensor), neither connected yet; a recording proxy in front of its API and a
/// private CLI configuration.
struct Fleet {
    hub: TestHub,
    proxy: RecordingProxy,
    dir: tempfile::TempDir,
}

impl Fleet {
    fn new() -> Fleet {
        let hub = TestHub::start_embedded(cli());
        let create = |args: &[&str]| {
            let out = hub.mir(&[&["device", "create"], args].concat());
            assert!(out.ok, "{out:?}");
        };
        create(&[
            "--id",
            "weather",
            "--label",
            "type=sensor",
            "--label",
            "old=yes",
        ]);
        create(&[
            "--id",
            "power",
            "--namespace",
            "lab",
            "--label",
            "type=sensor",
        ]);
        let proxy = hub.recording_proxy();
        Fleet {
            hub,
            proxy,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `mir ARGS --api <the proxy>`.
    fn mir(&self, args: &[&str]) -> Invocation {
        mir(self.dir.path(), args).api(&self.proxy.url())
    }

    /// A fleet whose weather device is connected (answering commands with success).
    async fn with_weather_online() -> (Fleet, TestDevice) {
        let f = Fleet::new();
        let weather = f
            .connect("weather", "weather/default", Behaviour::Succeed)
            .await;
        (f, weather)
    }

    /// Connects the SDK device `id` and waits until its twin `target` shows its schema.
    async fn connect(&self, id: &str, target: &str, behaviour: Behaviour) -> TestDevice {
        let dev = TestDevice::start(&self.hub, id, behaviour).await;
        eventually(Duration::from_secs(10), "the schema in the twin", || {
            self.hub.twin(target)["status"]["schema"]["packageNames"]
                .as_array()
                .is_some_and(|p| p.contains(&json!("schema.v1")))
        })
        .await;
        dev
    }

    /// Sets weather's desired DataRateProp (directly, not through the proxy).
    fn desire_sec(&self, sec: u32) {
        let payload = format!(r#"{{"sec": {sec}}}"#);
        let args = [
            "cfg",
            "send",
            "weather/default",
            "-n",
            "schema.v1.DataRateProp",
            "-p",
            &payload,
        ];
        let out = self.hub.mir(&args);
        assert!(out.ok, "{out:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_ls_json_parses_back_to_the_twins() {
    let (f, _weather) = Fleet::with_weather_online().await;
    let run = f.mir(&["device", "ls", "-o", "json"]).run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let twins: Vec<Twin> = serde_json::from_str(&run.stdout).expect("a JSON list of twins");
    let stored: DeviceList = reqwest::get(format!("{}/v1/devices", f.hub.api()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(twins[0].status.last_heartbeat.is_some(), "{twins:?}");
    // The heartbeat and, under chaos, the connect event (delayed up to 2 s)
    // may land between the two reads.
    let strip = |mut t: Twin| {
        t.status.last_heartbeat = None;
        t.status.session = None;
        t
    };
    assert_eq!(
        twins.into_iter().map(strip).collect::<Vec<_>>(),
        stored.devices.into_iter().map(strip).collect::<Vec<_>>()
    );

    let run = f
        .mir(&["dev", "list", "weather/default", "-l", "type=sensor"])
        .run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.starts_with("NAME/NAMESPACE"), "{}", run.stdout);
    assert!(
        run.stdout.contains("weather/default") && run.stdout.contains("s ago"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("power/lab"), "{}", run.stdout);
    let q = f.proxy.last("GET", "/v1/devices").query;
    assert!(
        q.contains("names=weather%2Fdefault") && q.contains("labels=type%3Dsensor"),
        "{q}"
    );

    let run = f.mir(&["dev", "ls", "-o", "yaml"]).run();
    assert_eq!(
        run.stdout.matches("apiVersion: mir/v1alpha").count(),
        2,
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("\n---\n"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmd_send_with_a_payload_prints_mir_style_results() {
    let (f, _weather) = Fleet::with_weather_online().await;
    let run = f
        .mir(&[
            "cmd",
            "send",
            "weather/default",
            "-n",
            "schema.v1.ActivateHVACCmd",
            "-p",
            r#"{"durationSec": 5}"#,
        ])
        .run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "1. weather/default COMMAND_RESPONSE_STATUS_SUCCESS\nschema.v1.ActivateHVACResp\n{\n  \"success\": true\n}\n"
    );
    let req: SendCommand =
        serde_json::from_value(f.proxy.last("POST", "/v1/commands").json()).expect("SendCommand");
    assert_eq!(req.payload, json!({"durationSec": 5}));
    assert_eq!(req.targets.names[0].name, "weather");
    assert!(!req.dry_run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_does_not_succeed_makes_the_exit_code_non_zero() {
    let (f, _weather) = Fleet::with_weather_online().await;
    let _power = f
        .connect(
            "power",
            "power/lab",
            Behaviour::Slow(Duration::from_secs(10)),
        )
        .await;
    let run = f
        .mir(&[
            "dev",
            "cmd",
            "send",
            "/lab",
            "-n",
            "schema.v1.ActivateHVACCmd",
            "-p",
            "{}",
            "-t",
            "2s",
        ])
        .run();
    assert_eq!(run.code, Some(1), "{run:?}");
    // At the deadline the SDK gives up and says so (with the time it had), or the API
    // stops waiting first: both are a TIMEOUT for that device.
    let (status, error) = run.stdout.split_once('\n').unwrap();
    assert_eq!(status, "1. power/lab COMMAND_RESPONSE_STATUS_TIMEOUT");
    assert!(
        error.starts_with("the handler of schema.v1.ActivateHVACCmd did not finish within ")
            || error.starts_with("the device did not answer in time"),
        "{}",
        run.stdout
    );
    assert_eq!(
        f.proxy.last("POST", "/v1/commands").json()["timeoutMs"],
        2000
    );
    // --dry-run: VALIDATED is a success.
    let run = f
        .mir(&[
            "cmd",
            "send",
            "weather",
            "-n",
            "schema.v1.ActivateHVACCmd",
            "--dry-run",
        ])
        .run();
    assert_eq!(run.code, Some(0), "{} {}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout,
        "1. weather/default COMMAND_RESPONSE_STATUS_VALIDATED\n"
    );
    let sent = f.proxy.last("POST", "/v1/commands").json();
    assert_eq!(
        (&sent["payload"], &sent["dryRun"]),
        (&json!({}), &json!(true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payload_can_come_from_stdin() {
    let (f, _weather) = Fleet::with_weather_online().await;
    let send = [
        "cmd",
        "send",
        "weather/default",
        "-n",
        "schema.v1.ActivateHVACCmd",
    ];
    let run = f.mir(&send).stdin("{\"durationSec\": 7}\n").run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        f.proxy.last("POST", "/v1/commands").json()["payload"],
        json!({"durationSec": 7})
    );
    let before = f.proxy.requests().len();
    let run = f.mir(&send).stdin("{not json").run();
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("the payload from stdin is not valid JSON"),
        "{}",
        run.stderr
    );
    assert_eq!(f.proxy.requests().len(), before, "nothing is sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_opens_the_editor_on_the_template_then_sends() {
    let (f, _weather) = Fleet::with_weather_online().await;
    let seen = f.dir.path().join("seen.json");
    let editor = |name: &str, payload: &str| {
        let body = format!(
            "cp \"$1\" '{}'\nprintf '{payload}' > \"$1\"",
            seen.display()
        );
        editor_script(f.dir.path(), name, &body)
    };
    let seen_json = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(&seen).expect("seen")).expect("json")
    };
    let run = f
        .mir(&[
            "cmd",
            "send",
            "weather/default",
            "-n",
            "schema.v1.ActivateHVACCmd",
            "-e",
        ])
        .editor(&editor("nine.sh", r#"{"durationSec": 9}"#))
        .run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(seen_json(), json!({"durationSec": 0}));
    assert_eq!(
        f.proxy.last("POST", "/v1/commands").json()["payload"],
        json!({"durationSec": 9})
    );
    assert!(
        run.stdout
            .starts_with("1. weather/default COMMAND_RESPONSE_STATUS_SUCCESS"),
        "{}",
        run.stdout
    );

    // Config: the edit starts from the current desired value.
    f.desire_sec(5);
    let edit_cfg = [
        "cfg",
        "send",
        "weather/default",
        "-n",
        "schema.v1.DataRateProp",
        "-e",
    ];
    let run = f
        .mir(&edit_cfg)
        .editor(&editor("sec.sh", r#"{"sec": 9}"#))
        .run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(seen_json(), json!({"sec": 5}));
    assert_eq!(
        run.stdout,
        "1. weather/default SENT\nschema.v1.DataRateProp\n{\n  \"sec\": 9\n}\n"
    );
    // A field the message does not have: the API refuses it for the device (an ERROR
    // result naming the field, a non-zero exit) and the desired value stays.
    let run = f
        .mir(&edit_cfg)
        .editor(&editor("wrong.sh", r#"{"durationSec": 9}"#))
        .run();
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(seen_json(), json!({"sec": 9}));
    assert_eq!(
        run.stdout,
        "1. weather/default ERROR\ninvalid JSON for schema.v1.DataRateProp: unknown field `durationSec`; schema.v1.DataRateProp has: sec\n"
    );
    assert_eq!(
        f.hub.twin("weather/default")["properties"]["desired"]["schema.v1.DataRateProp"],
        json!({"sec": 9})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cfg_send_current_prints_the_desired_value_and_template_prints_the_template() {
    let (f, _weather) = Fleet::with_weather_online().await;
    f.desire_sec(5);
    let run = f
        .mir(&[
            "cfg",
            "send",
            "weather/default",
            "-n",
            "schema.v1.DataRateProp",
            "-c",
        ])
        .run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "{\n  \"sec\": 5\n}\n");
    let q = f.proxy.last("GET", "/v1/config").query;
    assert!(q.contains("name=schema.v1.DataRateProp"), "{q}");
    assert!(
        f.proxy.requests().iter().all(|r| r.method != "POST"),
        "-c must not send"
    );

    let run = f
        .mir(&[
            "cmd",
            "send",
            "weather",
            "-n",
            "schema.v1.ActivateHVACCmd",
            "-j",
        ])
        .run();
    assert_eq!(run.stdout, "{\n  \"durationSec\": 0\n}\n");

    let run = f.mir(&["cmd", "send", "weather", "-r"]).run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "1. weather/default\nschema.v1.ActivateHVACCmd{}\n"
    );
    f.proxy.last("POST", "/v1/devices/weather/schema/refresh");
}

#[test]
fn api_errors_are_shown_as_is_with_a_non_zero_exit() {
    let f = Fleet::new();
    let run = f
        .mir(&["cmd", "send", "ghost", "-n", "x.Nope", "-p", "{}"])
        .run();
    assert_eq!(run.code, Some(1));
    let answer = f.proxy.received();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    assert!(head.starts_with("HTTP/1.1 404"), "{answer}");
    let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(body["error"], "no device matches the targets", "{answer}");
    // Every error names its request, to quote when asking what went wrong.
    assert!(
        body["requestId"].as_str().is_some_and(|id| id.len() == 36),
        "{answer}"
    );
    assert_eq!(run.stderr.trim(), "Error: no device matches the targets");
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_command_is_an_error_result_of_the_device_with_a_non_zero_exit() {
    let (f, _weather) = Fleet::with_weather_online().await;
    let run = f
        .mir(&["cmd", "send", "weather", "-n", "x.Nope", "-p", "{}"])
        .run();
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        f.proxy.received().starts_with("HTTP/1.1 200"),
        "the API answers per device: {}",
        f.proxy.received()
    );
    assert_eq!(
        run.stdout,
        "1. weather/default COMMAND_RESPONSE_STATUS_ERROR\nunknown message \"x.Nope\"; known command messages: schema.v1.ActivateHVACCmd\n"
    );
    assert_eq!(run.stderr, "");
}

#[test]
fn an_unreachable_api_says_to_start_mir_local() {
    let dir = tempfile::tempdir().expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let run = mir(dir.path(), &["dev", "ls"]).env("MIR_API", &url).run();
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains(&format!(
            "cannot reach the Mir API at {url}: is `mir local` running? (start it with `mir local`"
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn contexts_choose_the_api_and_update_sends_a_merge_patch() {
    let f = Fleet::new();
    let dir = f.dir.path();
    let run = mir(dir, &["ctx", "add", "test", "--api", &f.proxy.url()]).run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let run = mir(dir, &["ctx", "test"]).run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let run = mir(dir, &["ctx"]).run();
    assert!(
        run.stdout.contains("*test") && run.stdout.contains(" local\n"),
        "{}",
        run.stdout
    );
    let run = mir(dir, &["tools", "config", "print"]).run();
    assert!(
        run.stdout.contains("currentContext: test"),
        "{}",
        run.stdout
    );

    let run = mir(
        dir,
        &[
            "dev",
            "update",
            "weather/default",
            "--label",
            "floor=2",
            "--remove-label",
            "old",
        ],
    )
    .run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "weather/default updated\n");
    assert_eq!(
        f.proxy.last("PATCH", "/v1/devices/weather").json(),
        json!({"meta": {"labels": {"floor": "2", "old": null}}})
    );
    assert_eq!(
        f.hub.twin("weather/default")["meta"]["labels"],
        json!({"floor": "2", "type": "sensor"})
    );

    let run = mir(
        dir,
        &[
            "ctx",
            "add",
            "cloud",
            "--api",
            "https://x.example",
            "--kind",
            "aws",
            "--use",
        ],
    )
    .run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let run = mir(dir, &["dev", "ls"]).run();
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("without a region"), "{}", run.stderr);
}

#[test]
fn ctx_import_reads_cdk_outputs_and_aws_contexts_sign_requests_with_sigv4() {
    let f = Fleet::new();
    let dir = f.dir.path();
    let outputs = dir.join("cdk-outputs.json");
    std::fs::write(
        &outputs,
        json!({
            "mir-test-api": {"ApiUrl": f.proxy.url(), "Region": "eu-west-1"},
            "mir-test-functions": {"IotDataEndpoint": "abc-ats.iot.eu-west-1.amazonaws.com"},
            "mir-test-data": {"TelemetrySink": "timestream"}
        })
        .to_string(),
    )
    .expect("write");
    let run = mir(
        dir,
        &[
            "ctx",
            "import",
            "--outputs",
            outputs.to_str().expect("utf-8"),
        ],
    )
    .run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains("context mir-test imported"),
        "{}",
        run.stdout
    );
    let run = mir(dir, &["ctx"]).run();
    assert!(
        run.stdout.contains("*mir-test") && run.stdout.contains("eu-west-1"),
        "{}",
        run.stdout
    );

    // Credentials from the environment (the first link of the standard chain).
    let home = dir.join("home");
    let no_files = [
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ("HOME", home.to_str().expect("utf-8")),
    ];
    let credentials = [
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_SESSION_TOKEN", "session"),
    ];
    let signed = |args: &[&str]| mir(dir, args).envs(no_files).envs(credentials).run();
    let run = signed(&["dev", "ls", "-o", "json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let r = f.proxy.last("GET", "/v1/devices");
    let auth = r.header("authorization").expect("an authorization header");
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
            && auth.contains("/eu-west-1/execute-api/aws4_request, SignedHeaders=")
            && auth.contains("host;x-amz-date;x-amz-security-token"),
        "{auth}"
    );
    assert_eq!(r.header("x-amz-security-token"), Some("session"));
    assert_eq!(
        r.header("x-amz-date").map(str::len),
        Some("20240102T030405Z".len())
    );
    // A body is signed too.
    let run = signed(&["dev", "update", "weather/default", "--label", "a=b"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let r = f.proxy.last("PATCH", "/v1/devices/weather");
    assert!(
        r.header("authorization")
            .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/")),
        "{r:?}"
    );
    assert_eq!(r.json(), json!({"meta": {"labels": {"a": "b"}}}));

    // Without credentials: a clear error, nothing sent unsigned.
    let before = f.proxy.requests().len();
    let run = mir(dir, &["dev", "ls"])
        .envs(no_files)
        .env("AWS_ACCESS_KEY_ID", "")
        .run();
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("no AWS credentials"), "{}", run.stderr);
    assert_eq!(f.proxy.requests().len(), before);
}

#[test]
fn tools_config_edit_saves_a_valid_edit_and_refuses_a_broken_one() {
    let dir = tempfile::tempdir().expect("dir");
    // GIVEN an editor that adds a context
    let add = editor_script(
        dir.path(),
        "add.sh",
        "printf -- '- name: staging\\n  api: http://127.0.0.1:9999\\n' >> \"$1\"",
    );
    let printed = mir(dir.path(), &["tools", "config", "print"]).run();
    assert!(printed.stdout.contains("contexts"), "{}", printed.stdout);
    let run = mir(dir.path(), &["tools", "config", "edit"])
        .editor(&add)
        .run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let listed = mir(dir.path(), &["ctx"]).run();
    assert!(listed.stdout.contains("staging"), "{}", listed.stdout);
    // WHEN the edit breaks the file THEN nothing is saved and the error says so
    let before = std::fs::read_to_string(dir.path().join("cli.yaml")).expect("saved");
    let breaker = editor_script(dir.path(), "break.sh", "printf 'contexts: [oops' > \"$1\"");
    let run = mir(dir.path(), &["tools", "config", "edit"])
        .editor(&breaker)
        .run();
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("invalid"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cli.yaml")).expect("kept"),
        before
    );
}

/// `mir tlm query --limit 20000` follows the API's pages (at most 10,000 rows each) and
/// prints the newest 20,000 rows, oldest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tlm_query_with_a_limit_over_a_page_follows_the_pages() {
    use mir_shared::telemetry::{FieldValue, TelemetryRecord};
    use std::sync::Arc;
    let f = Fleet::new();
    let start = chrono::Utc::now() - chrono::Duration::minutes(30);
    let t0 = start.timestamp_nanos_opt().unwrap();
    // 20,050 points 50 ms apart: the oldest 50 are left out.
    let records: Vec<TelemetryRecord> = (0..20_050)
        .map(|i| TelemetryRecord {
            device_id: "weather".into(),
            name: "weather".into(),
            namespace: "default".into(),
            measure: Arc::from("schema.v1.Env"),
            time_ns: t0 + i * 50_000_000,
            seq: i as u64,
            tags: vec![],
            values: vec![(Arc::from("temperature"), FieldValue::Int(i))],
        })
        .collect();
    let sink = f.hub.core().ports.telemetry_sink().unwrap();
    for batch in records.chunks(1_000) {
        sink.write(batch).await.unwrap();
    }
    let run = f
        .mir(&[
            "tlm",
            "query",
            "weather",
            "-n",
            "schema.v1.Env",
            "--since",
            "1h",
            "--limit",
            "20000",
            "-o",
            "json",
        ])
        .run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let body: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let temps: Vec<i64> = body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["values"]["temperature"].as_i64().unwrap())
        .collect();
    assert_eq!(temps.len(), 20_000);
    assert!(
        temps.iter().copied().eq(50..20_050),
        "the newest, oldest first"
    );
    assert!(body["nextToken"].is_string(), "older rows remain");
    let queries: Vec<String> = f
        .proxy
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/telemetry/query")
        .map(|r| r.query)
        .collect();
    assert_eq!(queries.len(), 2, "{queries:?}");
    assert!(
        queries.iter().all(|q| q.contains("limit=10000")),
        "{queries:?}"
    );
    assert!(!queries[0].contains("nextToken"), "{queries:?}");
    assert!(queries[1].contains("nextToken="), "{queries:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_to_the_whole_fleet_needs_all_and_all_excludes_targets() {
    let (f, _weather) = Fleet::with_weather_online().await;
    let send = [
        "cmd",
        "send",
        "-n",
        "schema.v1.ActivateHVACCmd",
        "-p",
        "{}",
        "--dry-run",
    ];
    let run = f.mir(&send).run();
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains(
            "no TARGET: name the devices (TARGET, --label, --ids, --namespace), or pass --all to send to every device"
        ),
        "{}",
        run.stderr
    );
    // --all reaches every device: here also one that never connected (so no schema).
    let run = f.mir(&[&send[..], &["--all"]].concat()).run();
    assert_eq!(
        run.stdout,
        "1. power/lab COMMAND_RESPONSE_STATUS_ERROR\nno schema yet: the device has not connected\n2. weather/default COMMAND_RESPONSE_STATUS_VALIDATED\n"
    );
    let sent = f.proxy.last("POST", "/v1/commands").json();
    assert_eq!(sent["allDevices"], json!(true));
    let run = f.mir(&[&send[..], &["weather", "--all"]].concat()).run();
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("--all sends to every device: give it without TARGET"),
        "{}",
        run.stderr
    );
    // The same rule for configuration.
    let run = f
        .mir(&[
            "cfg",
            "send",
            "-n",
            "schema.v1.DataRateProp",
            "-p",
            r#"{"sec": 3}"#,
        ])
        .run();
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("or pass --all"), "{}", run.stderr);
}

#[test]
fn a_context_with_the_hubs_token_reaches_a_hub_bound_beyond_loopback() {
    const TOKEN: &str = "lab-token-0123456789";
    let hub = TestHub::start_embedded_with(cli(), |c| {
        c.bind = "0.0.0.0".parse().unwrap();
        c.access.api_token = Some(TOKEN.into());
    });
    let api = format!("http://127.0.0.1:{}", hub.http_addr().port());
    let dir = tempfile::tempdir().unwrap();
    let add = mir(dir.path(), &["ctx", "add", "lab", "--api", &api, "--use"]).run();
    assert!(add.ok, "{add:?}");
    let refused = mir(dir.path(), &["dev", "ls"]).run();
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert_eq!(
        refused.stderr.trim(),
        "Error: this hub needs Authorization: Bearer <token> (access.apiToken)"
    );
    let add = mir(
        dir.path(),
        &[
            "ctx", "add", "lab", "--api", &api, "--token", TOKEN, "--use",
        ],
    )
    .run();
    assert!(add.ok, "{add:?}");
    let listed = mir(dir.path(), &["dev", "ls"]).run();
    assert!(listed.ok, "{listed:?}");
    let shown = mir(dir.path(), &["ctx"]).run();
    assert!(
        !shown.stdout.contains(TOKEN),
        "the token is never printed: {shown:?}"
    );
    // MIR_API_TOKEN overrides the context's token.
    let wrong = mir(dir.path(), &["dev", "ls"])
        .env("MIR_API_TOKEN", "not-the-token-of-this-hub")
        .run();
    assert_eq!(wrong.code, Some(1), "{wrong:?}");
    assert_eq!(
        wrong.stderr.trim(),
        "Error: the bearer token is not this hub's"
    );
}

// `mir evt watch` on an aws context polls `GET /v1/events`.
#[path = "cli/aws_watch.rs"]
mod aws_watch;
