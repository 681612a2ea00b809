//! The hub in-process: [`mir_hub::Hub::start`] on port 0 over a temporary data dir, on a
//! tokio runtime of its own (so that a test blocking on a CLI call never holds it up,
//! and sync tests can use it too), and the real CLI pointed at it.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use serde_json::Value;
use tokio::sync::oneshot;

use mir_hub::{config::ChaosConfig, core::Core, Endpoints, Hub, HubConfig, Profile};

use crate::{blocking, Cli, CliOutput, Invocation, RecordingProxy};

/// How long a hub may take to start (the localstack profile creates its tables).
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a connected device may take to be online with its schema on the platform.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// How long a hub may take to stop before its runtime is dropped anyway.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// The chaos of a test hub, from `MIR_E2E_CHAOS`: unset, on with a random seed; a
/// number, on with that seed (to replay a failing run); `off`, off. The seed is printed
/// on stderr, which the test harness shows for a failing test.
pub fn chaos_from_env() -> ChaosConfig {
    let seed = match std::env::var("MIR_E2E_CHAOS").as_deref() {
        Ok("off") => return ChaosConfig::default(),
        Ok(n) if !n.is_empty() => n
            .parse()
            .unwrap_or_else(|_| panic!("MIR_E2E_CHAOS={n:?}: a seed (u64) or off")),
        _ => rand_seed(),
    };
    eprintln!("test hub: chaos on, seed {seed} (replay with MIR_E2E_CHAOS={seed})");
    ChaosConfig {
        enabled: true,
        seed: Some(seed),
        ..ChaosConfig::default()
    }
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(uuid::Uuid::new_v4().as_u128());
    h.finish()
}

/// A hub for one test, stopped on drop.
pub struct TestHub {
    endpoints: Endpoints,
    http_addr: SocketAddr,
    mqtt_addr: SocketAddr,
    mqtts_addr: SocketAddr,
    core: Arc<Core>,
    cli: Cli,
    hub: Option<Hub>,
    shutdown: Option<oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    dir: tempfile::TempDir,
    /// The table prefix on the AWS profiles.
    aws_prefix: Option<String>,
}

impl TestHub {
    /// A hub with the stores `MIR_E2E_PROFILE` names: unset (or `local`), the embedded
    /// database; `localstack`, the AWS adapters at `MIR_TEST_AWS_ENDPOINT` (default
    /// `http://127.0.0.1:4566`) with tables of a random prefix.
    pub fn start(cli: Cli) -> TestHub {
        let dir = tempfile::tempdir().expect("a temporary data dir");
        let mut config = Self::config(dir.path());
        match std::env::var("MIR_E2E_PROFILE").as_deref() {
            Err(_) | Ok("" | "local") => {}
            Ok("localstack") => {
                config.profile = Profile::Localstack;
                config.aws_endpoint = std::env::var("MIR_TEST_AWS_ENDPOINT")
                    .unwrap_or_else(|_| "http://127.0.0.1:4566".into());
                config.aws_table_prefix = format!("e2e-{}", uuid::Uuid::new_v4().simple());
            }
            Ok(other) => panic!("MIR_E2E_PROFILE={other:?}: local or localstack"),
        }
        Self::start_with(cli, config, dir)
    }

    /// A hub on the AWS adapters at `MIR_TEST_AWS_ENDPOINT` (moto's server), with tables
    /// `<prefix>-twins`, ... of a random prefix ([`TestHub::aws_table`]), whatever
    /// `MIR_E2E_PROFILE` says. Panics without the endpoint: such tests are `#[ignore]`d.
    pub fn start_aws(cli: Cli) -> TestHub {
        let endpoint = std::env::var("MIR_TEST_AWS_ENDPOINT")
            .expect("MIR_TEST_AWS_ENDPOINT: an AWS-compatible endpoint (scripts/moto.sh start)");
        let dir = tempfile::tempdir().expect("a temporary data dir");
        let mut config = Self::config(dir.path());
        config.profile = Profile::Localstack;
        config.aws_endpoint = endpoint;
        config.aws_table_prefix = format!("e2e-{}", uuid::Uuid::new_v4().simple());
        Self::start_with(cli, config, dir)
    }

    /// The name of the hub's table `name` (`twins`, `events`, ...) on the AWS profiles.
    pub fn aws_table(&self, name: &str) -> Option<String> {
        self.aws_prefix.as_ref().map(|p| format!("{p}-{name}"))
    }

    /// A hub over a temporary embedded database, whatever `MIR_E2E_PROFILE` says.
    pub fn start_embedded(cli: Cli) -> TestHub {
        let dir = tempfile::tempdir().expect("a temporary data dir");
        let config = Self::config(dir.path());
        Self::start_with(cli, config, dir)
    }

    /// [`TestHub::start_embedded`] with `edit` applied to its configuration first.
    pub fn start_embedded_with(cli: Cli, edit: impl FnOnce(&mut HubConfig)) -> TestHub {
        let dir = tempfile::tempdir().expect("a temporary data dir");
        let mut config = Self::config(dir.path());
        edit(&mut config);
        Self::start_with(cli, config, dir)
    }

    /// The test configuration: loopback, every port 0, `data_dir`, warnings only, a
    /// device offline after 60 s without heartbeat.
    /// The test configuration: loopback, every port 0, `data_dir`, warnings only, and
    /// chaos on (see [`chaos_from_env`]).
    fn config(data_dir: &Path) -> HubConfig {
        HubConfig {
            data_dir: data_dir.to_path_buf(),
            mqtt_port: 0,
            mqtts_port: 0,
            http_port: 0,
            log_level: "warn".into(),
            stale_after_secs: 60,
            chaos: chaos_from_env(),
            ..HubConfig::default()
        }
    }

    fn start_with(cli: Cli, config: HubConfig, dir: tempfile::TempDir) -> TestHub {
        let aws_prefix =
            (config.profile != Profile::Local).then(|| config.aws_table_prefix.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-hub")
            .enable_all()
            .build()
            .expect("the hub's runtime");
        let (shutdown, stop) = oneshot::channel::<()>();
        let (started_tx, started) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let started = Hub::start(config, async move {
                let _ = stop.await;
            })
            .await;
            let _ = started_tx.send(started);
        });
        let hub = blocking(|| started.recv_timeout(START_DEADLINE))
            .expect("the hub did not start in time")
            .unwrap_or_else(|e| panic!("the hub did not start: {e}"));
        TestHub {
            endpoints: hub.endpoints.clone(),
            http_addr: hub.http_addr,
            mqtt_addr: hub.mqtt_addr,
            mqtts_addr: hub.mqtts_addr,
            core: hub.core.clone(),
            cli,
            hub: Some(hub),
            shutdown: Some(shutdown),
            runtime: Some(runtime),
            dir,
            aws_prefix,
        }
    }

    /// The HTTP API's base URL.
    pub fn api(&self) -> String {
        self.endpoints.http.clone()
    }
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }
    /// `mqtt://127.0.0.1:PORT`.
    pub fn mqtt(&self) -> String {
        self.endpoints.mqtt.clone()
    }
    /// `mqtts://127.0.0.1:PORT` (mutual TLS).
    pub fn mqtts(&self) -> String {
        self.endpoints.mqtts.clone()
    }
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }
    pub fn mqtts_addr(&self) -> SocketAddr {
        self.mqtts_addr
    }
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }
    /// The rules emulation and the ports the handlers run on.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Waits until the platform has device `id` online and knows its schema: with
    /// invocations delivered in any order (and chaos), a connected SDK device is not yet
    /// a ready one.
    pub async fn wait_ready(&self, id: &str) {
        let core = self.core.clone();
        let device = id.to_string();
        let runtime = self.runtime.as_ref().expect("the hub's runtime");
        let ready = runtime.spawn(async move {
            let Ok(twins) = core.ports.twins() else {
                return false;
            };
            let until = tokio::time::Instant::now() + READY_DEADLINE;
            loop {
                if let Ok(Some(t)) = twins.get(&device).await {
                    let st = &t.value.status;
                    if st.online && !st.schema.package_names.is_empty() {
                        return true;
                    }
                }
                if tokio::time::Instant::now() > until {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        assert!(
            ready.await.unwrap_or(false),
            "device {id} was not online with its schema within {READY_DEADLINE:?}"
        );
    }
    /// The data dir (database, local CA, dead letters), deleted on drop.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
    /// The local CA's certificate (PEM).
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(&self.endpoints.ca_cert).expect("the hub's CA certificate")
    }
    /// The dead-letter file's lines (empty when none was written).
    pub fn dead_letters(&self) -> String {
        std::fs::read_to_string(self.core.dead_letters.path()).unwrap_or_default()
    }

    /// A [`RecordingProxy`] in front of this hub's HTTP API.
    pub fn recording_proxy(&self) -> RecordingProxy {
        let runtime = self.runtime.as_ref().expect("the hub's runtime");
        RecordingProxy::start(runtime.handle(), self.http_addr)
    }

    /// The CLI this hub was started with.
    pub fn cli(&self) -> &Cli {
        &self.cli
    }

    /// `mir ARGS --api <this hub>`, to set up further.
    pub fn cmd(&self, args: &[&str]) -> Invocation {
        self.cli.cmd(args).api(&self.endpoints.http)
    }

    /// Runs `mir ARGS` against this hub.
    pub fn mir(&self, args: &[&str]) -> CliOutput {
        self.cmd(args).run()
    }

    /// Runs `mir ARGS` against this hub with `stdin`.
    pub fn mir_stdin(&self, args: &[&str], stdin: &str) -> CliOutput {
        self.cmd(args).stdin(stdin).run()
    }

    /// Runs `mir ARGS` against this hub with `$EDITOR` set to `editor`.
    pub fn with_editor(&self, editor: &Path, args: &[&str]) -> CliOutput {
        self.cmd(args).editor(editor).run()
    }

    /// `mir ARGS -o json`, parsed; panics with the output when the command failed.
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

    /// The twin `mir device ls TARGET -o json` prints.
    pub fn twin(&self, target: &str) -> Value {
        match self.json(&["device", "ls", target]) {
            Value::Array(mut a) if a.len() == 1 => a.remove(0),
            other => other,
        }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let (Some(runtime), Some(hub)) = (self.runtime.take(), self.hub.take()) {
            let (stopped_tx, stopped) = std::sync::mpsc::channel();
            runtime.spawn(async move {
                hub.stopped().await;
                let _ = stopped_tx.send(());
            });
            let _ = blocking(|| stopped.recv_timeout(STOP_DEADLINE));
            // A runtime cannot be dropped (which blocks) inside another one.
            runtime.shutdown_background();
        }
    }
}
