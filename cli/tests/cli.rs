//! The real `mir` binary against a test double of the HTTP API: an in-test axum server
//! answering canned bodies of the shared API types and recording the requests.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use mir_shared::api::{
    Catalog, CommandResult, CommandResults, ConfigResult, ConfigResults, ConfigStatus,
    DeviceCatalog, DeviceList, ErrorBody, MessageInfo, SendCommand, SendConfig,
};
use mir_shared::domain::{CommandStatus, Twin};

const RUN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    query: String,
    body: String,
    headers: axum::http::HeaderMap,
}

type Log = Arc<Mutex<Vec<Recorded>>>;

fn twin(id: &str, ns: &str, online: bool) -> Twin {
    let mut t = Twin::default();
    t.spec.device_id = id.into();
    t.meta.name = id.into();
    t.meta.namespace = ns.into();
    t.meta.labels.insert("type".into(), "sensor".into());
    t.status.online = online;
    t.status.last_heartbeat = online.then(|| chrono::Utc::now() - chrono::Duration::seconds(3));
    t
}

fn devices() -> Vec<Twin> {
    vec![
        twin("weather", "default", true),
        twin("power", "lab", false),
    ]
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(ErrorBody { error: msg.into() })).into_response()
}

/// The API double: enough of each route for the CLI's requests.
async fn api(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let body = String::from_utf8_lossy(&body).into_owned();
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    if let Ok(mut l) = log.lock() {
        l.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            body: body.clone(),
            headers,
        });
    }
    match (method.as_str(), path.as_str()) {
        ("GET", "/v1/devices") => {
            let all = devices();
            let selected = if query.contains("names=weather") || query.contains("ids=weather") {
                vec![all[0].clone()]
            } else {
                all
            };
            Json(DeviceList { devices: selected }).into_response()
        }
        ("PATCH", p) if p.starts_with("/v1/devices/") => Json(devices()[0].clone()).into_response(),
        ("POST", p) if p.ends_with("/schema/refresh") => StatusCode::ACCEPTED.into_response(),
        ("GET", "/v1/commands") => Json(Catalog {
            devices: vec![DeviceCatalog {
                device_id: "weather".into(),
                name: "weather".into(),
                namespace: "default".into(),
                messages: vec![MessageInfo {
                    name: "schema.v1.ActivateHVACCmd".into(),
                    template: json!({"durationSec": 0}),
                    desired: None,
                }],
                error: None,
            }],
        })
        .into_response(),
        ("POST", "/v1/commands") => {
            let Ok(req) = serde_json::from_str::<SendCommand>(&body) else {
                return error(StatusCode::BAD_REQUEST, "invalid JSON body");
            };
            if req.name != "schema.v1.ActivateHVACCmd" {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "unknown command {}; known: schema.v1.ActivateHVACCmd",
                        req.name
                    ),
                );
            }
            let mut results = vec![CommandResult {
                device_id: "weather".into(),
                name: "weather".into(),
                namespace: "default".into(),
                command_id: Some("c-1".into()),
                status: if req.dry_run {
                    CommandStatus::Validated
                } else {
                    CommandStatus::Success
                },
                response_name: (!req.dry_run).then(|| "schema.v1.ActivateHVACResp".into()),
                response: (!req.dry_run).then(|| json!({"success": true})),
                error: None,
            }];
            if req.targets.namespaces.iter().any(|n| n == "lab") {
                results.push(CommandResult {
                    device_id: "power".into(),
                    name: "power".into(),
                    namespace: "lab".into(),
                    command_id: Some("c-2".into()),
                    status: CommandStatus::Timeout,
                    response_name: None,
                    response: None,
                    error: Some("no answer within 10s".into()),
                });
            }
            Json(CommandResults { results }).into_response()
        }
        ("GET", "/v1/config") => Json(Catalog {
            devices: vec![DeviceCatalog {
                device_id: "weather".into(),
                name: "weather".into(),
                namespace: "default".into(),
                messages: vec![MessageInfo {
                    name: "schema.v1.DataRateProp".into(),
                    template: json!({"sec": 0}),
                    desired: Some(json!({"sec": 5})),
                }],
                error: None,
            }],
        })
        .into_response(),
        ("POST", "/v1/config") => {
            let Ok(req) = serde_json::from_str::<SendConfig>(&body) else {
                return error(StatusCode::BAD_REQUEST, "invalid JSON body");
            };
            Json(ConfigResults {
                results: vec![ConfigResult {
                    device_id: "weather".into(),
                    name: "weather".into(),
                    namespace: "default".into(),
                    status: ConfigStatus::Sent,
                    desired: Some(req.payload),
                    error: None,
                }],
            })
            .into_response()
        }
        _ => error(StatusCode::NOT_FOUND, &format!("no route {method} {path}")),
    }
}

struct Server {
    addr: SocketAddr,
    log: Log,
}

impl Server {
    fn start() -> Self {
        let log: Log = Arc::default();
        let app = axum::Router::new().fallback(api).with_state(log.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                tx.send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                axum::serve(listener, app).await.expect("serve");
            });
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server started");
        Self { addr, log }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.log.lock().expect("log").clone()
    }

    fn last(&self, method: &str, path: &str) -> Recorded {
        self.requests()
            .into_iter()
            .rev()
            .find(|r| r.method.as_str() == method && r.path == path)
            .unwrap_or_else(|| panic!("no {method} {path} in {:?}", self.requests()))
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `mir` with a private config file, `stdin` (or none), extra environment, and a
/// deadline.
fn mir(dir: &std::path::Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mir"));
    cmd.args(args)
        .env("MIR_CONFIG", dir.join("cli.yaml"))
        .env_remove("MIR_API")
        .env_remove("MIR_CONTEXT")
        .env_remove("VISUAL")
        .env_remove("EDITOR")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn mir");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).ok();
        s
    });
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mir {args:?} did not finish within {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: out.join().expect("stdout"),
        stderr: err.join().expect("stderr"),
    }
}

fn body(r: &Recorded) -> Value {
    serde_json::from_str(&r.body).expect("JSON body")
}

#[test]
fn device_ls_json_parses_back_to_the_twins() {
    let s = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let run = mir(
        dir.path(),
        &["--api", &s.url(), "device", "ls", "-o", "json"],
        None,
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let twins: Vec<Twin> = serde_json::from_str(&run.stdout).expect("a JSON list of twins");
    assert!(twins[0].status.last_heartbeat.is_some());
    let strip = |mut t: Twin| {
        t.status.last_heartbeat = None;
        t
    };
    assert_eq!(
        twins.into_iter().map(strip).collect::<Vec<_>>(),
        devices().into_iter().map(strip).collect::<Vec<_>>()
    );

    let run = mir(
        dir.path(),
        &[
            "--api",
            &s.url(),
            "dev",
            "list",
            "weather/default",
            "-l",
            "type=sensor",
        ],
        None,
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.starts_with("NAME/NAMESPACE"), "{}", run.stdout);
    assert!(
        run.stdout.contains("weather/default") && run.stdout.contains("s ago"),
        "{}",
        run.stdout
    );
    let q = s.last("GET", "/v1/devices").query;
    assert!(
        q.contains("names=weather%2Fdefault") && q.contains("labels=type%3Dsensor"),
        "{q}"
    );

    let run = mir(
        dir.path(),
        &["--api", &s.url(), "dev", "ls", "-o", "yaml"],
        None,
        &[],
    );
    assert_eq!(
        run.stdout.matches("apiVersion: mir/v1alpha").count(),
        2,
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("\n---\n"), "{}", run.stdout);
}

#[test]
fn cmd_send_with_a_payload_prints_mir_style_results() {
    let s = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let run = mir(
        dir.path(),
        &[
            "--api",
            &s.url(),
            "cmd",
            "send",
            "weather/default",
            "-n",
            "schema.v1.ActivateHVACCmd",
            "-p",
            r#"{"durationSec": 5}"#,
        ],
        None,
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "1. weather/default COMMAND_RESPONSE_STATUS_SUCCESS\nschema.v1.ActivateHVACResp\n{\n  \"success\": true\n}\n"
    );
    let req: SendCommand =
        serde_json::from_value(body(&s.last("POST", "/v1/commands"))).expect("SendCommand");
    assert_eq!(req.payload, json!({"durationSec": 5}));
    assert_eq!(req.targets.names[0].name, "weather");
    assert!(!req.dry_run);
}

#[test]
fn a_device_that_does_not_succeed_makes_the_exit_code_non_zero() {
    let s = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let run = mir(
        dir.path(),
        &[
            "--api",
            &s.url(),
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
        ],
        None,
        &[],
    );
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("2. power/lab COMMAND_RESPONSE_STATUS_TIMEOUT\nno answer within 10s\n"),
        "{}",
        run.stdout
    );
    let req = body(&s.last("POST", "/v1/commands"));
    assert_eq!(req["timeoutMs"], 2000);
    // --dry-run: VALIDATED is a success.
    let run = mir(
        dir.path(),
        &[
            "--api",
            &s.url(),
            "cmd",
            "send",
            "weather",
            "-n",
            "schema.v1.ActivateHVACCmd",
            "--dry-run",
        ],
        None,
        &[],
    );
    assert_eq!(run.code, Some(0), "{} {}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout,
        "1. weather/default COMMAND_RESPONSE_STATUS_VALIDATED\n"
    );
    assert_eq!(body(&s.last("POST", "/v1/commands"))["payload"], json!({}));
}

#[test]
fn the_payload_can_come_from_stdin() {
    let s = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let run = mir(
        dir.path(),
        &[
            "--api",
            &s.url(),
            "cmd",
            "send",
            "weather/default",
            "-n",
            "schema.v1.ActivateHVACCmd",
        ],
        Some("{\"durationSec\": 7}\n"),
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        body(&s.last("POST", "/v1/commands"))["payload"],
        json!({"durationSec": 7})
    );
    let run = mir(
        dir.path(),
        &[
            "--api",
            &s.url(),
            "cmd",
            "send",
            "weather/default",
            "-n",
            "schema.v1.ActivateHVACCmd",
        ],
        Some("{not json"),
        &[],
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("the payload from stdin is not valid JSON"),
        "{}",
        run.stderr
    );
}

#[cfg(unix)]
#[test]
fn edit_opens_the_editor_on_the_template_then_sends() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let seen = dir.path().join("seen.json");
    let script = dir.path().join("editor.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncp \"$1\" '{}'\nprintf '{{\"durationSec\": 9}}' > \"$1\"\n",
            seen.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let editor = script.to_str().expect("utf-8 path");
    let run = mir(
        dir.path(),
        &[
            "--api",
            &s.url(),
            "cmd",
            "send",
            "weather/default",
            "-n",
            "schema.v1.ActivateHVACCmd",
            "-e",
        ],
        None,
        &[("EDITOR", editor)],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let template: Value =
        serde_json::from_str(&std::fs::read_to_string(&seen).expect("seen")).expect("json");
    assert_eq!(template, json!({"durationSec": 0}));
    assert_eq!(
        body(&s.last("POST", "/v1/commands"))["payload"],
        json!({"durationSec": 9})
    );
    assert!(
        run.stdout
            .starts_with("1. weather/default COMMAND_RESPONSE_STATUS_SUCCESS"),
        "{}",
        run.stdout
    );

    // Config: the edit starts from the current desired value.
    let run = mir(
        dir.path(),
        &[
            "--api",
            &s.url(),
            "cfg",
            "send",
            "weather/default",
            "-n",
            "schema.v1.DataRateProp",
            "-e",
        ],
        None,
        &[("EDITOR", editor)],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let start: Value =
        serde_json::from_str(&std::fs::read_to_string(&seen).expect("seen")).expect("json");
    assert_eq!(start, json!({"sec": 5}));
    assert_eq!(
        run.stdout,
        "1. weather/default SENT\nschema.v1.DataRateProp\n{\n  \"durationSec\": 9\n}\n"
    );
}

#[test]
fn cfg_send_current_prints_the_desired_value_and_template_prints_the_template() {
    let s = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let run = mir(
        dir.path(),
        &[
            "--api",
            &s.url(),
            "cfg",
            "send",
            "weather/default",
            "-n",
            "schema.v1.DataRateProp",
            "-c",
        ],
        None,
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "{\n  \"sec\": 5\n}\n");
    let q = s.last("GET", "/v1/config").query;
    assert!(q.contains("name=schema.v1.DataRateProp"), "{q}");
    assert!(
        !s.requests().iter().any(|r| r.method == Method::POST),
        "-c must not send"
    );

    let run = mir(
        dir.path(),
        &[
            "--api",
            &s.url(),
            "cmd",
            "send",
            "weather",
            "-n",
            "schema.v1.ActivateHVACCmd",
            "-j",
        ],
        None,
        &[],
    );
    assert_eq!(run.stdout, "{\n  \"durationSec\": 0\n}\n");

    let run = mir(
        dir.path(),
        &["--api", &s.url(), "cmd", "send", "weather", "-r"],
        None,
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "1. weather/default\nschema.v1.ActivateHVACCmd{}\n"
    );
    s.last("POST", "/v1/devices/weather/schema/refresh");
}

#[test]
fn api_errors_are_shown_as_is_with_a_non_zero_exit() {
    let s = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let run = mir(
        dir.path(),
        &[
            "--api",
            &s.url(),
            "cmd",
            "send",
            "weather",
            "-n",
            "x.Nope",
            "-p",
            "{}",
        ],
        None,
        &[],
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr.trim(),
        "Error: unknown command x.Nope; known: schema.v1.ActivateHVACCmd"
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
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
    let run = mir(dir.path(), &["dev", "ls"], None, &[("MIR_API", &url)]);
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
    let s = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let run = mir(
        dir.path(),
        &["ctx", "add", "test", "--api", &s.url()],
        None,
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let run = mir(dir.path(), &["ctx", "test"], None, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let run = mir(dir.path(), &["ctx"], None, &[]);
    assert!(
        run.stdout.contains("*test") && run.stdout.contains(" local\n"),
        "{}",
        run.stdout
    );
    let run = mir(dir.path(), &["tools", "config", "print"], None, &[]);
    assert!(
        run.stdout.contains("currentContext: test"),
        "{}",
        run.stdout
    );

    let run = mir(
        dir.path(),
        &[
            "dev",
            "update",
            "weather/default",
            "--label",
            "floor=2",
            "--remove-label",
            "old",
        ],
        None,
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "weather/default updated\n");
    let patch = body(&s.last("PATCH", "/v1/devices/weather"));
    assert_eq!(
        patch,
        json!({"meta": {"labels": {"floor": "2", "old": null}}})
    );

    let run = mir(
        dir.path(),
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
        None,
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let run = mir(dir.path(), &["dev", "ls"], None, &[]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("without a region"), "{}", run.stderr);
}

#[test]
fn ctx_import_reads_cdk_outputs_and_aws_contexts_sign_requests_with_sigv4() {
    let s = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let outputs = dir.path().join("cdk-outputs.json");
    std::fs::write(
        &outputs,
        json!({
            "mir-test-api": {"ApiUrl": s.url(), "Region": "eu-west-1"},
            "mir-test-functions": {"IotDataEndpoint": "abc-ats.iot.eu-west-1.amazonaws.com"},
            "mir-test-data": {"TelemetrySink": "timestream"}
        })
        .to_string(),
    )
    .expect("write");
    let run = mir(
        dir.path(),
        &[
            "ctx",
            "import",
            "--outputs",
            outputs.to_str().expect("utf-8"),
        ],
        None,
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains("context mir-test imported"),
        "{}",
        run.stdout
    );
    let run = mir(dir.path(), &["ctx"], None, &[]);
    assert!(
        run.stdout.contains("*mir-test") && run.stdout.contains("eu-west-1"),
        "{}",
        run.stdout
    );

    // Credentials from the environment (the first link of the standard chain).
    let home = dir.path().join("home");
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_SESSION_TOKEN", "session"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ("HOME", home.to_str().expect("utf-8")),
    ];
    let run = mir(dir.path(), &["dev", "ls", "-o", "json"], None, &env);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let r = s.last("GET", "/v1/devices");
    let auth = r.headers["authorization"].to_str().expect("ascii");
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
            && auth.contains("/eu-west-1/execute-api/aws4_request, SignedHeaders=")
            && auth.contains("host;x-amz-date;x-amz-security-token"),
        "{auth}"
    );
    assert_eq!(r.headers["x-amz-security-token"], "session");
    assert_eq!(r.headers["x-amz-date"].len(), "20240102T030405Z".len());
    // A body is signed too.
    let run = mir(
        dir.path(),
        &["dev", "update", "weather/default", "--label", "a=b"],
        None,
        &env,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let r = s.last("PATCH", "/v1/devices/weather");
    assert!(r.headers.contains_key("authorization"));

    // Without credentials: a clear error, nothing sent unsigned.
    let before = s.requests().len();
    let env = [
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ("HOME", home.to_str().expect("utf-8")),
    ];
    let run = mir(dir.path(), &["dev", "ls"], None, &env);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("no AWS credentials"), "{}", run.stderr);
    assert_eq!(s.requests().len(), before);
}

#[test]
fn tools_config_edit_saves_a_valid_edit_and_refuses_a_broken_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let script = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path.to_str().expect("utf-8").to_string()
    };
    // GIVEN an editor that adds a context
    let add = script(
        "add.sh",
        "printf -- '- name: staging\\n  api: http://127.0.0.1:9999\\n' >> \"$1\"",
    );
    let printed = mir(dir.path(), &["tools", "config", "print"], None, &[]);
    assert!(printed.stdout.contains("contexts"), "{}", printed.stdout);
    let run = mir(
        dir.path(),
        &["tools", "config", "edit"],
        None,
        &[("EDITOR", &add)],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let listed = mir(dir.path(), &["ctx"], None, &[]);
    assert!(listed.stdout.contains("staging"), "{}", listed.stdout);
    // WHEN the edit breaks the file THEN nothing is saved and the error says so
    let before = std::fs::read_to_string(dir.path().join("cli.yaml")).expect("saved");
    let breaker = script("break.sh", "printf 'contexts: [oops' > \"$1\"");
    let run = mir(
        dir.path(),
        &["tools", "config", "edit"],
        None,
        &[("EDITOR", &breaker)],
    );
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("invalid"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cli.yaml")).expect("kept"),
        before
    );
}
