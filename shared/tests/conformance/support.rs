//! Backends for the suite and the macro that runs one body against each.

use std::io::Write;

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

/// Writes past the test harness's capture, so the note shows in every run.
pub fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

pub fn aws_status_note() {
    if cfg!(not(feature = "aws")) {
        note("conformance: AWS half NOT COMPILED (run with `--features aws` and MIR_TEST_AWS_ENDPOINT=http://127.0.0.1:4566); embedded half ran");
    } else if endpoint().is_none() {
        note("conformance: AWS half SKIPPED: MIR_TEST_AWS_ENDPOINT is not set (start an endpoint with `scripts/moto.sh start`, then MIR_TEST_AWS_ENDPOINT=http://127.0.0.1:4566)");
    } else {
        note(&format!(
            "conformance: AWS half runs against {}",
            endpoint().unwrap_or_default()
        ));
    }
}

/// A random table prefix, unique per test.
pub fn random_prefix() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("mirt-{n:016x}")
}

/// The AWS adapters on fresh tables, or `None` (with a note) when no endpoint is set.
#[cfg(feature = "aws")]
pub async fn aws() -> Option<Ports> {
    let env = aws_env().await?;
    Some(Ports {
        kind: "aws",
        ports: env.ports,
        _dir: None,
    })
}

/// The AWS environment on fresh tables (DynamoDB telemetry sink).
#[cfg(feature = "aws")]
pub async fn aws_env() -> Option<mir_shared::adapters::aws::AwsEnvironment> {
    static SKIP: std::sync::Once = std::sync::Once::new();
    let Some(url) = endpoint() else {
        SKIP.call_once(aws_status_note);
        return None;
    };
    let config = mir_shared::adapters::aws::AwsConfig::localstack(&url, &random_prefix());
    let env = mir_shared::adapters::aws::AwsEnvironment::from_config(config).await;
    env.ensure_tables().await.expect("creating the test tables");
    Some(env)
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
                async fn $name() {
                    let Some(p) = crate::support::aws().await else { return };
                    super::$name(&p).await;
                }
            )*
        }
    };
}
