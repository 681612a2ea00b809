//! The public option types of a device ([`Profile`], [`Persistence`], [`StoreOptions`],
//! [`LogLevel`], [`IdPrefix`], [`Credentials`], [`Target`]), their defaults, and the
//! resolved [`Config`] the event loop runs with.

use std::{fmt, path::PathBuf, str::FromStr, sync::Arc, time::Duration};

use bytes::Bytes;
use mir_proto::{wire::Compression, DeviceId};

use crate::BuildError;

/// Default target: the local hub's plain MQTT listener.
pub const DEFAULT_TARGET: &str = "mqtt://127.0.0.1:1883";
/// Default interval between heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// Default interval between heartbeats on the `aws` profile: AWS IoT's lifecycle events
/// tell the cloud when a device connects and disconnects, so a heartbeat only proves
/// a quiet device is still there; every 15 minutes keeps an idle device at about a
/// cent a month (docs/cost.md). The device reports it in `Hello`, and the cloud
/// marks the device offline after three missed heartbeats.
pub const AWS_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// Default batching window of telemetry.
pub const DEFAULT_TELEMETRY_LINGER: Duration = Duration::from_millis(50);
/// Default time a command handler may run (docs/architecture.md, Routes: commands time out
/// after 10 s).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Default capacity of the queue between the application and the event loop.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// Default bytes of telemetry kept in memory while offline.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;
/// Default MQTT keep-alive (AWS IoT Core accepts 30 s to 1,200 s).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Shortest keep-alive AWS IoT Core accepts.
pub const AWS_MIN_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Longest keep-alive AWS IoT Core accepts.
pub const MAX_KEEP_ALIVE: Duration = Duration::from_secs(1200);
/// Default time between two TCP keepalive probes of an unanswered link.
pub const DEFAULT_TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Default unanswered TCP keepalive probes after which the kernel drops the connection.
pub const DEFAULT_TCP_KEEPALIVE_RETRIES: u32 = 3;
/// Longest TCP keepalive idle time or interval (Linux's limit, 32,767 s).
pub const MAX_TCP_KEEPALIVE: Duration = Duration::from_secs(32_767);
/// Most TCP keepalive probes (Linux's limit).
pub const MAX_TCP_KEEPALIVE_RETRIES: u32 = 127;

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
    /// Every message goes through the store first and leaves it on PUBACK:
    /// `send_telemetry(..).await` returns once the message is committed, so a message
    /// it returned `Ok` for is not lost even if the process is killed while online
    /// (see the crate docs, "What is durable when").
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
    /// Folder of the store database (default: [`default_store_folder`], the standard
    /// per-device folder).
    pub folder_path: Option<PathBuf>,
    /// Keep the queue in memory only (bounded, lost on restart): an explicit choice.
    pub in_memory: Option<bool>,
    /// A store that cannot be opened stops [`crate::Builder::build`]
    /// ([`crate::BuildError::Store`]) instead of starting the device on the bounded
    /// memory queue (default false).
    pub required: Option<bool>,
    /// Records older than this are dropped (default one week).
    pub retention_limit: Option<Duration>,
    /// Most used percentage of the file system holding the store (default 85).
    pub disk_space_limit: Option<f64>,
    /// Most bytes in the store (default: only the disk limit).
    pub max_bytes: Option<u64>,
    pub persistence_type: Option<Persistence>,
}

/// Log level of the subscriber the SDK installs (see [`crate::Builder::log_level`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    #[cfg(feature = "log-subscriber")]
    pub(crate) fn as_tracing(self) -> tracing::Level {
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

/// How the subscriber the SDK installs prints (see [`crate::Builder::log_format`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (tracing-subscriber's fmt).
    #[default]
    Text,
    /// One JSON object per line (needs the feature `json-logs`; without it, text).
    Json,
}

impl FromStr for LogFormat {
    type Err = BuildError;
    /// `text` or `json`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(BuildError::InvalidOption {
                option: "log format",
                reason: format!("{s:?} is not one of text, json"),
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
    pub(super) fn parts(&self) -> Vec<String> {
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

/// TCP keepalive on the MQTT socket (`SO_KEEPALIVE`, `TCP_KEEPIDLE`, `TCP_KEEPINTVL`,
/// `TCP_KEEPCNT`): after `idle` without any packet, the kernel sends a probe every
/// `interval`, and drops the connection after `retries` unanswered ones, so a link
/// that went silent is given up at most `idle + interval × retries` after its last
/// packet. Whole seconds (the kernel's unit). Default: `idle` = the MQTT keep-alive,
/// 10 s, 3 probes; `tcpKeepalive.enabled: false` / [`crate::Builder::no_tcp_keepalive`]
/// turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpKeepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub retries: u32,
}

/// The resolved configuration of a device.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub device_id: DeviceId,
    pub profile: Profile,
    pub target: Target,
    /// The TLS configuration as built (the first connection uses it).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The credential files, read again at every connection attempt.
    pub tls_files: Option<super::tls_files::TlsFiles>,
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
    /// A store that cannot be opened is fatal.
    pub store_required: bool,
    pub retention: Duration,
    pub disk_limit_percent: f64,
    pub max_store_bytes: Option<u64>,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Shortest time between two CONNECTs.
    pub connect_interval: Duration,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// TCP keepalive on the socket (`None`: off).
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Pacing of publishes (`None`: unpaced).
    pub pace: Option<crate::Pace>,
    pub persistent_session: bool,
    pub log_level: Option<LogLevel>,
    pub log_format: LogFormat,
    /// The configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Where message times come from.
    pub clock: Arc<dyn crate::clock::WallClock>,
}

/// How the schema is compressed in `Hello`.
pub(crate) const SCHEMA_COMPRESSION: Compression = Compression::Zlib;

/// The standard folder of a device's offline store: `$XDG_STATE_HOME/mir/devices/{id}`,
/// else `~/.local/state/mir/devices/{id}`, else `/var/lib/mir/devices/{id}`.
pub fn default_store_folder(device_id: &DeviceId) -> PathBuf {
    let non_empty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
    let base = std::env::var_os("XDG_STATE_HOME")
        .and_then(non_empty)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(non_empty)
                .map(|h| h.join(".local").join("state"))
        })
        .map(|state| state.join("mir"))
        .unwrap_or_else(|| PathBuf::from("/var/lib/mir"));
    base.join("devices").join(device_id.as_str())
}
