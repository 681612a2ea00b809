//! Device configuration: the [`Builder`], `device.yaml`, `MIR__...` environment
//! variables, and what they validate.
//!
//! Every option is resolved here into a [`Config`] before anything runs, from four
//! layers in this order of priority: builder > file > env > defaults (Mir's order).

use std::{
    fmt,
    io::Write,
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use mir_proto::{wire::Compression, DeviceId, MAX_PAYLOAD_BYTES};
use prost::Message;

use crate::{
    backoff::{DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN},
    client::Mir,
    credentials,
    store::{RedbStore, Store},
    BuildError,
};

pub(crate) mod file;

pub use file::{default_config_paths, Secret};
use file::{ConfigFile, MirSection};

/// Default target: the local hub's plain MQTT listener.
pub const DEFAULT_TARGET: &str = "mqtt://127.0.0.1:1883";
/// Default interval between heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// Default batching window of telemetry.
pub const DEFAULT_TELEMETRY_LINGER: Duration = Duration::from_millis(50);
/// Default time a command handler may run (docs/architecture.md, Routes: commands time out
/// after 10 s).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Default capacity of the queue between the application and the event loop.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// Default bytes of telemetry kept in memory while offline.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;
/// MQTT keep alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Default retention of the offline store (Mir's: one week).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default most used percentage of the store's file system (Mir's: 85 %).
pub const DEFAULT_DISK_LIMIT_PERCENT: f64 = 85.0;

/// Where the platform runs (docs/architecture.md, Profiles). The profile gives the defaults of
/// the target and of the trusted CA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Profile {
    /// The local hub (`mir local`): `mqtt://127.0.0.1:1883`, or its mTLS listener
    /// (8883) with its local CA in `ca.crt`.
    #[default]
    Local,
    /// Development against LocalStack: the local hub's broker (or LocalStack's).
    Localstack,
    /// AWS IoT Core: the account's ATS endpoint (`xxx-ats.iot.<region>.amazonaws.com`),
    /// port 8883 with the device certificate (or 443, with ALPN `x-amzn-mqtt-ca`),
    /// Amazon Root CA 1 unless a `ca.crt` is given.
    Aws,
}

impl FromStr for Profile {
    type Err = BuildError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(Profile::Local),
            "localstack" => Ok(Profile::Localstack),
            "aws" => Ok(Profile::Aws),
            other => Err(BuildError::InvalidOption {
                option: "profile",
                reason: format!("{other:?} is not one of local, localstack, aws"),
            }),
        }
    }
}

/// When messages go to the offline store (Mir's `persistenceType`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Persistence {
    /// Never: the offline queue is in memory only (bounded, oldest dropped).
    NoStorage,
    /// While the device is offline (and what is unacknowledged when the connection
    /// drops); online messages wait in memory for their PUBACK.
    #[default]
    IfOffline,
    /// Every message goes through the store first and leaves it on PUBACK: nothing is
    /// lost even if the process is killed while online.
    Always,
}

impl FromStr for Persistence {
    type Err = BuildError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['_', '-'], "")
            .as_str()
        {
            "nostorage" | "none" => Ok(Persistence::NoStorage),
            "ifoffline" => Ok(Persistence::IfOffline),
            "always" => Ok(Persistence::Always),
            other => Err(BuildError::InvalidOption {
                option: "localStore.persistenceType",
                reason: format!("{other:?} is not one of nostorage, ifoffline, always"),
            }),
        }
    }
}

/// Options of the offline store (Mir's `StoreOptions`). Unset fields come from
/// `device.yaml`, then `MIR__LOCAL_STORE__...`, then the defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreOptions {
    /// Folder of the store database. Without one the queue is kept in memory only.
    pub folder_path: Option<PathBuf>,
    /// Keep the queue in memory only, even with a folder.
    pub in_memory: Option<bool>,
    /// Records older than this are dropped (default one week).
    pub retention_limit: Option<Duration>,
    /// Most used percentage of the file system holding the store (default 85).
    pub disk_space_limit: Option<f64>,
    /// Most bytes in the store (default: only the disk limit).
    pub max_bytes: Option<u64>,
    pub persistence_type: Option<Persistence>,
}

/// Log level of the subscriber the SDK installs (see [`Builder::log_level`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    fn as_tracing(self) -> tracing::Level {
        match self {
            LogLevel::Trace => tracing::Level::TRACE,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        }
    }
}

impl FromStr for LogLevel {
    type Err = BuildError;
    /// Mir's names: `trace|debug|info|warn|error|fatal` (`fatal` is `error`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "trace" => Ok(LogLevel::Trace),
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "error" | "fatal" => Ok(LogLevel::Error),
            _ => Err(BuildError::InvalidOption {
                option: "log level",
                reason: format!("{s:?} is not one of trace, debug, info, warn, error, fatal"),
            }),
        }
    }
}

/// Prefix of the device id, as in Mir: parts joined with `_` before the id, in the
/// order prefix, hostname, username (`warehouse-a_sensor-01`, `myhost_sensor-01`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdPrefix {
    pub prefix: String,
    /// Use the machine's hostname (characters invalid in a device id become `-`).
    pub hostname: bool,
    /// Use the user name from `$USER` / `$USERNAME`.
    pub username: bool,
}

impl From<&str> for IdPrefix {
    fn from(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            ..Self::default()
        }
    }
}

impl From<String> for IdPrefix {
    fn from(prefix: String) -> Self {
        Self {
            prefix,
            ..Self::default()
        }
    }
}

impl IdPrefix {
    fn parts(&self) -> Vec<String> {
        let mut parts = Vec::new();
        if !self.prefix.is_empty() {
            parts.push(self.prefix.clone());
        }
        if self.hostname {
            if let Some(h) = hostname() {
                parts.push(sanitize(&h));
            }
        }
        if self.username {
            if let Some(u) = std::env::var("USER")
                .ok()
                .or_else(|| std::env::var("USERNAME").ok())
                .filter(|u| !u.is_empty())
            {
                parts.push(sanitize(&u));
            }
        }
        parts
    }
}

fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The client certificate and key of a device (PEM), and the CA that signed the
/// server's certificate (PEM; `None`: the Mozilla roots, which include Amazon's root CAs).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub client_cert_pem: Vec<u8>,
    pub client_key_pem: Vec<u8>,
    pub ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "client_cert_pem",
                &format_args!("{} bytes", self.client_cert_pem.len()),
            )
            .field("client_key_pem", &"<redacted>")
            .field("ca_pem", &self.ca_pem.as_ref().map(|c| c.len()))
            .finish()
    }
}

/// MQTT transport of a [`Target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `mqtt://`: plain TCP.
    Mqtt,
    /// `mqtts://`: TLS (rustls), with a client certificate when credentials are given.
    Mqtts,
}

/// Where the device connects: `mqtt://host[:1883]` or `mqtts://host[:8883]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
}

impl FromStr for Target {
    type Err = BuildError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| BuildError::InvalidTarget {
            target: s.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => Scheme::Mqtt,
            "mqtts" | "ssl" | "tls" => Scheme::Mqtts,
            other => return Err(bad(&format!("unsupported scheme {other:?}"))),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(bad("only host and port are allowed after the scheme"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(&format!("invalid port {p:?}")))?,
            None => match scheme {
                Scheme::Mqtt => 1883,
                Scheme::Mqtts => 8883,
            },
        };
        Ok(Target {
            scheme,
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Mqtt => "mqtt",
            Scheme::Mqtts => "mqtts",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The resolved configuration of a device.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub device_id: DeviceId,
    pub profile: Profile,
    pub target: Target,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The FileDescriptorSet, zlib compressed.
    pub schema: Bytes,
    pub no_schema_on_boot: bool,
    pub heartbeat_interval: Duration,
    pub telemetry_linger: Duration,
    pub command_timeout: Duration,
    pub queue_capacity: usize,
    pub max_queued_bytes: usize,
    pub persistence: Persistence,
    /// Where the store lives (`None`: memory only).
    pub store_folder: Option<PathBuf>,
    pub retention: Duration,
    pub disk_limit_percent: f64,
    pub max_store_bytes: Option<u64>,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub persistent_session: bool,
    pub log_level: Option<LogLevel>,
    /// The configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
enum CredentialSource {
    Pem(Credentials),
    Files {
        cert: PathBuf,
        key: PathBuf,
        ca: Option<PathBuf>,
    },
}

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
    device_id: Option<String>,
    id_prefix: Option<IdPrefix>,
    profile: Option<Profile>,
    target: Option<String>,
    schemas: Vec<Vec<u8>>,
    no_schema_on_boot: Option<bool>,
    log_level: Option<LogLevel>,
    credentials: Option<CredentialSource>,
    credential_dirs: Option<Vec<PathBuf>>,
    heartbeat_interval: Option<Duration>,
    telemetry_linger: Option<Duration>,
    command_timeout: Option<Duration>,
    queue_capacity: Option<usize>,
    max_queued_bytes: Option<usize>,
    store: StoreOptions,
    backoff_min: Option<Duration>,
    backoff_max: Option<Duration>,
    persistent_session: Option<bool>,
    config: Option<ConfigSource>,
    env: Option<Vec<(String, String)>>,
}

impl Builder {
    /// The device id: `^[a-zA-Z0-9:_-]{1,128}$` once prefixed. Also the MQTT client id
    /// and the AWS IoT thing name.
    pub fn device_id(mut self, id: impl Into<String>) -> Self {
        self.device_id = Some(id.into());
        self
    }

    /// A prefix for the device id (`"warehouse-a"` or an [`IdPrefix`]).
    pub fn id_prefix(mut self, prefix: impl Into<IdPrefix>) -> Self {
        self.id_prefix = Some(prefix.into());
        self
    }

    /// Where the platform runs: [`Profile::Local`] (default), [`Profile::Localstack`],
    /// [`Profile::Aws`].
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = Some(profile);
        self
    }

    /// `mqtt://host:port` or `mqtts://host:port` (default [`DEFAULT_TARGET`]; with
    /// [`Profile::Aws`] the ATS endpoint, a bare host meaning `mqtts://host:8883`).
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
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
        self.no_schema_on_boot = Some(yes);
        self
    }

    /// Installs a `tracing` fmt subscriber at this level, unless the application
    /// already installed one. Without a level (here, in the file or the environment)
    /// the SDK installs nothing.
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.log_level = Some(level);
        self
    }

    /// Client certificate, key and CA as PEM bytes (needs an `mqtts://` target).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(CredentialSource::Pem(credentials));
        self
    }

    /// Client certificate, key and CA read from PEM files at [`Builder::build`].
    pub fn tls_files(
        mut self,
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
        ca_path: impl Into<PathBuf>,
    ) -> Self {
        self.credentials = Some(CredentialSource::Files {
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
        self.credentials = Some(CredentialSource::Files {
            cert: cert_path.into(),
            key: key_path.into(),
            ca: None,
        });
        self
    }

    /// Directories searched for `tls.crt`, `tls.key` and `ca.crt` when a TLS target
    /// has no credentials configured (default: `./`, `~/.config/mir/`, `/etc/mir/`).
    pub fn credentials_search_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.credential_dirs = Some(dirs);
        self
    }

    /// Interval between heartbeats (default 30 s); one is also sent on every connect.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = Some(interval);
        self
    }

    /// How long telemetry waits for more messages before its batch is sent (default 50 ms).
    pub fn telemetry_linger(mut self, linger: Duration) -> Self {
        self.telemetry_linger = Some(linger);
        self
    }

    /// Longest a command handler may run when the request carries no earlier deadline
    /// (default 10 s); past it the device answers TIMEOUT.
    pub fn command_timeout_default(mut self, timeout: Duration) -> Self {
        self.command_timeout = Some(timeout);
        self
    }

    /// Capacity of the queue from the application to the event loop (default 1024).
    /// When it is full, sends return [`crate::SdkError::QueueFull`] instead of blocking.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = Some(capacity);
        self
    }

    /// Bytes of records (telemetry batches, reported properties) kept in memory
    /// (default 8 MiB); beyond it the oldest go to the store, or are dropped without one.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = Some(bytes);
        self
    }

    /// The offline store (Mir's `Store(StoreOptions{..})`); unset fields come from the
    /// lower layers.
    pub fn store(mut self, options: StoreOptions) -> Self {
        self.store = options;
        self
    }

    /// Reconnection delays: exponential backoff with full jitter, the first ceiling
    /// `min` doubling up to `max` (default 1 s to 128 s).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = Some(min);
        self.backoff_max = Some(max);
        self
    }

    /// MQTT persistent session (`clean_session = false`, default true): the broker
    /// keeps the subscriptions and queues QoS 1 commands while the device is away.
    pub fn persistent_session(mut self, yes: bool) -> Self {
        self.persistent_session = Some(yes);
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
        let (config, _) = self.resolve_all()?;
        build_device(config)
    }

    /// Like [`Builder::build`], also returning the `user:` section of the
    /// configuration file deserialized into the application's type (Mir's
    /// `BuildWithExtraConfig`). Wrap secrets in [`Secret`] to keep them out of logs.
    pub fn build_with_user_config<T: serde::de::DeserializeOwned>(
        self,
    ) -> Result<(Mir, T), BuildError> {
        let (config, user) = self.resolve_all()?;
        let path = config.config_file.clone().unwrap_or_default();
        let user: T = serde_yaml::from_value(user).map_err(|e| BuildError::ConfigFile {
            path,
            reason: format!("user: {e}"),
        })?;
        Ok((build_device(config)?, user))
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
        let config = self.resolve_layers(&file.mir, &env, file.path.clone())?;
        Ok((config, file.user))
    }

    fn resolve_layers(
        self,
        f: &MirSection,
        e: &MirSection,
        config_file: Option<PathBuf>,
    ) -> Result<Config, BuildError> {
        for layer in [f, e] {
            if layer.credentials.as_deref().is_some_and(|c| !c.is_empty()) {
                tracing::warn!(
                    "mir.credentials (a NATS credentials file) has no use on AWS IoT: ignored; \
                     use tlsCert/tlsKey/rootCA"
                );
            }
        }
        let raw_id = self
            .device_id
            .or_else(|| f.device_id().map(str::to_string))
            .or_else(|| e.device_id().map(str::to_string))
            .ok_or(BuildError::MissingDeviceId)?;
        let prefix = match self.id_prefix {
            Some(p) => p,
            None => {
                let (fp, ep) = (f.id_prefix(), e.id_prefix());
                IdPrefix {
                    prefix: fp
                        .and_then(|p| p.prefix.clone())
                        .or_else(|| ep.and_then(|p| p.prefix.clone()))
                        .unwrap_or_default(),
                    hostname: fp
                        .and_then(|p| p.hostname)
                        .or_else(|| ep.and_then(|p| p.hostname))
                        .unwrap_or(false),
                    username: fp
                        .and_then(|p| p.username)
                        .or_else(|| ep.and_then(|p| p.username))
                        .unwrap_or(false),
                }
            }
        };
        let mut parts = prefix.parts();
        parts.push(raw_id);
        let id = parts.join("_");
        let device_id = DeviceId::new(id.clone())
            .map_err(|source| BuildError::InvalidDeviceId { id, source })?;

        let profile = match self.profile {
            Some(p) => p,
            None => match f.profile.as_deref().or(e.profile.as_deref()) {
                Some(p) => p.parse()?,
                None => Profile::default(),
            },
        };
        let raw_target = self
            .target
            .or_else(|| f.target.clone())
            .or_else(|| e.target.clone());
        let target: Target = match (profile, raw_target) {
            (Profile::Aws, None) => {
                return Err(BuildError::InvalidOption {
                    option: "target",
                    reason: "the aws profile needs the account's ATS endpoint \
                             (xxx-ats.iot.<region>.amazonaws.com)"
                        .into(),
                })
            }
            (Profile::Aws, Some(t)) if !t.contains("://") => format!("mqtts://{t}").parse()?,
            (_, Some(t)) => t.parse()?,
            (_, None) => DEFAULT_TARGET.parse()?,
        };
        if profile == Profile::Aws && target.scheme != Scheme::Mqtts {
            return Err(BuildError::InvalidOption {
                option: "target",
                reason: format!("AWS IoT Core needs mqtts:// (mutual TLS), not {target}"),
            });
        }

        let credentials = match self.credentials {
            Some(CredentialSource::Pem(c)) => Some(c),
            Some(CredentialSource::Files { cert, key, ca }) => {
                let ca = ca.map(|ca| read("CA certificate", &ca)).transpose()?;
                Some(Credentials {
                    client_cert_pem: read("client certificate", &cert)?,
                    client_key_pem: read("client key", &key)?,
                    ca_pem: ca.or_else(|| aws_ca(profile)),
                })
            }
            None => {
                let cert = f.tls_cert.clone().or_else(|| e.tls_cert.clone());
                let key = f.tls_key.clone().or_else(|| e.tls_key.clone());
                let ca = f.root_ca.clone().or_else(|| e.root_ca.clone());
                let found = if target.scheme == Scheme::Mqtts {
                    let dirs = self
                        .credential_dirs
                        .clone()
                        .unwrap_or_else(credentials::default_search_dirs);
                    credentials::search(&dirs)
                } else {
                    credentials::FoundCredentials::default()
                };
                let (cert, key) = match (cert, key) {
                    (Some(c), Some(k)) => (Some(c), Some(k)),
                    (None, None) => (found.cert, found.key),
                    (c, k) => {
                        return Err(BuildError::InvalidOption {
                            option: "tlsCert/tlsKey",
                            reason: format!("give both or neither (certificate {c:?}, key {k:?})"),
                        })
                    }
                };
                let ca_pem = match ca.or(found.ca) {
                    Some(path) => Some(read("CA certificate", &path)?),
                    None => aws_ca(profile),
                };
                match (cert, key) {
                    (Some(cert), Some(key)) => Some(Credentials {
                        client_cert_pem: read("client certificate", &cert)?,
                        client_key_pem: read("client key", &key)?,
                        ca_pem,
                    }),
                    _ if profile == Profile::Aws => {
                        return Err(BuildError::InvalidOption {
                            option: "credentials",
                            reason: "AWS IoT Core needs the device certificate and key \
                                     (tls.crt and tls.key in ./, ~/.config/mir/ or /etc/mir/)"
                                .into(),
                        })
                    }
                    _ => None,
                }
            }
        };
        let tls = match target.scheme {
            Scheme::Mqtts => Some(crate::tls::client_config(
                credentials.as_ref(),
                target.port,
            )?),
            Scheme::Mqtt if credentials.is_some() => {
                return Err(BuildError::CredentialsWithoutTls(target.to_string()))
            }
            Scheme::Mqtt => None,
        };

        let heartbeat_interval = self
            .heartbeat_interval
            .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL);
        if heartbeat_interval < Duration::from_millis(100) {
            return Err(BuildError::InvalidOption {
                option: "heartbeat_interval",
                reason: format!("{heartbeat_interval:?} is below 100 ms"),
            });
        }
        let command_timeout = self.command_timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT);
        if command_timeout.is_zero() {
            return Err(BuildError::InvalidOption {
                option: "command_timeout_default",
                reason: "must be above zero".into(),
            });
        }
        let queue_capacity = self.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY);
        if queue_capacity == 0 {
            return Err(BuildError::InvalidOption {
                option: "queue_capacity",
                reason: "must be at least 1".into(),
            });
        }
        let max_queued_bytes = self.max_queued_bytes.unwrap_or(DEFAULT_MAX_QUEUED_BYTES);
        if max_queued_bytes < MAX_PAYLOAD_BYTES {
            return Err(BuildError::InvalidOption {
                option: "max_queued_bytes",
                reason: format!("must hold at least one batch ({MAX_PAYLOAD_BYTES} bytes)"),
            });
        }

        // The store, field by field.
        let (fs, es) = (f.store(), e.store());
        let b = self.store;
        let persistence = match b.persistence_type {
            Some(p) => p,
            None => match fs
                .persistence_type
                .as_deref()
                .or(es.persistence_type.as_deref())
            {
                Some(p) => p.parse()?,
                None => Persistence::default(),
            },
        };
        let in_memory = b
            .in_memory
            .or(fs.in_memory)
            .or(es.in_memory)
            .unwrap_or(false);
        let folder = b
            .folder_path
            .or(fs.folder_path)
            .or(es.folder_path)
            .filter(|p| !p.as_os_str().is_empty());
        let store_folder = if in_memory || persistence == Persistence::NoStorage {
            None
        } else {
            folder
        };
        let retention = b
            .retention_limit
            .or(fs.retention_limit)
            .or(es.retention_limit)
            .unwrap_or(DEFAULT_RETENTION);
        if retention.is_zero() {
            return Err(BuildError::InvalidOption {
                option: "localStore.retentionLimit",
                reason: "must be above zero".into(),
            });
        }
        let disk_limit_percent = b
            .disk_space_limit
            .or(fs.disk_space_limit)
            .or(es.disk_space_limit)
            .unwrap_or(DEFAULT_DISK_LIMIT_PERCENT);
        if !(disk_limit_percent > 0.0 && disk_limit_percent <= 100.0) {
            return Err(BuildError::InvalidOption {
                option: "localStore.diskSpaceLimit",
                reason: format!("{disk_limit_percent} is not a percentage in (0, 100]"),
            });
        }
        let max_store_bytes = b.max_bytes.or(fs.max_bytes).or(es.max_bytes);

        let (fb, eb) = (f.backoff(), e.backoff());
        let backoff_min = self
            .backoff_min
            .or(fb.min)
            .or(eb.min)
            .unwrap_or(DEFAULT_BACKOFF_MIN);
        let backoff_max = self
            .backoff_max
            .or(fb.max)
            .or(eb.max)
            .unwrap_or(DEFAULT_BACKOFF_MAX);
        if backoff_min.is_zero() || backoff_max < backoff_min {
            return Err(BuildError::InvalidOption {
                option: "backoff",
                reason: format!("need 0 < min <= max, got {backoff_min:?} and {backoff_max:?}"),
            });
        }
        let log_level = match self.log_level {
            Some(l) => Some(l),
            None => f
                .log_level
                .as_deref()
                .or(e.log_level.as_deref())
                .map(str::parse)
                .transpose()?,
        };

        Ok(Config {
            device_id,
            profile,
            target,
            tls,
            schema: compressed_schema(&self.schemas)?,
            no_schema_on_boot: self
                .no_schema_on_boot
                .or(f.no_schema_on_boot())
                .or(e.no_schema_on_boot())
                .unwrap_or(false),
            heartbeat_interval,
            telemetry_linger: self.telemetry_linger.unwrap_or(DEFAULT_TELEMETRY_LINGER),
            command_timeout,
            queue_capacity,
            max_queued_bytes,
            persistence,
            store_folder,
            retention,
            disk_limit_percent,
            max_store_bytes,
            backoff_min,
            backoff_max,
            persistent_session: self
                .persistent_session
                .or(f.persistent_session)
                .or(e.persistent_session)
                .unwrap_or(true),
            log_level,
            config_file,
        })
    }
}

/// Amazon Root CA 1 for the aws profile.
fn aws_ca(profile: Profile) -> Option<Vec<u8>> {
    (profile == Profile::Aws).then(|| credentials::AMAZON_ROOT_CA_1.as_bytes().to_vec())
}

/// Installs the log subscriber, opens the store and creates the device.
fn build_device(config: Config) -> Result<Mir, BuildError> {
    if let Some(level) = config.log_level {
        // Ignored when the application already installed a subscriber.
        let _ = tracing_subscriber::fmt()
            .with_max_level(level.as_tracing())
            .try_init();
    }
    if config.store_folder.is_none() && config.persistence != Persistence::NoStorage {
        tracing::info!(
            "no localStore.folderPath: the offline queue is kept in memory only \
             (bounded, lost on restart)"
        );
    }
    let store: Option<Box<dyn Store>> = match &config.store_folder {
        Some(folder) => Some(Box::new(RedbStore::open(folder)?)),
        None => None,
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
    Ok(Mir::new(config, store))
}

/// How the schema is compressed in `Hello`.
pub(crate) const SCHEMA_COMPRESSION: Compression = Compression::Zlib;

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|source| BuildError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// A `FileDescriptorSet` read as raw file entries, so that merging keeps every byte of
/// each file: `prost_types` would drop the custom options (`mir.device.v1.*`) the
/// server needs to tell telemetry, commands and config apart.
#[derive(Clone, PartialEq, prost::Message)]
struct RawDescriptorSet {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    file: Vec<Bytes>,
}

/// Only the name of a `FileDescriptorProto`.
#[derive(Clone, PartialEq, prost::Message)]
struct FileName {
    #[prost(string, tag = "1")]
    name: String,
}

/// Merges the descriptor sets (a file present in several sets is kept once) and
/// compresses the result with zlib.
fn compressed_schema(sets: &[Vec<u8>]) -> Result<Bytes, BuildError> {
    let mut merged = RawDescriptorSet::default();
    let mut names = Vec::new();
    for (index, bytes) in sets.iter().enumerate() {
        // Validates the whole set once with the typed decoder.
        prost_types::FileDescriptorSet::decode(bytes.as_slice())
            .map_err(|source| BuildError::InvalidSchema { index, source })?;
        let raw = RawDescriptorSet::decode(bytes.as_slice())
            .map_err(|source| BuildError::InvalidSchema { index, source })?;
        for file in raw.file {
            let name = FileName::decode(file.clone())
                .map_err(|source| BuildError::InvalidSchema { index, source })?
                .name;
            if !names.contains(&name) {
                names.push(name);
                merged.file.push(file);
            }
        }
    }
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(&merged.encode_to_vec())
        .map_err(BuildError::CompressSchema)?;
    let compressed = encoder.finish().map_err(BuildError::CompressSchema)?;
    Ok(compressed.into())
}

#[cfg(test)]
mod tests;
