//! The layers of options: the builder, `device.yaml`'s `mir:` section, `MIR__...`
//! environment variables. Each one is a [`Layer`]: every option, unset unless that
//! layer gives it. The layers merge field by field with one generic [`Merge`] (the
//! higher layer wins per field, nested sections merge field by field too), in the
//! order builder > file > environment; the defaults come last, at resolution
//! (`validate.rs`).
//!
//! A new option is one field here (the file and the environment read it through
//! serde; `#[serde(skip)]` keeps it to the builder) and its default at resolution.

use std::{path::PathBuf, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer};
use serde_yaml::Value;

use super::{Credentials, LogFormat, LogLevel, Persistence, Profile, StoreOptions};
use crate::BuildError;

/// Merging two layers of the same options: `self` is the higher layer.
pub(crate) trait Merge {
    fn merge(self, lower: Self) -> Self;
}

/// An option set in both layers merges (a section field by field, a value: the higher
/// one); set in one, it is that one's.
impl<T: Merge> Merge for Option<T> {
    fn merge(self, lower: Self) -> Self {
        match (self, lower) {
            (Some(higher), Some(lower)) => Some(higher.merge(lower)),
            (higher, lower) => higher.or(lower),
        }
    }
}

/// Plain values: the higher layer's wins.
macro_rules! higher_wins {
    ($($ty:ty),* $(,)?) => {
        $(impl Merge for $ty {
            fn merge(self, _lower: Self) -> Self {
                self
            }
        })*
    };
}

higher_wins!(
    String,
    bool,
    f64,
    u32,
    u64,
    usize,
    PathBuf,
    Duration,
    Vec<PathBuf>,
    CredentialSource
);

impl<T> Merge for Setting<T> {
    fn merge(self, _lower: Self) -> Self {
        self
    }
}

/// Declares a section of options and its field-by-field [`Merge`].
macro_rules! layered {
    (
        $(#[$meta:meta])*
        pub(crate) struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident: $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub(crate) struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl Merge for $name {
            fn merge(self, lower: Self) -> Self {
                Self {
                    $( $field: self.$field.merge(lower.$field), )*
                }
            }
        }
    };
}

/// A value given in code, or text from the file or the environment that is parsed
/// only if it wins (an invalid value under a valid one is no error).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Setting<T> {
    Given(T),
    Text(String),
}

impl<T: FromStr<Err = BuildError>> Setting<T> {
    pub fn resolve(self) -> Result<T, BuildError> {
        match self {
            Setting::Given(value) => Ok(value),
            Setting::Text(text) => text.parse(),
        }
    }
}

impl<'de, T> Deserialize<'de> for Setting<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Setting::Text)
    }
}

/// Client credentials given to the builder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CredentialSource {
    Pem(Credentials),
    Files {
        cert: PathBuf,
        key: PathBuf,
        ca: Option<PathBuf>,
    },
}

layered! {
    /// Every option, as one layer gives it. Deserialized, it is the `mir:` section of
    /// `device.yaml` (unknown keys are refused) and the `MIR__...` variables.
    #[derive(Debug, Clone, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub(crate) struct Layer {
        pub target: Option<String>,
        /// `local` (default), `localstack` or `aws`.
        pub profile: Option<Setting<Profile>>,
        /// Mir's NATS credentials file: there is no such thing on AWS IoT (ignored, warned).
        pub credentials: Option<String>,
        #[serde(rename = "rootCA")]
        pub root_ca: Option<PathBuf>,
        pub tls_cert: Option<PathBuf>,
        pub tls_key: Option<PathBuf>,
        pub log_level: Option<Setting<LogLevel>>,
        /// `text` (default) or `json` (feature `json-logs`).
        pub log_format: Option<Setting<LogFormat>>,
        pub device: Option<DeviceSection>,
        /// Shorthand of `device.id` (folded into it by [`Layer::normalized`]).
        pub device_id: Option<String>,
        /// Shorthand of `device.idPrefix` (folded into it by [`Layer::normalized`]).
        pub id_prefix: Option<IdPrefixSection>,
        pub local_store: Option<LocalStoreSection>,
        pub backoff: Option<BackoffSection>,
        /// MQTT persistent session (`clean_session = false`), default true.
        pub persistent_session: Option<bool>,
        /// MQTT keep-alive (default 30 s; AWS IoT Core: 30 s to 1,200 s).
        #[serde(default, deserialize_with = "duration")]
        pub keep_alive: Option<Duration>,
        /// TCP keepalive on the socket (default on: idle = keep-alive, 10 s, 3 probes).
        pub tcp_keepalive: Option<TcpKeepaliveSection>,
        #[serde(skip)]
        pub heartbeat_interval: Option<Duration>,
        #[serde(skip)]
        pub telemetry_linger: Option<Duration>,
        #[serde(skip)]
        pub command_timeout: Option<Duration>,
        #[serde(skip)]
        pub queue_capacity: Option<usize>,
        #[serde(skip)]
        pub max_queued_bytes: Option<usize>,
        /// Extension: pacing of publishes on one connection.
        pub pace: Option<PaceSection>,
        /// Credentials given to the builder (they replace `tlsCert`/`tlsKey`/`rootCA`).
        #[serde(skip)]
        pub tls_credentials: Option<CredentialSource>,
        /// Where `tls.crt`, `tls.key`, `ca.crt` are searched.
        #[serde(skip)]
        pub credential_dirs: Option<Vec<PathBuf>>,
    }
}

layered! {
    #[derive(Debug, Clone, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub(crate) struct DeviceSection {
        pub id: Option<String>,
        pub id_prefix: Option<IdPrefixSection>,
        pub no_schema_on_boot: Option<bool>,
    }
}

layered! {
    #[derive(Debug, Clone, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub(crate) struct IdPrefixSection {
        pub prefix: Option<String>,
        pub hostname: Option<bool>,
        pub username: Option<bool>,
    }
}

layered! {
    #[derive(Debug, Clone, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub(crate) struct LocalStoreSection {
        pub folder_path: Option<PathBuf>,
        pub in_memory: Option<bool>,
        /// A store that cannot be opened stops the build.
        pub required: Option<bool>,
        #[serde(default, deserialize_with = "duration")]
        pub retention_limit: Option<Duration>,
        pub disk_space_limit: Option<f64>,
        /// Extension: most bytes in the store.
        pub max_bytes: Option<u64>,
        #[serde(alias = "persistence")]
        pub persistence_type: Option<Setting<Persistence>>,
    }
}

layered! {
    #[derive(Debug, Clone, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub(crate) struct PaceSection {
        /// `false`: unpaced (a local broker without AWS's limits).
        pub enabled: Option<bool>,
        pub publishes_per_second: Option<f64>,
        pub bytes_per_second: Option<f64>,
    }
}

layered! {
    #[derive(Debug, Clone, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub(crate) struct TcpKeepaliveSection {
        /// `false`: no TCP keepalive on the socket.
        pub enabled: Option<bool>,
        /// Silence before the first probe (default: the MQTT keep-alive).
        #[serde(default, deserialize_with = "duration")]
        pub idle: Option<Duration>,
        /// Between two probes (default 10 s).
        #[serde(default, deserialize_with = "duration")]
        pub interval: Option<Duration>,
        /// Unanswered probes before the connection is dropped (default 3).
        pub retries: Option<u32>,
    }
}

layered! {
    #[derive(Debug, Clone, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub(crate) struct BackoffSection {
        #[serde(default, deserialize_with = "duration")]
        pub min: Option<Duration>,
        #[serde(default, deserialize_with = "duration")]
        pub max: Option<Duration>,
        /// Shortest time between two CONNECTs (default 1 s, AWS IoT Core's limit).
        #[serde(default, deserialize_with = "duration")]
        pub connect_interval: Option<Duration>,
    }
}

/// `"168h"`, `"1m 30s"` (humantime) or a number of seconds.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|s| *s >= 0.0 && s.is_finite())
            .map(|s| Some(Duration::from_secs_f64(s)))
            .ok_or_else(|| serde::de::Error::custom(format!("invalid duration {n}"))),
        Some(Value::String(s)) => humantime::parse_duration(s.trim())
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}"))),
        Some(other) => Err(serde::de::Error::custom(format!(
            "invalid duration {other:?}"
        ))),
    }
}

impl From<StoreOptions> for LocalStoreSection {
    fn from(o: StoreOptions) -> Self {
        Self {
            folder_path: o.folder_path,
            in_memory: o.in_memory,
            required: o.required,
            retention_limit: o.retention_limit,
            disk_space_limit: o.disk_space_limit,
            max_bytes: o.max_bytes,
            persistence_type: o.persistence_type.map(Setting::Given),
        }
    }
}

impl Layer {
    /// The shorthands folded into `device`: `deviceId` into `device.id`, `idPrefix`
    /// into `device.idPrefix` (the nested key wins).
    pub fn normalized(mut self) -> Self {
        let (id, prefix) = (self.device_id.take(), self.id_prefix.take());
        if id.is_some() || prefix.is_some() {
            let device = self.device_mut();
            device.id = device.id.take().or(id);
            device.id_prefix = device.id_prefix.take().or(prefix);
        }
        self
    }

    /// The device section, created if unset.
    pub fn device_mut(&mut self) -> &mut DeviceSection {
        self.device.get_or_insert_with(DeviceSection::default)
    }

    /// Warns about keys of Mir's that have no use here.
    pub fn warn_ignored(&self) {
        if self.credentials.as_deref().is_some_and(|c| !c.is_empty()) {
            tracing::warn!(
                "mir.credentials (a NATS credentials file) has no use on AWS IoT: ignored; \
                 use tlsCert/tlsKey/rootCA"
            );
        }
    }
}

#[cfg(test)]
mod tests;
