//! The `device.yaml` file (Mir's layout: a `mir:` section and a free `user:` section)
//! and `MIR__...` environment variables, both read into a [`Layer`].

use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::layers::Layer;
use crate::BuildError;

/// The file searched by [`crate::Builder::default_config_file`], in this order:
/// `./device.yaml`, `~/.config/mir/device.yaml`, `/etc/mir/device.yaml`.
pub fn default_config_paths() -> Vec<PathBuf> {
    default_dirs()
        .into_iter()
        .map(|d| d.join("device.yaml"))
        .collect()
}

/// `./`, `~/.config/mir/`, `/etc/mir/`: where Mir looks for its files.
pub fn default_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(".")];
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        dirs.push(PathBuf::from(home).join(".config").join("mir"));
    }
    dirs.push(PathBuf::from("/etc/mir"));
    dirs
}

/// A parsed `device.yaml`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigFile {
    pub path: Option<PathBuf>,
    pub mir: Layer,
    pub user: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLayout {
    #[serde(default)]
    mir: Option<Value>,
    #[serde(default)]
    user: Option<Value>,
}

impl ConfigFile {
    pub fn parse(path: &Path, text: &str) -> Result<Self, BuildError> {
        let bad = |reason: String| BuildError::ConfigFile {
            path: path.to_path_buf(),
            reason,
        };
        let layout: FileLayout = if text.trim().is_empty() {
            FileLayout {
                mir: None,
                user: None,
            }
        } else {
            serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?
        };
        let mir = match layout.mir {
            None | Some(Value::Null) => Layer::default(),
            Some(v) => serde_yaml::from_value(v).map_err(|e| bad(format!("mir: {e}")))?,
        };
        Ok(Self {
            path: Some(path.to_path_buf()),
            mir,
            user: layout.user.unwrap_or(Value::Null),
        })
    }

    pub fn read(path: &Path) -> Result<Self, BuildError> {
        let text = std::fs::read_to_string(path).map_err(|source| BuildError::ReadFile {
            what: "configuration",
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// The first file of `paths` that exists, or none.
    pub fn search(paths: &[PathBuf]) -> Result<Self, BuildError> {
        match paths.iter().find(|p| p.is_file()) {
            Some(p) => Self::read(p),
            None => Ok(Self::default()),
        }
    }
}

/// The environment variables of the `mir:` section: name (after `MIR__`) and path in
/// the section. `__` separates levels, as in Mir's server variables.
const ENV_KEYS: &[(&str, &[&str])] = &[
    ("TARGET", &["target"]),
    ("PROFILE", &["profile"]),
    ("ROOT_CA", &["rootCA"]),
    ("TLS_CERT", &["tlsCert"]),
    ("TLS_KEY", &["tlsKey"]),
    ("LOG_LEVEL", &["logLevel"]),
    ("LOG_FORMAT", &["logFormat"]),
    ("DEVICE__ID", &["device", "id"]),
    ("DEVICE_ID", &["device", "id"]),
    (
        "DEVICE__ID_PREFIX__PREFIX",
        &["device", "idPrefix", "prefix"],
    ),
    ("ID_PREFIX__PREFIX", &["device", "idPrefix", "prefix"]),
    (
        "DEVICE__ID_PREFIX__HOSTNAME",
        &["device", "idPrefix", "hostname"],
    ),
    ("ID_PREFIX__HOSTNAME", &["device", "idPrefix", "hostname"]),
    (
        "DEVICE__ID_PREFIX__USERNAME",
        &["device", "idPrefix", "username"],
    ),
    ("ID_PREFIX__USERNAME", &["device", "idPrefix", "username"]),
    ("DEVICE__NO_SCHEMA_ON_BOOT", &["device", "noSchemaOnBoot"]),
    ("LOCAL_STORE__FOLDER_PATH", &["localStore", "folderPath"]),
    ("LOCAL_STORE__IN_MEMORY", &["localStore", "inMemory"]),
    ("LOCAL_STORE__REQUIRED", &["localStore", "required"]),
    (
        "LOCAL_STORE__RETENTION_LIMIT",
        &["localStore", "retentionLimit"],
    ),
    (
        "LOCAL_STORE__DISK_SPACE_LIMIT",
        &["localStore", "diskSpaceLimit"],
    ),
    ("LOCAL_STORE__MAX_BYTES", &["localStore", "maxBytes"]),
    (
        "LOCAL_STORE__PERSISTENCE_TYPE",
        &["localStore", "persistenceType"],
    ),
    (
        "LOCAL_STORE__PERSISTENCE",
        &["localStore", "persistenceType"],
    ),
    ("BACKOFF__MIN", &["backoff", "min"]),
    ("BACKOFF__MAX", &["backoff", "max"]),
    ("BACKOFF__CONNECT_INTERVAL", &["backoff", "connectInterval"]),
    ("KEEP_ALIVE", &["keepAlive"]),
    ("TCP_KEEPALIVE__ENABLED", &["tcpKeepalive", "enabled"]),
    ("TCP_KEEPALIVE__IDLE", &["tcpKeepalive", "idle"]),
    ("TCP_KEEPALIVE__INTERVAL", &["tcpKeepalive", "interval"]),
    ("TCP_KEEPALIVE__RETRIES", &["tcpKeepalive", "retries"]),
    ("PACE__ENABLED", &["pace", "enabled"]),
    (
        "PACE__PUBLISHES_PER_SECOND",
        &["pace", "publishesPerSecond"],
    ),
    ("PACE__BYTES_PER_SECOND", &["pace", "bytesPerSecond"]),
    ("PERSISTENT_SESSION", &["persistentSession"]),
];

/// The `mir:` section from `MIR__...` variables (others are ignored; unknown
/// `MIR__` names are warned about).
pub(crate) fn from_env(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Layer, BuildError> {
    let mut root = Mapping::new();
    for (name, raw) in vars {
        let Some(key) = name.strip_prefix("MIR__") else {
            continue;
        };
        let Some((_, path)) = ENV_KEYS.iter().find(|(k, _)| *k == key) else {
            tracing::warn!(variable = name, "unknown MIR__ variable, ignored");
            continue;
        };
        // Typed like YAML (`true`, `85`), except values that must stay strings.
        let keep_string = matches!(
            path.last(),
            Some(
                &"id" | &"prefix" | &"target" | &"folderPath" | &"rootCA" | &"tlsCert" | &"tlsKey"
            )
        );
        let value = if keep_string {
            Value::String(raw.clone())
        } else {
            serde_yaml::from_str::<Value>(&raw).unwrap_or(Value::String(raw.clone()))
        };
        insert(&mut root, path, value);
    }
    serde_yaml::from_value(Value::Mapping(root)).map_err(|e| BuildError::Environment(e.to_string()))
}

fn insert(map: &mut Mapping, path: &[&str], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let key = Value::String((*first).to_string());
    if rest.is_empty() {
        map.insert(key, value);
        return;
    }
    let entry = map
        .entry(key)
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if !entry.is_mapping() {
        *entry = Value::Mapping(Mapping::new());
    }
    if let Value::Mapping(m) = entry {
        insert(m, rest, value);
    }
}

/// A configuration value kept out of logs: `Debug` and `Display` print `***`, as Mir's
/// `cfg:"secret"` tag. Deserializes transparently from the `user:` section.
///
/// ```
/// use mir_device_sdk::Secret;
/// #[derive(Debug, serde::Deserialize)]
/// struct App { api_key: Secret<String> }
/// let app: App = serde_yaml::from_str("api_key: hunter2").unwrap();
/// assert_eq!(format!("{app:?}"), r#"App { api_key: *** }"#);
/// assert_eq!(app.api_key.expose(), "hunter2");
/// ```
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret value itself: do not log it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
