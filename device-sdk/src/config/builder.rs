//! The [`Builder`]: the options given in code (the top layer), where the other layers
//! come from (the configuration file, the environment), and building the device.

use std::{path::PathBuf, sync::Arc, time::Duration};

use super::{
    default_config_paths,
    file::{self, ConfigFile},
    layers::{
        BackoffSection, CredentialSource, IdPrefixSection, Layer, LocalStoreSection, Merge,
        PaceSection, Setting, TcpKeepaliveSection,
    },
    validate, Config, Credentials, IdPrefix, LogFormat, LogLevel, Persistence, Profile,
    StoreOptions,
};
#[cfg(doc)]
use super::{Secret, DEFAULT_TARGET};
use crate::{
    client::Mir,
    clock::WallClock,
    store::{RedbStore, Store, StoreError},
    BuildError, StoreHealth,
};

#[derive(Debug, Clone)]
enum ConfigSource {
    File(PathBuf),
    Search(Vec<PathBuf>),
}

/// Builds a [`Mir`] device, like Mir's Go `mir.Builder()`.
///
/// Each option comes from the first of: this builder, the configuration file
/// ([`Builder::config_file`] / [`Builder::default_config_file`]), `MIR__...`
/// environment variables, the defaults.
///
/// ```
/// use mir_device_sdk::{Mir, Persistence, StoreOptions};
/// # fn main() -> Result<(), mir_device_sdk::BuildError> {
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::write(dir.path().join("device.yaml"), r#"
/// mir:
///   target: mqtt://127.0.0.1:1883
///   device:
///     id: weather-01
///   localStore:
///     persistenceType: always
/// user:
///   station: roof
/// "#).unwrap();
///
/// #[derive(serde::Deserialize)]
/// struct App { station: String }
///
/// let (mir, app): (Mir, App) = Mir::builder()
///     .config_file(dir.path().join("device.yaml"))
///     .env_vars([("MIR__DEVICE__ID", "ignored-the-file-wins")])
///     .store(StoreOptions { folder_path: Some(dir.path().join("store")), ..Default::default() })
///     .build_with_user_config()?;
/// assert_eq!(mir.device_id().as_str(), "weather-01");
/// assert_eq!(app.station, "roof");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Builder {
    /// The options given here: the top layer.
    options: Layer,
    schemas: Vec<Vec<u8>>,
    config: Option<ConfigSource>,
    env: Option<Vec<(String, String)>>,
    clock: Option<Arc<dyn WallClock>>,
    backend: Option<StoreBackend>,
}

impl Builder {
    /// The device id: `^[a-zA-Z0-9:_-]{1,128}$` once prefixed. Also the MQTT client id
    /// and the AWS IoT thing name.
    pub fn device_id(mut self, id: impl Into<String>) -> Self {
        self.options.device_mut().id = Some(id.into());
        self
    }

    /// A prefix for the device id (`"warehouse-a"` or an [`IdPrefix`]).
    pub fn id_prefix(mut self, prefix: impl Into<IdPrefix>) -> Self {
        let prefix: IdPrefix = prefix.into();
        self.options.device_mut().id_prefix = Some(IdPrefixSection {
            prefix: Some(prefix.prefix),
            hostname: Some(prefix.hostname),
            username: Some(prefix.username),
        });
        self
    }

    /// Where the platform runs: [`Profile::Local`] (default), [`Profile::Localstack`],
    /// [`Profile::Aws`].
    pub fn profile(mut self, profile: Profile) -> Self {
        self.options.profile = Some(Setting::Given(profile));
        self
    }

    /// `mqtt://host:port` or `mqtts://host:port` (default [`DEFAULT_TARGET`]; with
    /// [`Profile::Aws`] the ATS endpoint, a bare host meaning `mqtts://host:8883`).
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.options.target = Some(target.into());
        self
    }

    /// An encoded `FileDescriptorSet` of the device schema with its imports (for
    /// generated code, the `DESCRIPTOR_SET` constant). Call again to add more sets.
    pub fn schema(mut self, descriptor_set: &[u8]) -> Self {
        self.schemas.push(descriptor_set.to_vec());
        self
    }

    /// Do not send the schema (`Hello`) on every connection, only when the hub asks
    /// (`hello/get`).
    pub fn no_schema_on_boot(mut self, yes: bool) -> Self {
        self.options.device_mut().no_schema_on_boot = Some(yes);
        self
    }

    /// Installs a `tracing` fmt subscriber at this level, unless the application
    /// already installed one. Without a level (here, in the file or the environment)
    /// the SDK installs nothing.
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.options.log_level = Some(Setting::Given(level));
        self
    }

    /// How that subscriber prints: [`LogFormat::Text`] (default) or
    /// [`LogFormat::Json`], one JSON object per line (feature `json-logs`; a build
    /// without it prints text and warns). `logFormat` in the file, `MIR__LOG_FORMAT`.
    pub fn log_format(mut self, format: LogFormat) -> Self {
        self.options.log_format = Some(Setting::Given(format));
        self
    }

    /// Client certificate, key and CA as PEM bytes (needs an `mqtts://` target).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.options.tls_credentials = Some(CredentialSource::Pem(credentials));
        self
    }

    /// Client certificate, key and CA read from PEM files at [`Builder::build`].
    pub fn tls_files(
        mut self,
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
        ca_path: impl Into<PathBuf>,
    ) -> Self {
        self.options.tls_credentials = Some(CredentialSource::Files {
            cert: cert_path.into(),
            key: key_path.into(),
            ca: Some(ca_path.into()),
        });
        self
    }

    /// Like [`Builder::tls_files`], trusting the Mozilla roots (AWS IoT Core's
    /// Amazon root CA is one of them).
    pub fn tls_files_default_roots(
        mut self,
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Self {
        self.options.tls_credentials = Some(CredentialSource::Files {
            cert: cert_path.into(),
            key: key_path.into(),
            ca: None,
        });
        self
    }

    /// Directories searched for `tls.crt`, `tls.key` and `ca.crt` when a TLS target
    /// has no credentials configured (default: `./`, `~/.config/mir/`, `/etc/mir/`).
    pub fn credentials_search_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.options.credential_dirs = Some(dirs);
        self
    }

    /// Interval between heartbeats (default 30 s, 15 min on the `aws` profile); one is
    /// also sent on every connect, and `Hello` tells the cloud the interval.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.options.heartbeat_interval = Some(interval);
        self
    }

    /// How long telemetry waits for more messages before its batch is sent (default 50 ms).
    pub fn telemetry_linger(mut self, linger: Duration) -> Self {
        self.options.telemetry_linger = Some(linger);
        self
    }

    /// Longest a command handler may run when the request carries no earlier deadline
    /// (default 10 s); past it the device answers TIMEOUT.
    pub fn command_timeout_default(mut self, timeout: Duration) -> Self {
        self.options.command_timeout = Some(timeout);
        self
    }

    /// Capacity of the queue from the application to the event loop (default 1024).
    /// When it is full, sends return [`crate::SdkError::QueueFull`] instead of blocking.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.options.queue_capacity = Some(capacity);
        self
    }

    /// Bytes of records (telemetry batches, reported properties) kept in memory
    /// (default 8 MiB); beyond it the oldest go to the store, or are dropped without one.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.options.max_queued_bytes = Some(bytes);
        self
    }

    /// The offline store (Mir's `Store(StoreOptions{..})`); unset fields come from
    /// earlier calls, then the lower layers.
    pub fn store(mut self, options: StoreOptions) -> Self {
        let given: Option<LocalStoreSection> = Some(options.into());
        self.options.local_store = given.merge(self.options.local_store.take());
        self
    }

    /// Keeps the offline queue in memory only (bounded, lost on restart) instead of
    /// the default store on disk: `localStore.inMemory: true`.
    pub fn memory_only(mut self) -> Self {
        self.options
            .local_store
            .get_or_insert_with(Default::default)
            .in_memory = Some(true);
        self
    }

    /// Keeps the offline queue in the store `open` returns (a flash driver, a test
    /// double) instead of redb in `localStore.folderPath`; called once by
    /// [`Builder::build`], and not at all when the queue is in memory only. An error
    /// starts the device on the bounded memory queue, unless `localStore.required`.
    pub fn store_backend<S, F>(mut self, open: F) -> Self
    where
        S: Store + 'static,
        F: Fn() -> Result<S, StoreError> + Send + Sync + 'static,
    {
        self.backend = Some(StoreBackend(Arc::new(move || {
            open().map(|s| Box::new(s) as Box<dyn Store>)
        })));
        self
    }

    /// Reconnection delays: exponential backoff with full jitter, the first ceiling
    /// `min` doubling up to `max` (default 1 s to 128 s).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        let section = self
            .options
            .backoff
            .get_or_insert_with(BackoffSection::default);
        section.min = Some(min);
        section.max = Some(max);
        self
    }

    /// Shortest time between two CONNECTs, whatever the backoff (default
    /// [`crate::DEFAULT_CONNECT_INTERVAL`], 1 s: AWS IoT Core accepts one CONNECT per
    /// second per client id). Lower it only for a local broker.
    pub fn connect_interval(mut self, interval: Duration) -> Self {
        self.options
            .backoff
            .get_or_insert_with(BackoffSection::default)
            .connect_interval = Some(interval);
        self
    }

    /// Paces publishes on one connection at `publishes_per_sec` and `bytes_per_sec`
    /// (payload and topic), with bursts of a quarter second of publishes and 128 KiB
    /// (default [`crate::Pace::AWS`]: 80/s and 384 KiB/s, so that no second exceeds
    /// AWS IoT Core's 100 publishes and 512 KiB per connection). Both rates must be
    /// above zero.
    pub fn pace(mut self, publishes_per_sec: f64, bytes_per_sec: f64) -> Self {
        self.options.pace = Some(PaceSection {
            enabled: Some(true),
            publishes_per_second: Some(publishes_per_sec),
            bytes_per_second: Some(bytes_per_sec),
        });
        self
    }

    /// Publishes as fast as the in-flight window allows (a local broker without
    /// AWS's limits): `pace.enabled: false`.
    pub fn unpaced(mut self) -> Self {
        self.options
            .pace
            .get_or_insert_with(PaceSection::default)
            .enabled = Some(false);
        self
    }

    /// MQTT keep-alive (default 30 s): the device pings every keep-alive, and gives up
    /// a connection that received nothing within half of it (at most 5 s) of a ping,
    /// so a link that died silently is noticed about one keep-alive plus that after.
    /// AWS IoT Core accepts 30 s to 1,200 s (checked with the `aws` profile); at most
    /// 1,200 s everywhere.
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.options.keep_alive = Some(keep_alive);
        self
    }

    /// TCP keepalive on the MQTT socket (default: on, `idle` = the keep-alive, 10 s
    /// between probes, 3 probes): after `idle` of silence the kernel probes every
    /// `interval` and drops the connection after `retries` unanswered probes
    /// ([`crate::TcpKeepalive`]). Whole seconds, 1 s to 32,767 s; 1 to 127 probes.
    /// `tcpKeepalive: { idle, interval, retries }` in `device.yaml`.
    pub fn tcp_keepalive(mut self, idle: Duration, interval: Duration, retries: u32) -> Self {
        self.options.tcp_keepalive = Some(TcpKeepaliveSection {
            enabled: Some(true),
            idle: Some(idle),
            interval: Some(interval),
            retries: Some(retries),
        });
        self
    }

    /// No TCP keepalive on the socket (`tcpKeepalive.enabled: false`): only MQTT's
    /// pings probe the link.
    pub fn no_tcp_keepalive(mut self) -> Self {
        self.options.tcp_keepalive = Some(TcpKeepaliveSection {
            enabled: Some(false),
            ..TcpKeepaliveSection::default()
        });
        self
    }

    /// MQTT persistent session (`clean_session = false`, default true): the broker
    /// keeps the subscriptions and queues QoS 1 commands while the device is away.
    pub fn persistent_session(mut self, yes: bool) -> Self {
        self.options.persistent_session = Some(yes);
        self
    }

    /// Where message times come from (default: the system clock). A time source that
    /// knows whether it is synchronised (NTP, GPS) says so through
    /// [`WallClock::is_synced`]; otherwise a time before
    /// [`crate::CLOCK_FLOOR_UNIX_SECS`] counts as a clock not set yet.
    pub fn wall_clock(mut self, clock: impl WallClock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Reads this `device.yaml` (it must exist).
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config = Some(ConfigSource::File(path.into()));
        self
    }

    /// Reads the first of `./device.yaml`, `~/.config/mir/device.yaml`,
    /// `/etc/mir/device.yaml` that exists (none is fine).
    pub fn default_config_file(mut self) -> Self {
        self.config = Some(ConfigSource::Search(default_config_paths()));
        self
    }

    /// Uses these variables instead of the process environment (tests, embedding).
    pub fn env_vars<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Validates everything and returns the device, not yet connected (see [`Mir::launch`]).
    pub fn build(self) -> Result<Mir, BuildError> {
        let backend = self.backend.clone();
        let (config, _) = self.resolve_all()?;
        build_device(config, backend)
    }

    /// Like [`Builder::build`], also returning the `user:` section of the
    /// configuration file deserialized into the application's type (Mir's
    /// `BuildWithExtraConfig`). Wrap secrets in [`Secret`] to keep them out of logs.
    pub fn build_with_user_config<T: serde::de::DeserializeOwned>(
        self,
    ) -> Result<(Mir, T), BuildError> {
        let backend = self.backend.clone();
        let (config, user) = self.resolve_all()?;
        let path = config.config_file.clone().unwrap_or_default();
        let user: T = serde_yaml::from_value(user).map_err(|e| BuildError::ConfigFile {
            path,
            reason: format!("user: {e}"),
        })?;
        Ok((build_device(config, backend)?, user))
    }

    #[cfg(test)]
    pub(crate) fn resolve(self) -> Result<Config, BuildError> {
        self.resolve_all().map(|(c, _)| c)
    }

    fn resolve_all(self) -> Result<(Config, serde_yaml::Value), BuildError> {
        let file = match &self.config {
            None => ConfigFile::default(),
            Some(ConfigSource::File(p)) => ConfigFile::read(p)?,
            Some(ConfigSource::Search(paths)) => ConfigFile::search(paths)?,
        };
        let env_vars = match self.env.clone() {
            Some(v) => v,
            None => std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        };
        let env = file::from_env(env_vars)?;
        file.mir.warn_ignored();
        env.warn_ignored();
        let options = self
            .options
            .merge(file.mir.normalized())
            .merge(env.normalized());
        let mut config = validate::resolve(options, &self.schemas, file.path)?;
        if let Some(clock) = self.clock {
            config.clock = clock;
        }
        Ok((config, file.user))
    }
}

/// Installs the log subscriber, opens the store and creates the device.
fn build_device(config: Config, backend: Option<StoreBackend>) -> Result<Mir, BuildError> {
    #[cfg(not(feature = "log-subscriber"))]
    if config.log_level.is_some() {
        tracing::warn!(
            format = ?config.log_format,
            "the log level is set but this build has no log subscriber \
             (feature log-subscriber): install one in the application"
        );
    }
    #[cfg(feature = "log-subscriber")]
    if let Some(level) = config.log_level {
        crate::logs::install(level, config.log_format);
    }
    if config.store_folder.is_none() && config.persistence != Persistence::NoStorage {
        tracing::info!(
            "localStore.inMemory: the offline queue is kept in memory only \
             (bounded, lost on restart)"
        );
    }
    let opened = match (backend, &config.store_folder) {
        (_, None) => None,
        (Some(backend), Some(_)) => Some((backend.0)()),
        (None, Some(folder)) => {
            Some(RedbStore::open(folder).map(|s| Box::new(s) as Box<dyn Store>))
        }
    };
    let (store, health) = match opened {
        None => (None, StoreHealth::MemoryOnly),
        Some(Ok(store)) => (Some(store), StoreHealth::Durable),
        Some(Err(e)) if config.store_required => return Err(BuildError::Store(e)),
        Some(Err(e)) => {
            tracing::error!(
                store = ?config.store_folder,
                "cannot open the offline store ({e}): the device starts on the bounded \
                 memory queue (set localStore.required to make this fatal)"
            );
            (None, StoreHealth::Unavailable)
        }
    };
    tracing::info!(
        device = %config.device_id,
        profile = ?config.profile,
        target = %config.target,
        tls = config.tls.is_some(),
        persistence = ?config.persistence,
        store = ?config.store_folder,
        config_file = ?config.config_file,
        "device configured"
    );
    Ok(Mir::with_store_health(config, store, health))
}

/// Opens the store of [`Builder::store_backend`].
type OpenStore = dyn Fn() -> Result<Box<dyn Store>, StoreError> + Send + Sync;

#[derive(Clone)]
struct StoreBackend(Arc<OpenStore>);

impl std::fmt::Debug for StoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreBackend")
    }
}
