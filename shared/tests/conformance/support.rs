//! Backends for the suite and the macro that runs one body against each.

use std::{io::Write, sync::Arc};

use mir_shared::ports::{
    CommandStore, EventStore, SchemaStore, TelemetryReader, TelemetrySink, TwinStore,
};

/// The stores under test.
pub struct Ports {
    pub kind: &'static str,
    pub twins: Arc<dyn TwinStore>,
    pub schemas: Arc<dyn SchemaStore>,
    pub commands: Arc<dyn CommandStore>,
    pub events: Arc<dyn EventStore>,
    pub sink: Arc<dyn TelemetrySink>,
    pub reader: Arc<dyn TelemetryReader>,
    _dir: Option<tempfile::TempDir>,
}

pub async fn embedded() -> Ports {
    let dir = tempfile::tempdir().unwrap();
    let store =
        mir_shared::adapters::embedded::EmbeddedStore::open(&dir.path().join("t.redb")).unwrap();
    Ports {
        kind: "embedded",
        twins: Arc::new(store.clone()),
        schemas: Arc::new(store.clone()),
        commands: Arc::new(store.clone()),
        events: Arc::new(store.clone()),
        sink: Arc::new(store.clone()),
        reader: Arc::new(store),
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
    let ports = aws_ports().await?;
    Some(Ports {
        kind: "aws",
        twins: ports.twins.clone().unwrap(),
        schemas: ports.schemas.clone().unwrap(),
        commands: ports.commands.clone().unwrap(),
        events: ports.events.clone().unwrap(),
        sink: ports.telemetry_sink.clone().unwrap(),
        reader: ports.telemetry_reader.clone().unwrap(),
        _dir: None,
    })
}

/// `AwsPorts` on fresh tables (DynamoDB telemetry sink).
#[cfg(feature = "aws")]
pub async fn aws_ports() -> Option<mir_shared::adapters::aws::AwsPorts> {
    static SKIP: std::sync::Once = std::sync::Once::new();
    let Some(url) = endpoint() else {
        SKIP.call_once(aws_status_note);
        return None;
    };
    let config = mir_shared::adapters::aws::AwsConfig::localstack(&url, &random_prefix());
    let ports = mir_shared::adapters::aws::AwsPorts::from_config(config).await;
    ports
        .ensure_tables()
        .await
        .expect("creating the test tables");
    Some(ports)
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
