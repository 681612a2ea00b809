//! `mir-hub`: the whole platform in one process, needing nothing installed; `mir local`
//! wraps it, and tests start it in-process on port 0.
//!
//! - [`config`]: [`HubConfig`] (defaults < file < flags, validated once) and [`Profile`];
//! - [`registry`]: function name (`routes.json`) -> handler, over one [`Ports`] bundle;
//! - [`core`]: the IoT rules emulation (same topic filters, same rule event JSON, same
//!   handlers as the Lambda functions), retries and the dead-letter file;
//! - [`delivery`]: invocations run concurrently and unordered, as on AWS, and with
//!   `chaos` also duplicated and delayed;
//! - [`http`]: the HTTP server with the API Gateway routes and event shape, `/healthz`
//!   and `/metrics`, behind [`access`] (Host check, bearer token);
//! - [`console`]: the browser console (`console/dist`, embedded) at `/`;
//! - [`feed`]: the event feed (every stored event, to the watchers of
//!   `GET /v1/events/watch`) and the device streams: decoded telemetry, heartbeats and
//!   schemas (`GET /v1/telemetry/watch`, `/v1/heartbeats/watch`, `/v1/schemas/watch`);
//! - [`custom_routes`]: the devices' custom routes, to the modules watching
//!   `GET /v1/routes/watch`;
//! - [`metrics`]: the Prometheus metrics;
//! - [`adapters`]: publishing through the embedded broker;
//! - [`certificates`]: certificates from the local CA, and the certificate book that
//!   says which may connect (mTLS only for a device that holds one; none once revoked);
//! - this module: [`Hub::start`] wires the embedded broker (`mir-broker`: a plain port and
//!   an mTLS port whose certificates come from a local CA created on first run; the broker
//!   enforces the cloud IoT policy), the stores of the profile, the HTTP server, presence
//!   from connects and disconnects and the stale-heartbeat sweep. It takes its shutdown
//!   signal as an argument.
//!
//! Architecture: see docs/architecture.md in the repository (sections Layout, Profiles,
//! Delivery semantics).

pub mod access;
pub mod adapters;
pub mod certificates;
pub mod config;
pub mod console;
pub mod core;
pub mod custom_routes;
pub mod delivery;
pub mod feed;
pub mod http;
pub mod metrics;
pub mod registry;

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use mir_broker::{
    ca::LocalCa, Broker, BrokerConfig, ClientInfo, ConnectRequest, DisconnectReason, Hooks,
    Refusal, TlsListenerConfig,
};
use mir_proto::topics::PresenceKind;
use mir_shared::{
    adapters::embedded::{EmbeddedStore, Retention},
    ports::Ports,
    routes::RoutesTable,
};

pub use config::{ConfigError, HubConfig, Profile};

use self::{
    adapters::BrokerPublisher,
    certificates::{CertificateBook, LocalCertificates},
    core::{Core, DeadLetters, Rules},
    delivery::{key_of, Chaos, Dispatcher},
    metrics::HubMetrics,
};

/// How long a stopping hub lets accepted invocations finish.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the database in {path} (is another hub running on it?): {source}")]
    Database {
        path: PathBuf,
        #[source]
        source: mir_shared::ports::StoreError,
    },
    #[error("the local CA in {path}: {source}")]
    Ca {
        path: PathBuf,
        #[source]
        source: mir_broker::ca::CaError,
    },
    #[error(transparent)]
    CertificateBook(#[from] certificates::BookError),
    #[error("cannot start the MQTT broker: {0}")]
    Broker(#[source] mir_broker::BrokerError),
    #[error("the broker has no {0} listener")]
    NoListener(&'static str),
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Endpoints {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the built-in routes table is invalid: {0}")]
    Routes(#[source] serde_json::Error),
    #[error(transparent)]
    UnknownFunction(#[from] core::UnknownFunction),
    #[error("cannot use the AWS-compatible endpoint {endpoint} (is LocalStack or moto running? see infra/localstack): {source}")]
    Localstack {
        endpoint: String,
        #[source]
        source: mir_shared::ports::StoreError,
    },
    #[error("this hub was built without the localstack profile: build it with the `localstack` feature (`cargo build -p mir-cli --features localstack`)")]
    LocalstackNotBuilt,
    #[error(transparent)]
    MissingPort(#[from] mir_shared::ports::MissingPort),
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
    /// The seed of `chaos`, when it is on.
    pub chaos_seed: Option<u64>,
    stopped: tokio::task::JoinHandle<()>,
}

/// The broker's events become invocations, stamped with the time the broker saw them;
/// the certificate book decides who may connect.
struct RuleHooks(Arc<Dispatcher>, Arc<CertificateBook>);

impl RuleHooks {
    async fn presence(&self, kind: PresenceKind, c: &ClientInfo, reason: Option<&'static str>) {
        let at = chrono::Utc::now();
        let (client, session, version) = (c.client_id.clone(), c.session_id.clone(), c.version);
        let key = key_of(&[
            kind.as_str().as_bytes(),
            client.as_bytes(),
            session.as_bytes(),
        ]);
        self.0
            .submit(
                key,
                Arc::new(move |core| {
                    let (client, session) = (client.clone(), session.clone());
                    Box::pin(async move {
                        core.on_presence(kind, &client, &session, version, reason, at)
                            .await
                    })
                }),
            )
            .await;
    }
}

#[async_trait::async_trait]
impl Hooks for RuleHooks {
    async fn on_connect(&self, c: &ClientInfo) {
        self.presence(PresenceKind::Connected, c, None).await;
    }
    async fn on_disconnect(&self, c: &ClientInfo, reason: DisconnectReason) {
        self.presence(PresenceKind::Disconnected, c, Some(reason.as_aws_str()))
            .await;
    }
    /// A device that holds a certificate connects over mTLS only, with an active
    /// certificate of the book (see [`certificates`]).
    async fn admit(&self, c: &ConnectRequest) -> Result<(), Refusal> {
        let certificate = c.certificate.as_ref().map(|x| x.certificate_id.as_str());
        self.1.admit(&c.client_id, certificate).map_err(|refusal| {
            tracing::warn!(client = %c.client_id, peer = %c.peer, tls = c.tls, reason = %refusal, "connection refused");
            match refusal {
                certificates::Refusal::CertifiedOnPlainPort(_) => Refusal::CertificateRequired,
                certificates::Refusal::Revoked(_) => Refusal::CertificateRevoked,
                certificates::Refusal::UnknownCertificate(_)
                | certificates::Refusal::Inactive(_) => Refusal::NotAuthorized,
            }
        })
    }
    /// `Ok` once the invocation is accepted (queued): like AWS, the PUBACK does not wait
    /// for the function, so a store failure happens after it and ends in a dead letter.
    /// While dead letters cannot be written, nothing is acknowledged: the device keeps
    /// the message and sends it again once it reconnects.
    async fn on_publish(
        &self,
        c: &ClientInfo,
        topic: &str,
        payload: Bytes,
    ) -> Result<(), mir_broker::HookError> {
        if let Err(e) = self.0.core().dead_letters.writable() {
            tracing::error!(client = %c.client_id, topic, error = %e, "dead letters cannot be written: the message is not acknowledged");
            return Err(mir_broker::HookError::NotKept(Box::new(e)));
        }
        let at = chrono::Utc::now();
        HubMetrics::count_topic(&self.0.core().metrics.messages_in, topic);
        let key = key_of(&[c.client_id.as_bytes(), topic.as_bytes(), &payload]);
        let (client, topic) = (c.client_id.clone(), topic.to_string());
        self.0
            .submit(
                key,
                Arc::new(move |core| {
                    let (client, topic, payload) = (client.clone(), topic.clone(), payload.clone());
                    Box::pin(async move {
                        core.on_device_message_at(&client, &topic, &payload, at)
                            .await
                    })
                }),
            )
            .await;
        Ok(())
    }
}

impl Hub {
    /// Starts every part; they stop when `shutdown` resolves.
    pub async fn start(
        config: HubConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Hub, HubError> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| HubError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let (stores, embedded) = match config.profile {
            Profile::Local => {
                let store = EmbeddedStore::open(&config.database_path())
                    .map_err(|source| HubError::Database {
                        path: config.data_dir.clone(),
                        source,
                    })?
                    .with_event_retention(config.event_retention.clone());
                (Ports::with_stores(store.clone()), Some(store))
            }
            Profile::Localstack => (localstack_stores(&config).await?, None),
        };
        let token = CancellationToken::new();
        let (stores, feed) = feed::Feed::wire(stores, feed::FEED_CAPACITY, token.clone())?;
        let ca_error = |source| HubError::Ca {
            path: config.ca_dir(),
            source,
        };
        let ca = Arc::new(LocalCa::load_or_create(&config.ca_dir()).map_err(ca_error)?);
        let server = ca
            .issue_server_cert(&["localhost".to_string(), config.bind.to_string()])
            .map_err(ca_error)?;
        let book = Arc::new(CertificateBook::open(
            &config.ca_dir().join("certificates.json"),
        )?);
        let metrics = Arc::new(HubMetrics::default());
        let broker_handle = Arc::new(std::sync::OnceLock::new());
        let publisher = Arc::new(BrokerPublisher::counting(metrics.clone()));
        let mtls_endpoint = Arc::new(std::sync::OnceLock::new());
        let ports = Ports {
            publisher: Some(publisher.clone()),
            certificates: Some(Arc::new(LocalCertificates {
                ca: ca.clone(),
                book: book.clone(),
                endpoint: mtls_endpoint.clone(),
                broker: broker_handle.clone(),
            })),
            stale_after: chrono::Duration::seconds(
                i64::try_from(config.stale_after_secs).unwrap_or(90),
            ),
            ..stores
        };
        let routes = Arc::new(RoutesTable::load().map_err(HubError::Routes)?);
        let core = Arc::new(Core {
            retry_delays: config
                .delivery
                .retry_delays_ms
                .iter()
                .copied()
                .map(Duration::from_millis)
                .collect(),
            metrics,
            ..Core::new(
                ports,
                Rules::from_routes(&routes)?,
                embedded,
                DeadLetters::new(config.data_dir.join("dead-letters.jsonl")),
            )
        });
        let chaos = Chaos::from_config(&config.chaos);
        let chaos_seed = chaos.as_ref().map(|c| c.seed);
        if let Some(seed) = chaos_seed {
            tracing::warn!(
                seed,
                duplicate_percent = config.chaos.duplicate_percent,
                max_delay_ms = config.chaos.max_delay_ms,
                "chaos: invocations are duplicated, delayed and reordered (replay with --chaos-seed {seed})"
            );
        }
        if config.access.insecure_plain_mqtt && !config.bind.is_loopback() {
            tracing::warn!(
                bind = %config.bind,
                "access.insecurePlainMqtt: the plain MQTT port is open beyond loopback; any client there may claim a device id that holds no certificate"
            );
        }
        let dispatcher = Arc::new(Dispatcher::new(core.clone(), &config.delivery, chaos));
        let broker = Broker::start(
            BrokerConfig {
                plain: Some(config.plain_mqtt_addr()),
                tls: Some(TlsListenerConfig {
                    addr: config.addr(config.mqtts_port),
                    server_cert_chain_pem: server.cert_pem.clone(),
                    server_key_pem: server.private_key_pem.clone().unwrap_or_default(),
                    client_ca_pem: ca.ca_cert_pem().to_string(),
                }),
                max_queued_per_session: config.max_queued_per_session,
                ..BrokerConfig::default()
            },
            Arc::new(RuleHooks(dispatcher.clone(), book.clone())),
            token.clone().cancelled_owned(),
        )
        .await
        .map_err(HubError::Broker)?;
        publisher.set(broker.handle());
        let _ = broker_handle.set(broker.handle());
        let mqtt_addr = broker.plain_addr().ok_or(HubError::NoListener("plain"))?;
        let mqtts_addr = broker.tls_addr().ok_or(HubError::NoListener("TLS"))?;
        // What a device provisioned through this hub connects to: an unspecified bind
        // address is reached as localhost (a name of the broker's server certificate).
        let _ = mtls_endpoint.set(if mqtts_addr.ip().is_unspecified() {
            format!("mqtts://localhost:{}", mqtts_addr.port())
        } else {
            format!("mqtts://{mqtts_addr}")
        });

        let http_error = |source| HubError::Http {
            addr: config.addr(config.http_port),
            source,
        };
        let listener = tokio::net::TcpListener::bind(config.addr(config.http_port))
            .await
            .map_err(http_error)?;
        let http_addr = listener.local_addr().map_err(http_error)?;
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            // Small JSON answers must not wait for Nagle + delayed ACK.
            let _ = tcp.set_nodelay(true);
        });
        let app = http::router(http::HttpState {
            core: core.clone(),
            routes,
            access: access::Access::new(&config.access),
            broker: Some(broker.handle()),
            dispatcher: Some(dispatcher.clone()),
            feed,
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
            commands: chrono::Duration::days(config.commands_retention_days.into()),
            telemetry: chrono::Duration::days(config.telemetry_retention_days.into()),
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
                        tracing::warn!(error = %e, "pruning old events, commands and telemetry failed");
                    }
                }
            }
        });

        let stopped = tokio::spawn(async move {
            shutdown.await;
            token.cancel();
            broker.stopped().await;
            if !dispatcher.drain(DRAIN_DEADLINE).await {
                tracing::warn!(
                    unfinished = dispatcher.in_flight(),
                    "stopped before every accepted invocation finished"
                );
            }
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
            chaos_seed,
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
async fn localstack_stores(config: &HubConfig) -> Result<Ports, HubError> {
    use mir_shared::adapters::aws::AwsEnvironment;
    let env = AwsEnvironment::for_endpoint(
        &config.aws_endpoint,
        &config.aws_table_prefix,
        config.event_retention.clone(),
    )
    .await
    .map_err(|source| HubError::Localstack {
        endpoint: config.aws_endpoint.clone(),
        source,
    })?;
    Ok(env.ports)
}

#[cfg(not(feature = "localstack"))]
async fn localstack_stores(_config: &HubConfig) -> Result<Ports, HubError> {
    Err(HubError::LocalstackNotBuilt)
}

fn write_endpoints(dir: &Path, endpoints: &Endpoints) -> Result<(), HubError> {
    let path = dir.join("endpoints.json");
    let text = serde_json::to_string_pretty(endpoints).map_err(|e| HubError::Endpoints {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&path, text).map_err(|source| HubError::Endpoints { path, source })
}
