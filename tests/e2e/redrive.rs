//! `scripts/redrive-failures.sh`, the documented way to redrive the failure queue, run
//! as written against an AWS-compatible endpoint: the AWS CLI (not our code) creates
//! the queue and the function, and a recording proxy shows what the script invoked.
//!
//! The test runs a moto server of its own (`scripts/moto.sh` on a free port): once a
//! Lambda function exists in a moto server, its `/moto-api/data.json`, which other
//! conformance tests read, fails (it asks Docker about the function).

use std::process::Command;

use mir_test_support::RecordingProxy;
use serde_json::{json, Value};

/// A moto server of the test's own, stopped on drop.
struct OwnMoto {
    port: u16,
}

const MOTO_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/moto.sh");

impl OwnMoto {
    fn start() -> OwnMoto {
        // The shared endpoint says moto is installed (scripts/moto.sh start ran).
        std::env::var("MIR_TEST_AWS_ENDPOINT")
            .expect("MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let started = Command::new("bash")
            .args([MOTO_SH, "start"])
            .env("MOTO_PORT", port.to_string())
            .status()
            .expect("bash");
        assert!(started.success(), "scripts/moto.sh start on {port}");
        OwnMoto { port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnMoto {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args([MOTO_SH, "stop"])
            .env("MOTO_PORT", self.port.to_string())
            .status();
    }
}

/// Runs the AWS CLI against `url`; its JSON output.
fn aws(url: &str, args: &[&str]) -> Value {
    let out = Command::new("aws")
        .args([
            "--endpoint-url",
            url,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .expect("the AWS CLI (`aws`) on PATH");
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON from the AWS CLI")
    }
}

fn redrive(url: &str, args: &[&str]) -> (bool, String) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/redrive-failures.sh"
    );
    let out = Command::new("bash")
        .arg(script)
        .args(["--endpoint-url", url])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn queue_depth(url: &str, queue: &str) -> u64 {
    let attrs = aws(
        url,
        &[
            "sqs",
            "get-queue-attributes",
            "--queue-url",
            queue,
            "--attribute-names",
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
        ],
    );
    [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
    ]
    .iter()
    .map(|k| {
        attrs["Attributes"][k]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    })
    .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
async fn the_redrive_script_invokes_each_failed_event_again_and_empties_the_queue() {
    let moto = OwnMoto::start();
    let url = moto.url();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (queue_name, function) = (format!("failed-{id}"), format!("mir-telemetry-{id}"));
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("f.zip");
    let zipped = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], 'w'); z.writestr('bootstrap', '#!/bin/sh\\n'); z.close()",
        ])
        .arg(&zip)
        .status()
        .expect("python3");
    assert!(zipped.success());

    let u = url.as_str();
    let role = aws(
        u,
        &[
            "iam",
            "create-role",
            "--role-name",
            &format!("r-{id}"),
            "--assume-role-policy-document",
            "{}",
        ],
    )["Role"]["Arn"]
        .as_str()
        .unwrap()
        .to_string();
    let fn_arn = aws(
        u,
        &[
            "lambda",
            "create-function",
            "--function-name",
            &function,
            "--runtime",
            "provided.al2023",
            "--role",
            &role,
            "--handler",
            "bootstrap",
            "--zip-file",
            &format!("fileb://{}", zip.display()),
        ],
    )["FunctionArn"]
        .as_str()
        .unwrap()
        .to_string();
    let queue = aws(u, &["sqs", "create-queue", "--queue-name", &queue_name])["QueueUrl"]
        .as_str()
        .unwrap()
        .to_string();

    // What Lambda's on-failure destination puts in the queue (the record's shape, with
    // a rule event as the request payload).
    let events: Vec<Value> = (0..3)
        .map(|i| json!({"payload": "CAE=", "deviceId": format!("d{i}"), "clientId": format!("d{i}"), "receivedAt": 1_700_000_000_000i64 + i}))
        .collect();
    for ev in &events {
        let record = json!({
            "version": "1.0",
            "timestamp": "2026-12-01T12:00:00.000Z",
            "requestContext": {"requestId": uuid::Uuid::new_v4().to_string(), "functionArn": format!("{fn_arn}:$LATEST"), "condition": "RetriesExhausted", "approximateInvokeCount": 3},
            "requestPayload": ev,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorType": "HandlerError", "errorMessage": "store unavailable: throttled"}
        });
        aws(
            u,
            &[
                "sqs",
                "send-message",
                "--queue-url",
                &queue,
                "--message-body",
                &record.to_string(),
            ],
        );
    }
    assert_eq!(queue_depth(u, &queue), 3);

    let proxy = RecordingProxy::start(
        &tokio::runtime::Handle::current(),
        url.trim_start_matches("http://")
            .parse()
            .expect("endpoint host:port"),
    );
    let through = proxy.url();
    let q = queue.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || redrive(&through, &["--dry-run", &q]))
        .await
        .unwrap();
    assert!(ok && out.contains("3 to redrive, 0 failed"), "{out}");
    let invoked = |proxy: &RecordingProxy| {
        proxy
            .requests()
            .into_iter()
            .filter(|r| {
                // The ARN is in the path, percent-encoded.
                r.method == "POST"
                    && r.path.starts_with("/2015-03-31/functions/")
                    && r.path.ends_with("/invocations")
                    && r.path.contains(&function)
            })
            .collect::<Vec<_>>()
    };
    assert!(invoked(&proxy).is_empty(), "a dry run invokes nothing");

    let (through, q) = (proxy.url(), queue.clone());
    let (ok, out) = tokio::task::spawn_blocking(move || redrive(&through, &[&q]))
        .await
        .unwrap();
    assert!(ok && out.contains("3 redriven, 0 failed"), "{out}");
    let calls = invoked(&proxy);
    assert_eq!(
        calls.len(),
        3,
        "one asynchronous invocation per failed event"
    );
    assert!(calls
        .iter()
        .all(|r| r.header("x-amz-invocation-type") == Some("Event")));
    let mut sent: Vec<Value> = calls.iter().map(|r| r.json()).collect();
    sent.sort_by_key(|v| v["receivedAt"].as_i64());
    assert_eq!(sent, events, "each with its original event");
    assert_eq!(queue_depth(u, &queue), 0, "and the queue is empty");
}
