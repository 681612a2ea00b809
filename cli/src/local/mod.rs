//! `mir local`: the whole platform in one process, needing nothing installed.
//!
//! - an embedded MQTT broker (`mir-broker`): plain port and an mTLS port whose server
//!   and device certificates come from a local CA created on first run; the broker
//!   enforces the cloud IoT policy (a device only uses `mir/<its id>/...`);
//! - the IoT rules emulation ([`core`]): same topic filters, same rule event JSON, same
//!   handlers as the Lambda functions, with retries and a dead-letter file;
//! - an HTTP server ([`http`]) with the API Gateway routes and event shape;
//! - presence from connect/disconnect and a periodic stale-heartbeat sweep;
//! - the embedded stores in the data directory.
//!
//! [`Hub::start`] takes its shutdown signal as an argument, so tests run it on port 0.

pub mod adapters;
pub mod config;
pub mod core;
pub mod http;

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use bytes::Bytes;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use mir_broker::{
    ca::LocalCa, Broker, BrokerConfig, ClientInfo, DisconnectReason, Hooks, TlsListenerConfig,
};
use mir_proto::topics::PresenceKind;
use mir_shared::{
    adapters::embedded::{EmbeddedStore, Retention},
    routes::RoutesTable,
    service::SchemaCache,
};

pub use config::{HubConfig, Profile};

use self::{
    adapters::{BrokerPublisher, LocalCertificates},
    core::{Core, DeadLetters},
};

/// Options of `mir local`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(
    after_help = "Examples:\n  mir local                          # hub on 1883 (MQTT), 8883 (mTLS), 8180 (HTTP)\n  mir local --print-config > hub.yaml && mir local --config hub.yaml\n  mir local --http-port 0 --mqtt-port 0 --mqtts-port 0 --data-dir /tmp/hub"
)]
pub struct LocalArgs {
    /// Print the default configuration (YAML) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Configuration file (YAML; see --print-config). Flags override it.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Stores: `local` (embedded database) or `localstack` (AWS adapters on --aws-endpoint).
    #[arg(long, value_enum)]
    pub profile: Option<Profile>,
    /// Where the database, the local CA and dead letters live.
    #[arg(long, env = "MIR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    pub bind: Option<std::net::IpAddr>,
    /// Plain MQTT port (0: any free port).
    #[arg(long)]
    pub mqtt_port: Option<u16>,
    /// MQTT over mutual TLS port (0: any free port).
    #[arg(long)]
    pub mqtts_port: Option<u16>,
    /// HTTP API port (0: any free port).
    #[arg(long)]
    pub http_port: Option<u16>,
    /// Log filter, e.g. info or mir=debug.
    #[arg(long)]
    pub log_level: Option<String>,
    /// Seconds without heartbeat before a device is marked offline.
    #[arg(long)]
    pub stale_after_secs: Option<u64>,
    /// AWS-compatible endpoint of the `localstack` profile (DynamoDB).
    #[arg(long)]
    pub aws_endpoint: Option<String>,
    /// Table name prefix of the `localstack` profile (`<prefix>-twins`, ...).
    #[arg(long)]
    pub aws_table_prefix: Option<String>,
}

impl LocalArgs {
    /// Defaults < file < flags.
    pub fn resolve(&self) -> anyhow::Result<HubConfig> {
        let mut c = match &self.config {
            Some(path) => HubConfig::from_file(path)?,
            None => HubConfig::default(),
        };
        macro_rules! take {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = v.clone(); } )* };
        }
        take!(
            profile,
            data_dir,
            bind,
            mqtt_port,
            mqtts_port,
            http_port,
            log_level,
            stale_after_secs,
            aws_endpoint,
            aws_table_prefix
        );
        c.validate()?;
        Ok(c)
    }
}

/// Where the running hub listens; printed as one JSON line and written to
/// `<data dir>/endpoints.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    pub http: String,
    pub mqtt: String,
    pub mqtts: String,
    pub ca_cert: PathBuf,
    pub data_dir: PathBuf,
}

/// A running hub.
pub struct Hub {
    pub endpoints: Endpoints,
    pub http_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    pub mqtts_addr: SocketAddr,
    pub ca: Arc<LocalCa>,
    pub core: Arc<Core>,
    stopped: tokio::task::JoinHandle<()>,
}

struct RuleHooks(Arc<Core>);

#[async_trait::async_trait]
impl Hooks for RuleHooks {
    async fn on_connect(&self, c: &ClientInfo) {
        self.0
            .on_presence(PresenceKind::Connected, &c.client_id, &c.session_id, None)
            .await;
    }
    async fn on_disconnect(&self, c: &ClientInfo, reason: DisconnectReason) {
        self.0
            .on_presence(
                PresenceKind::Disconnected,
                &c.client_id,
                &c.session_id,
                Some(reason.as_aws_str()),
            )
            .await;
    }
    async fn on_publish(&self, c: &ClientInfo, topic: &str, payload: Bytes) {
        self.0
            .on_device_message(&c.client_id, topic, &payload)
            .await;
    }
}

impl Hub {
    /// Starts every part; they stop when `shutdown` resolves.
    pub async fn start(
        config: HubConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<Hub> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let (stores, embedded) = match config.profile {
            Profile::Local => {
                let store = EmbeddedStore::open(&config.database_path()).with_context(|| {
                    format!(
                        "cannot open the database in {} (is another hub running on it?)",
                        config.data_dir.display()
                    )
                })?;
                (core::Stores::embedded(&store), Some(store))
            }
            Profile::Localstack => (localstack_stores(&config).await?, None),
        };
        let ca = Arc::new(
            LocalCa::load_or_create(&config.ca_dir())
                .context("cannot load or create the local CA")?,
        );
        let server = ca
            .issue_server_cert(&["localhost".to_string(), config.bind.to_string()])
            .context("cannot issue the broker's server certificate")?;
        let publisher = Arc::new(BrokerPublisher::default());
        let mtls_endpoint = Arc::new(std::sync::OnceLock::new());
        let core = Arc::new(Core {
            stores,
            embedded,
            publisher: publisher.clone(),
            certificates: Some(Arc::new(LocalCertificates {
                ca: ca.clone(),
                endpoint: mtls_endpoint.clone(),
            })),
            cache: SchemaCache::default(),
            clock: mir_shared::ports::SystemClock,
            stale_after: chrono::Duration::seconds(
                i64::try_from(config.stale_after_secs).unwrap_or(90),
            ),
            dead_letters: DeadLetters::new(config.data_dir.join("dead-letters.jsonl")),
        });
        let token = CancellationToken::new();
        let broker = Broker::start(
            BrokerConfig {
                plain: Some(config.addr(config.mqtt_port)),
                tls: Some(TlsListenerConfig {
                    addr: config.addr(config.mqtts_port),
                    server_cert_chain_pem: server.cert_pem.clone(),
                    server_key_pem: server.private_key_pem.clone().unwrap_or_default(),
                    client_ca_pem: ca.ca_cert_pem().to_string(),
                }),
                max_queued_per_session: config.max_queued_per_session,
                ..BrokerConfig::default()
            },
            Arc::new(RuleHooks(core.clone())),
            token.clone().cancelled_owned(),
        )
        .await
        .context("cannot start the MQTT broker")?;
        publisher.set(broker.handle());
        let mqtt_addr = broker
            .plain_addr()
            .context("the broker has no plain listener")?;
        let mqtts_addr = broker
            .tls_addr()
            .context("the broker has no TLS listener")?;
        // What a device provisioned through this hub connects to: an unspecified bind
        // address is reached as localhost (a name of the broker's server certificate).
        let _ = mtls_endpoint.set(if mqtts_addr.ip().is_unspecified() {
            format!("mqtts://localhost:{}", mqtts_addr.port())
        } else {
            format!("mqtts://{mqtts_addr}")
        });

        let listener = tokio::net::TcpListener::bind(config.addr(config.http_port))
            .await
            .with_context(|| {
                format!(
                    "cannot listen for HTTP on {}",
                    config.addr(config.http_port)
                )
            })?;
        let http_addr = listener.local_addr()?;
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            // Small JSON answers must not wait for Nagle + delayed ACK.
            let _ = tcp.set_nodelay(true);
        });
        let routes = Arc::new(RoutesTable::load().context("the built-in routes table is invalid")?);
        let app = http::router(http::HttpState {
            core: core.clone(),
            routes,
        });
        let http_token = token.clone();
        let http = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(http_token.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });

        let sweep_core = core.clone();
        let sweep_token = token.clone();
        let every = Duration::from_secs(config.sweep_interval_secs);
        let retention = Retention {
            events: chrono::Duration::days(config.events_retention_days.into()),
            commands: chrono::Duration::days(config.commands_retention_days.into()),
        };
        let housekeeping = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            let mut n: u64 = 0;
            loop {
                tokio::select! {
                    _ = sweep_token.cancelled() => return,
                    _ = tick.tick() => {}
                }
                sweep_core.sweep().await;
                n += 1;
                if n % 120 == 1 {
                    let pruned = match &sweep_core.embedded {
                        Some(store) => store.prune(chrono::Utc::now(), retention).await,
                        None => Ok(0),
                    };
                    if let Err(e) = pruned {
                        tracing::warn!(error = %e, "pruning old events and commands failed");
                    }
                }
            }
        });

        let stopped = tokio::spawn(async move {
            shutdown.await;
            token.cancel();
            broker.stopped().await;
            let _ = http.await;
            let _ = housekeeping.await;
        });

        let endpoints = Endpoints {
            http: format!("http://{http_addr}"),
            mqtt: format!("mqtt://{mqtt_addr}"),
            mqtts: format!("mqtts://{mqtts_addr}"),
            ca_cert: config.ca_dir().join("ca.crt"),
            data_dir: config.data_dir.clone(),
        };
        write_endpoints(&config.data_dir, &endpoints)?;
        Ok(Hub {
            endpoints,
            http_addr,
            mqtt_addr,
            mqtts_addr,
            ca,
            core,
            stopped,
        })
    }

    /// Resolves once every part has stopped (after the shutdown signal).
    pub async fn stopped(self) {
        let _ = self.stopped.await;
    }
}

/// The stores of the `localstack` profile: DynamoDB tables (created when missing) and
/// the DynamoDB telemetry sink on an AWS-compatible endpoint.
#[cfg(feature = "localstack")]
async fn localstack_stores(config: &HubConfig) -> anyhow::Result<core::Stores> {
    use mir_shared::adapters::aws::AwsPorts;
    let ports = AwsPorts::for_endpoint(&config.aws_endpoint, &config.aws_table_prefix)
        .await
        .with_context(|| {
            format!(
                "cannot use the AWS-compatible endpoint {} (is LocalStack or moto running? see infra/localstack)",
                config.aws_endpoint
            )
        })?;
    let missing = |what: &str| anyhow::anyhow!("the localstack profile has no {what} store");
    Ok(core::Stores {
        twins: ports.twins.clone().ok_or_else(|| missing("twins"))?,
        schemas: ports.schemas.clone().ok_or_else(|| missing("schemas"))?,
        commands: ports.commands.clone().ok_or_else(|| missing("commands"))?,
        events: ports.events.clone().ok_or_else(|| missing("events"))?,
        telemetry: ports
            .telemetry_sink
            .clone()
            .ok_or_else(|| missing("telemetry"))?,
        telemetry_reader: ports
            .telemetry_reader
            .clone()
            .ok_or_else(|| missing("telemetry"))?,
    })
}

#[cfg(not(feature = "localstack"))]
async fn localstack_stores(_config: &HubConfig) -> anyhow::Result<core::Stores> {
    anyhow::bail!(
        "this mir was built without the localstack profile: build it with `cargo build -p mir-cli --features localstack`"
    )
}

fn write_endpoints(dir: &Path, endpoints: &Endpoints) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(endpoints)?;
    std::fs::write(dir.join("endpoints.json"), text).context("cannot write endpoints.json")?;
    Ok(())
}

/// Runs the hub until Ctrl-C (or SIGTERM).
pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    if args.print_config {
        print!("{}", serde_yaml::to_string(&HubConfig::default())?);
        return Ok(());
    }
    let config = args.resolve()?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log_level))
        .with_writer(std::io::stderr)
        .try_init();
    let hub = Hub::start(config, shutdown_signal()).await?;
    println!(
        "{}",
        serde_json::json!({ "event": "ready", "endpoints": hub.endpoints })
    );
    eprintln!(
        "mir local is running\n  HTTP API  {}\n  MQTT      {}\n  MQTT/mTLS {} (CA: {})\n  data      {}\nTry: mir device ls --api {}   (Ctrl-C to stop)",
        hub.endpoints.http,
        hub.endpoints.mqtt,
        hub.endpoints.mqtts,
        hub.endpoints.ca_cert.display(),
        hub.endpoints.data_dir.display(),
        hub.endpoints.http,
    );
    hub.stopped().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
