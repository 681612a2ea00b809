//! Device configuration: the [`Builder`], `device.yaml`, `MIR__...` environment
//! variables, and what they validate.
//!
//! Every option is resolved into a [`Config`] before anything runs, from four layers
//! in this order of priority: builder > file > env > defaults (Mir's order).
//!
//! - `types`: the public option types, their defaults, the resolved [`Config`];
//! - `layers`: one [`layers::Layer`] of every option per source, merged field by field;
//! - `builder`: the [`Builder`], the top layer;
//! - `file`: `device.yaml` and the `MIR__...` variables, read into layers;
//! - `validate`: defaults, checks and derived values, into a [`Config`].

mod builder;
pub(crate) mod file;
mod layers;
mod tls_files;
mod types;
mod validate;

pub use builder::Builder;
pub use file::{default_config_paths, Secret};
pub use types::{
    default_store_folder, Credentials, IdPrefix, LogFormat, LogLevel, Persistence, Profile, Scheme,
    StoreOptions, Target, TcpKeepalive, AWS_HEARTBEAT_INTERVAL, DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_DISK_LIMIT_PERCENT, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_KEEP_ALIVE,
    DEFAULT_MAX_QUEUED_BYTES, DEFAULT_QUEUE_CAPACITY, DEFAULT_RETENTION, DEFAULT_TARGET,
    DEFAULT_TCP_KEEPALIVE_INTERVAL, DEFAULT_TCP_KEEPALIVE_RETRIES, DEFAULT_TELEMETRY_LINGER,
    MAX_KEEP_ALIVE, MAX_TCP_KEEPALIVE, MAX_TCP_KEEPALIVE_RETRIES,
};
pub(crate) use types::{Config, SCHEMA_COMPRESSION};

#[cfg(test)]
use crate::client::Mir;
#[cfg(test)]
use crate::BuildError;
#[cfg(test)]
use validate::compressed_schema;

#[cfg(test)]
mod tcp_keepalive_tests;
#[cfg(test)]
mod tests;
