//! Device configuration: the [`Builder`] and what it validates.
//!
//! Every option is resolved here into a [`Config`] before anything runs, so that a
//! `device.yaml` file and `MIR__...` environment variables (a later version) only add
//! sources below the builder: builder > file > env > defaults.

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

use crate::{client::Mir, BuildError};

/// Default target: the local hub's plain MQTT listener.
pub const DEFAULT_TARGET: &str = "mqtt://127.0.0.1:1883";
/// Default interval between heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// Default batching window of telemetry.
pub const DEFAULT_TELEMETRY_LINGER: Duration = Duration::from_millis(50);
/// Default time a command handler may run (DESIGN.md section 8: commands time out after 10 s).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Default capacity of the queue between the application and the event loop.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// Default bytes of telemetry kept in memory while offline.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;
/// MQTT keep alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Delay before reconnecting after a connection error.
pub const RECONNECT_DELAY: Duration = Duration::from_secs(1);

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
    pub target: Target,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The FileDescriptorSet, zlib compressed.
    pub schema: Bytes,
    pub heartbeat_interval: Duration,
    pub telemetry_linger: Duration,
    pub command_timeout: Duration,
    pub queue_capacity: usize,
    pub max_queued_bytes: usize,
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

/// Builds a [`Mir`] device, like Mir's Go `mir.Builder()`.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    device_id: Option<String>,
    id_prefix: Option<IdPrefix>,
    target: Option<String>,
    schemas: Vec<Vec<u8>>,
    log_level: Option<LogLevel>,
    credentials: Option<CredentialSource>,
    heartbeat_interval: Option<Duration>,
    telemetry_linger: Option<Duration>,
    command_timeout: Option<Duration>,
    queue_capacity: Option<usize>,
    max_queued_bytes: Option<usize>,
}

impl Builder {
    /// The device id: `^[a-zA-Z0-9:_-]{1,128}$` once prefixed. Also the MQTT client id.
    pub fn device_id(mut self, id: impl Into<String>) -> Self {
        self.device_id = Some(id.into());
        self
    }

    /// A prefix for the device id (`"warehouse-a"` or an [`IdPrefix`]).
    pub fn id_prefix(mut self, prefix: impl Into<IdPrefix>) -> Self {
        self.id_prefix = Some(prefix.into());
        self
    }

    /// `mqtt://host:port` or `mqtts://host:port` (default [`DEFAULT_TARGET`]).
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

    /// Installs a `tracing` fmt subscriber at this level, unless the application
    /// already installed one. Without this call the SDK installs nothing.
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

    /// Bytes of telemetry batches kept in memory while offline (default 8 MiB); the
    /// oldest batches are dropped beyond it.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = Some(bytes);
        self
    }

    /// Validates everything and returns the device, not yet connected (see [`Mir::launch`]).
    pub fn build(self) -> Result<Mir, BuildError> {
        if let Some(level) = self.log_level {
            // Ignored when the application already installed a subscriber.
            let _ = tracing_subscriber::fmt()
                .with_max_level(level.as_tracing())
                .try_init();
        }
        let config = self.resolve()?;
        Ok(Mir::new(config))
    }

    pub(crate) fn resolve(self) -> Result<Config, BuildError> {
        let raw_id = self.device_id.ok_or(BuildError::MissingDeviceId)?;
        let mut parts = self.id_prefix.map(|p| p.parts()).unwrap_or_default();
        parts.push(raw_id);
        let id = parts.join("_");
        let device_id = DeviceId::new(id.clone())
            .map_err(|source| BuildError::InvalidDeviceId { id, source })?;

        let target: Target = self.target.as_deref().unwrap_or(DEFAULT_TARGET).parse()?;
        let credentials = match self.credentials {
            None => None,
            Some(CredentialSource::Pem(c)) => Some(c),
            Some(CredentialSource::Files { cert, key, ca }) => Some(Credentials {
                client_cert_pem: read("client certificate", &cert)?,
                client_key_pem: read("client key", &key)?,
                ca_pem: ca.map(|ca| read("CA certificate", &ca)).transpose()?,
            }),
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

        Ok(Config {
            device_id,
            target,
            tls,
            schema: compressed_schema(&self.schemas)?,
            heartbeat_interval,
            telemetry_linger: self.telemetry_linger.unwrap_or(DEFAULT_TELEMETRY_LINGER),
            command_timeout,
            queue_capacity,
            max_queued_bytes,
        })
    }
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
