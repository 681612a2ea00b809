//! Backends for the suite and the macro that runs one body against each.

use mir_shared::ports::{
    CommandStore, EventStore, SchemaStore, TelemetryReader, TelemetrySink, TwinStore,
};

/// The stores under test.
pub struct Ports {
    pub kind: &'static str,
    /// The backend's stores, in the platform's one bundle.
    pub ports: mir_shared::ports::Ports,
    _dir: Option<tempfile::TempDir>,
}

impl Ports {
    pub fn twins(&self) -> &dyn TwinStore {
        self.ports.twins().expect("every backend has twins")
    }
    pub fn schemas(&self) -> &dyn SchemaStore {
        self.ports.schemas().expect("every backend has schemas")
    }
    pub fn commands(&self) -> &dyn CommandStore {
        self.ports.commands().expect("every backend has commands")
    }
    pub fn events(&self) -> &dyn EventStore {
        self.ports.events().expect("every backend has events")
    }
    pub fn sink(&self) -> &dyn TelemetrySink {
        self.ports
            .telemetry_sink()
            .expect("every backend has a telemetry sink")
    }
    pub fn reader(&self) -> &dyn TelemetryReader {
        self.ports
            .telemetry_reader()
            .expect("every backend has a telemetry reader")
    }
}

pub async fn embedded() -> Ports {
    let dir = tempfile::tempdir().unwrap();
    let store =
        mir_shared::adapters::embedded::EmbeddedStore::open(&dir.path().join("t.redb")).unwrap();
    Ports {
        kind: "embedded",
        ports: mir_shared::ports::Ports::with_stores(store),
        _dir: Some(dir),
    }
}

pub const ENDPOINT_VAR: &str = "MIR_TEST_AWS_ENDPOINT";

pub fn endpoint() -> Option<String> {
    std::env::var(ENDPOINT_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// The endpoint of a test that needs one: such tests are `#[ignore]`d (a plain
/// `cargo test` reports them as ignored, never as passed), and run with
/// `--include-ignored`, where a missing endpoint fails them.
pub fn required_endpoint() -> String {
    endpoint().unwrap_or_else(|| {
        panic!("{ENDPOINT_VAR} is not set: this test needs an AWS-compatible endpoint (scripts/moto.sh start)")
    })
}

/// Writes past the test harness's capture, so the note shows in every run.
pub fn note(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// A random table prefix, unique per test.
pub fn random_prefix() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("mirt-{n:016x}")
}

/// The AWS adapters on fresh tables of the endpoint (see [`required_endpoint`]).
#[cfg(feature = "aws")]
pub async fn aws() -> Ports {
    Ports {
        kind: "aws",
        ports: aws_env().await.ports,
        _dir: None,
    }
}

/// The AWS environment on fresh tables (DynamoDB telemetry sink).
#[cfg(feature = "aws")]
pub async fn aws_env() -> mir_shared::adapters::aws::AwsEnvironment {
    let url = required_endpoint();
    let config = mir_shared::adapters::aws::AwsConfig::localstack(&url, &random_prefix());
    let env = mir_shared::adapters::aws::AwsEnvironment::from_config(config).await;
    env.ensure_tables().await.expect("creating the test tables");
    env
}

/// Runs each named `async fn(&Ports)` of the calling module against every backend:
/// `<module>::embedded::<name>` and `<module>::aws::<name>`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let p = crate::support::embedded().await;
                    super::$name(&p).await;
                }
            )*
        }
        #[cfg(feature = "aws")]
        mod aws {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs an AWS-compatible endpoint in MIR_TEST_AWS_ENDPOINT (scripts/moto.sh start); run with --include-ignored"]
                async fn $name() {
                    let p = crate::support::aws().await;
                    super::$name(&p).await;
                }
            )*
        }
    };
}
