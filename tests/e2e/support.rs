//! Test support for the end-to-end tests: a `mir local` process on ephemeral ports,
//! the real `mir` CLI, SDK devices with scripted behaviour, and a raw MQTT client.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::sync::watch;

use mir_device_sdk::{LogLevel, Mir};
use mir_proto::examples::weather::{
    ActivateHvacCmd, ActivateHvacResp, DataRateProp, DataRateStatus, HvacStatus, DESCRIPTOR_SET,
};

pub const MIR: &str = env!("CARGO_BIN_EXE_mir");

/// A `mir local` process. Killed on drop.
pub struct LocalHub {
    child: Child,
    pub dir: tempfile::TempDir,
    pub endpoints: Value,
}

impl LocalHub {
    pub fn start() -> LocalHub {
        let dir = tempfile::tempdir().unwrap();
        // MIR_E2E_PROFILE=localstack runs the same tests on the AWS adapters, against the
        // endpoint in MIR_TEST_AWS_ENDPOINT, each hub with tables of its own.
        let mut profile: Vec<String> = Vec::new();
        if std::env::var("MIR_E2E_PROFILE").as_deref() == Ok("localstack") {
            let endpoint = std::env::var("MIR_TEST_AWS_ENDPOINT")
                .unwrap_or_else(|_| "http://127.0.0.1:4566".into());
            let prefix = format!("e2e-{}", uuid::Uuid::new_v4().simple());
            profile = [
                "--profile",
                "localstack",
                "--aws-endpoint",
                &endpoint,
                "--aws-table-prefix",
                &prefix,
            ]
            .map(String::from)
            .to_vec();
        }
        let child = Command::new(MIR)
            .args([
                "local",
                "--http-port",
                "0",
                "--mqtt-port",
                "0",
                "--mqtts-port",
                "0",
                "--log-level",
                "warn",
            ])
            .args(&profile)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--stale-after-secs", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let file = dir.path().join("endpoints.json");
        let deadline = Instant::now() + Duration::from_secs(30);
        let endpoints = loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    break v;
                }
            }
            assert!(Instant::now() < deadline, "mir local did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        LocalHub {
            child,
            dir,
            endpoints,
        }
    }

    pub fn api(&self) -> String {
        self.endpoints["http"].as_str().unwrap().to_string()
    }
    pub fn mqtt(&self) -> String {
        self.endpoints["mqtt"].as_str().unwrap().to_string()
    }
    pub fn mqtts(&self) -> String {
        self.endpoints["mqtts"].as_str().unwrap().to_string()
    }
    pub fn mqtt_addr(&self) -> (String, u16) {
        host_port(&self.mqtt())
    }
    pub fn mqtts_addr(&self) -> (String, u16) {
        host_port(&self.mqtts())
    }
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.endpoints["caCert"].as_str().unwrap()).unwrap()
    }
    pub fn dead_letters(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dead-letters.jsonl")).unwrap_or_default()
    }

    /// Runs the real CLI against this hub.
    pub fn mir(&self, args: &[&str]) -> CliOutput {
        self.mir_stdin(args, None)
    }

    pub fn mir_stdin(&self, args: &[&str], stdin: Option<&str>) -> CliOutput {
        run_cli(&self.api(), args, stdin, &[])
    }

    /// `mir ... -o json`, parsed; panics with the output when the command failed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.mir(&all);
        assert!(
            out.ok,
            "mir {args:?} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", out.stdout))
    }

    pub fn twin(&self, target: &str) -> Value {
        let v = self.json(&["device", "ls", target]);
        match v {
            Value::Array(mut a) if a.len() == 1 => a.remove(0),
            other => other,
        }
    }
}

impl Drop for LocalHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn host_port(url: &str) -> (String, u16) {
    let rest = url.split("://").nth(1).unwrap();
    let (h, p) = rest.rsplit_once(':').unwrap();
    (h.to_string(), p.parse().unwrap())
}

#[derive(Debug)]
pub struct CliOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn run_cli(api: &str, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> CliOutput {
    run_cli_in(None, api, args, stdin, env)
}

/// [`run_cli`] in a working directory (relative paths in the arguments land there).
pub fn run_cli_in(
    cwd: Option<&Path>,
    api: &str,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> CliOutput {
    use std::io::Write;
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(MIR);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.args(args)
        .args(["--api", api])
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
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
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    CliOutput {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// How a test device answers `ActivateHVACCmd`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    Succeed,
    Fail,
    /// Answers after this long.
    Slow(Duration),
}

/// An SDK device of the weather schema. Stops on drop.
pub struct TestDevice {
    pub mir: Mir,
    stop: watch::Sender<bool>,
    running: Option<mir_device_sdk::Running>,
    /// Every desired DataRateProp the device's handler saw.
    pub desired_seen: Arc<Mutex<Vec<i32>>>,
}

pub struct DeviceOptions {
    pub target: String,
    pub credentials: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl TestDevice {
    pub async fn start(hub: &LocalHub, id: &str, behaviour: Behaviour) -> TestDevice {
        Self::start_with(
            DeviceOptions {
                target: hub.mqtt(),
                credentials: None,
            },
            id,
            behaviour,
        )
        .await
    }

    pub async fn start_with(opts: DeviceOptions, id: &str, behaviour: Behaviour) -> TestDevice {
        let mut b = Mir::builder()
            .device_id(id)
            .target(opts.target)
            .schema(DESCRIPTOR_SET)
            .log_level(LogLevel::Warn)
            .telemetry_linger(Duration::from_millis(20));
        if let Some((cert, key, ca)) = opts.credentials {
            b = b.tls_files(cert, key, ca);
        }
        let mir = b.build().unwrap();
        let m = mir.clone();
        mir.handle_command(move |cmd: ActivateHvacCmd| {
            let m = m.clone();
            async move {
                let _ = m.send_properties(&HvacStatus {
                    online: cmd.duration_sec > 0,
                });
                match behaviour {
                    Behaviour::Succeed => Ok(ActivateHvacResp { success: true }),
                    Behaviour::Fail => Err("hvac jammed".to_string()),
                    Behaviour::Slow(d) => {
                        tokio::time::sleep(d).await;
                        Ok(ActivateHvacResp { success: true })
                    }
                }
            }
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let m = mir.clone();
        let s = seen.clone();
        mir.handle_properties(move |p: DataRateProp| {
            s.lock().unwrap().push(p.sec);
            let _ = m.send_properties(&DataRateStatus { sec: p.sec });
        });
        let (stop, mut rx) = watch::channel(false);
        let running = mir
            .launch(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
            .unwrap();
        mir.wait_connected(Duration::from_secs(10)).await.unwrap();
        TestDevice {
            mir,
            stop,
            running: Some(running),
            desired_seen: seen,
        }
    }

    /// Disconnects cleanly and waits for the SDK to finish.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(r) = self.running.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), r.wait()).await;
        }
    }
}

impl Drop for TestDevice {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Polls `check` (a blocking CLI call is fine) until it returns true or `secs` pass.
pub async fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// A shell script usable as `$EDITOR`: runs `body` with the file as `$1`.
pub fn editor_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

pub fn with_editor(hub: &LocalHub, editor: &Path, args: &[&str]) -> CliOutput {
    let editor = editor.to_str().unwrap();
    run_cli(
        &hub.api(),
        args,
        None,
        &[("EDITOR", editor), ("VISUAL", "")],
    )
}
