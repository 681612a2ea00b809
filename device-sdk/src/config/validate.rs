//! From the merged options to a [`Config`]: each option's default, the checks, and
//! what is derived (the prefixed device id, the target of the profile, the
//! credentials and their TLS configuration, the compressed schema).

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use mir_proto::{DeviceId, MAX_PAYLOAD_BYTES};
use prost::Message;

use super::types::{
    TcpKeepalive, AWS_MIN_KEEP_ALIVE, DEFAULT_KEEP_ALIVE, DEFAULT_TCP_KEEPALIVE_INTERVAL,
    DEFAULT_TCP_KEEPALIVE_RETRIES, MAX_KEEP_ALIVE, MAX_TCP_KEEPALIVE, MAX_TCP_KEEPALIVE_RETRIES,
};
use super::{
    layers::{CredentialSource, Layer, PaceSection, Setting, TcpKeepaliveSection},
    tls_files::TlsFiles,
    Config, Credentials, IdPrefix, Persistence, Profile, Scheme, Target, AWS_HEARTBEAT_INTERVAL,
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_DISK_LIMIT_PERCENT, DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_MAX_QUEUED_BYTES, DEFAULT_QUEUE_CAPACITY, DEFAULT_RETENTION, DEFAULT_TARGET,
    DEFAULT_TELEMETRY_LINGER,
};
use crate::{
    backoff::{DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN},
    credentials, BuildError,
};

fn invalid(option: &'static str, reason: impl Into<String>) -> BuildError {
    BuildError::InvalidOption {
        option,
        reason: reason.into(),
    }
}

/// The winning value of a setting parsed, or `None`.
fn setting<T: std::str::FromStr<Err = BuildError>>(
    s: Option<Setting<T>>,
) -> Result<Option<T>, BuildError> {
    s.map(Setting::resolve).transpose()
}

/// Resolves the merged options (builder > file > environment) into a [`Config`].
pub(super) fn resolve(
    o: Layer,
    schemas: &[Vec<u8>],
    config_file: Option<PathBuf>,
) -> Result<Config, BuildError> {
    let device = o.device.unwrap_or_default();
    let raw_id = device.id.ok_or(BuildError::MissingDeviceId)?;
    let prefix = device.id_prefix.unwrap_or_default();
    let prefix = IdPrefix {
        prefix: prefix.prefix.unwrap_or_default(),
        hostname: prefix.hostname.unwrap_or(false),
        username: prefix.username.unwrap_or(false),
    };
    let mut parts = prefix.parts();
    parts.push(raw_id);
    let id = parts.join("_");
    let device_id =
        DeviceId::new(id.clone()).map_err(|source| BuildError::InvalidDeviceId { id, source })?;

    let profile = setting(o.profile)?.unwrap_or_default();
    let target = target(profile, o.target)?;
    let plan = tls_plan(
        o.tls_credentials,
        profile,
        &target,
        TlsPaths {
            cert: o.tls_cert,
            key: o.tls_key,
            ca: o.root_ca,
        },
        o.credential_dirs,
    )?;
    let (credentials, ca_pem, files) = tls_material(plan)?;
    if profile == Profile::Aws && credentials.is_none() {
        return Err(invalid(
            "credentials",
            "AWS IoT Core needs the device certificate and key \
             (tls.crt and tls.key in ./, ~/.config/mir/ or /etc/mir/)",
        ));
    }
    let tls = match target.scheme {
        // A CA without client credentials is server-only TLS (a private CA).
        Scheme::Mqtts => Some(crate::tls::client_config(
            credentials.as_ref(),
            ca_pem.as_deref(),
            target.port,
        )?),
        Scheme::Mqtt if credentials.is_some() => {
            return Err(BuildError::CredentialsWithoutTls(target.to_string()))
        }
        Scheme::Mqtt => None,
    };
    let tls_files = match (&tls, files) {
        (Some(initial), Some(files)) if files.has_any() => {
            Some(files.starting_with(Arc::clone(initial)))
        }
        _ => None,
    };

    let heartbeat_interval = o.heartbeat_interval.unwrap_or(match profile {
        Profile::Aws => AWS_HEARTBEAT_INTERVAL,
        Profile::Local | Profile::Localstack => DEFAULT_HEARTBEAT_INTERVAL,
    });
    if heartbeat_interval < Duration::from_millis(100) {
        return Err(invalid(
            "heartbeat_interval",
            format!("{heartbeat_interval:?} is below 100 ms"),
        ));
    }
    let command_timeout = o.command_timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT);
    if command_timeout.is_zero() {
        return Err(invalid("command_timeout_default", "must be above zero"));
    }
    let queue_capacity = o.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY);
    if queue_capacity == 0 {
        return Err(invalid("queue_capacity", "must be at least 1"));
    }
    let max_queued_bytes = o.max_queued_bytes.unwrap_or(DEFAULT_MAX_QUEUED_BYTES);
    if max_queued_bytes < MAX_PAYLOAD_BYTES {
        return Err(invalid(
            "max_queued_bytes",
            format!("must hold at least one batch ({MAX_PAYLOAD_BYTES} bytes)"),
        ));
    }

    let store = o.local_store.unwrap_or_default();
    let persistence = setting(store.persistence_type)?.unwrap_or_default();
    let in_memory = store.in_memory.unwrap_or(false);
    let folder = store.folder_path.filter(|p| !p.as_os_str().is_empty());
    let store_folder = if in_memory || persistence == Persistence::NoStorage {
        None
    } else {
        Some(folder.unwrap_or_else(|| super::default_store_folder(&device_id)))
    };
    let retention = store.retention_limit.unwrap_or(DEFAULT_RETENTION);
    if retention.is_zero() {
        return Err(invalid("localStore.retentionLimit", "must be above zero"));
    }
    let disk_limit_percent = store.disk_space_limit.unwrap_or(DEFAULT_DISK_LIMIT_PERCENT);
    if !(disk_limit_percent > 0.0 && disk_limit_percent <= 100.0) {
        return Err(invalid(
            "localStore.diskSpaceLimit",
            format!("{disk_limit_percent} is not a percentage in (0, 100]"),
        ));
    }

    let backoff = o.backoff.unwrap_or_default();
    let backoff_min = backoff.min.unwrap_or(DEFAULT_BACKOFF_MIN);
    let backoff_max = backoff.max.unwrap_or(DEFAULT_BACKOFF_MAX);
    if backoff_min.is_zero() || backoff_max < backoff_min {
        return Err(invalid(
            "backoff",
            format!("need 0 < min <= max, got {backoff_min:?} and {backoff_max:?}"),
        ));
    }
    let connect_interval = backoff
        .connect_interval
        .unwrap_or(crate::backoff::DEFAULT_CONNECT_INTERVAL);
    let keep_alive = o.keep_alive.unwrap_or(DEFAULT_KEEP_ALIVE);
    let min_keep_alive = match profile {
        Profile::Aws => AWS_MIN_KEEP_ALIVE,
        Profile::Local | Profile::Localstack => Duration::from_secs(1),
    };
    if keep_alive < min_keep_alive || keep_alive > MAX_KEEP_ALIVE {
        return Err(invalid(
            "keepAlive",
            format!(
                "{keep_alive:?} is outside {min_keep_alive:?} to {MAX_KEEP_ALIVE:?} \
                 (AWS IoT Core accepts 30 s to 1,200 s)"
            ),
        ));
    }
    let tcp_keepalive = tcp_keepalive(o.tcp_keepalive.unwrap_or_default(), keep_alive)?;
    let pace = pace(o.pace.unwrap_or_default())?;
    let log_level = setting(o.log_level)?;
    let log_format = setting(o.log_format)?.unwrap_or_default();

    let schema = compressed_schema(schemas)?;
    check_hello_fits(&device_id, &schema)?;

    Ok(Config {
        device_id,
        profile,
        target,
        tls,
        tls_files,
        schema,
        no_schema_on_boot: device.no_schema_on_boot.unwrap_or(false),
        heartbeat_interval,
        telemetry_linger: o.telemetry_linger.unwrap_or(DEFAULT_TELEMETRY_LINGER),
        command_timeout,
        queue_capacity,
        max_queued_bytes,
        persistence,
        store_folder,
        store_required: store.required.unwrap_or(false),
        retention,
        disk_limit_percent,
        max_store_bytes: store.max_bytes,
        backoff_min,
        backoff_max,
        connect_interval,
        keep_alive,
        tcp_keepalive,
        pace,
        persistent_session: o.persistent_session.unwrap_or(true),
        log_level,
        log_format,
        config_file,
        clock: Arc::new(crate::clock::SystemClock),
    })
}

/// TCP keepalive: off when disabled, else idle (default: the keep-alive), interval and
/// probes within what Linux accepts, in whole seconds.
fn tcp_keepalive(
    section: TcpKeepaliveSection,
    keep_alive: Duration,
) -> Result<Option<TcpKeepalive>, BuildError> {
    if section.enabled == Some(false) {
        return Ok(None);
    }
    let range = Duration::from_secs(1)..=MAX_TCP_KEEPALIVE;
    let idle = section.idle.unwrap_or(keep_alive);
    if !range.contains(&idle) {
        return Err(invalid(
            "tcpKeepalive.idle",
            format!("{idle:?} is outside 1s to {MAX_TCP_KEEPALIVE:?}"),
        ));
    }
    let interval = section.interval.unwrap_or(DEFAULT_TCP_KEEPALIVE_INTERVAL);
    if !range.contains(&interval) {
        return Err(invalid(
            "tcpKeepalive.interval",
            format!("{interval:?} is outside 1s to {MAX_TCP_KEEPALIVE:?}"),
        ));
    }
    let retries = section.retries.unwrap_or(DEFAULT_TCP_KEEPALIVE_RETRIES);
    if !(1..=MAX_TCP_KEEPALIVE_RETRIES).contains(&retries) {
        return Err(invalid(
            "tcpKeepalive.retries",
            format!("{retries} is outside 1 to {MAX_TCP_KEEPALIVE_RETRIES}"),
        ));
    }
    Ok(Some(TcpKeepalive {
        idle,
        interval,
        retries,
    }))
}

/// The pacing: [`crate::Pace::AWS`] unless rates are given (bursts of a quarter second
/// of publishes and 128 KiB), or none when disabled.
fn pace(section: PaceSection) -> Result<Option<crate::Pace>, BuildError> {
    if section.enabled == Some(false) {
        return Ok(None);
    }
    let aws = crate::Pace::AWS;
    let publishes_per_sec = section
        .publishes_per_second
        .unwrap_or(aws.publishes_per_sec);
    let bytes_per_sec = section.bytes_per_second.unwrap_or(aws.bytes_per_sec);
    let rates = [publishes_per_sec, bytes_per_sec];
    if !rates.iter().all(|r| r.is_finite() && *r > 0.0) {
        return Err(invalid(
            "pace",
            format!("rates must be above zero, got {rates:?}"),
        ));
    }
    Ok(Some(crate::Pace {
        publishes_per_sec,
        publishes_burst: (publishes_per_sec / 4.0).max(1.0),
        bytes_per_sec,
        bytes_burst: aws.bytes_burst,
    }))
}

/// The target, by default the profile's (the aws profile has none and takes a bare host).
fn target(profile: Profile, raw: Option<String>) -> Result<Target, BuildError> {
    let target: Target = match (profile, raw) {
        (Profile::Aws, None) => {
            return Err(invalid(
                "target",
                "the aws profile needs the account's ATS endpoint \
                 (xxx-ats.iot.<region>.amazonaws.com)",
            ))
        }
        (Profile::Aws, Some(t)) if !t.contains("://") => format!("mqtts://{t}").parse()?,
        (_, Some(t)) => t.parse()?,
        (_, None) => DEFAULT_TARGET.parse()?,
    };
    if profile == Profile::Aws && target.scheme != Scheme::Mqtts {
        return Err(invalid(
            "target",
            format!("AWS IoT Core needs mqtts:// (mutual TLS), not {target}"),
        ));
    }
    Ok(target)
}

/// `tlsCert`, `tlsKey`, `rootCA` from the file or the environment.
struct TlsPaths {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
}

/// Where the TLS material comes from: given as PEM, or files (read now, and again at
/// every connection attempt).
enum TlsPlan {
    Pem(Credentials),
    Files(TlsFiles),
}

/// The credential files: those given to the builder, else the paths of the file or
/// the environment, else (for a TLS target) those found in the search directories.
fn tls_plan(
    source: Option<CredentialSource>,
    profile: Profile,
    target: &Target,
    paths: TlsPaths,
    dirs: Option<Vec<PathBuf>>,
) -> Result<TlsPlan, BuildError> {
    let (client, ca) = match source {
        Some(CredentialSource::Pem(c)) => return Ok(TlsPlan::Pem(c)),
        Some(CredentialSource::Files { cert, key, ca }) => (Some((cert, key)), ca),
        None => {
            let found = if target.scheme == Scheme::Mqtts {
                credentials::search(&dirs.unwrap_or_else(credentials::default_search_dirs))
            } else {
                credentials::FoundCredentials::default()
            };
            let client = match (paths.cert, paths.key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => found.cert.zip(found.key),
                (c, k) => {
                    return Err(invalid(
                        "tlsCert/tlsKey",
                        format!("give both or neither (certificate {c:?}, key {k:?})"),
                    ))
                }
            };
            (client, paths.ca.or(found.ca))
        }
    };
    Ok(TlsPlan::Files(TlsFiles::new(
        client,
        ca,
        aws_ca(profile),
        target.port,
    )))
}

/// The client credentials, the CA (PEM), and the files to read them again from.
type TlsMaterial = (Option<Credentials>, Option<Vec<u8>>, Option<TlsFiles>);

/// The client credentials and the CA, and the files to read them again from.
fn tls_material(plan: TlsPlan) -> Result<TlsMaterial, BuildError> {
    match plan {
        TlsPlan::Pem(c) => {
            let ca = c.ca_pem.clone();
            Ok((Some(c), ca, None))
        }
        TlsPlan::Files(files) => {
            let (client, ca) = files.read()?;
            Ok((client, ca, Some(files)))
        }
    }
}

/// Amazon Root CA 1 for the aws profile.
fn aws_ca(profile: Profile) -> Option<Vec<u8>> {
    (profile == Profile::Aws).then(|| credentials::AMAZON_ROOT_CA_1.as_bytes().to_vec())
}

pub(super) fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|source| BuildError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// `Hello` (the compressed schema, resent on every connect) and its topic must fit in
/// one MQTT payload: a device that could never say hello is refused at build.
fn check_hello_fits(device_id: &DeviceId, schema: &Bytes) -> Result<(), BuildError> {
    let largest = mir_proto::wire::Hello {
        schema: schema.clone(),
        compression: super::SCHEMA_COMPRESSION as i32,
        sdk_version: crate::SDK_VERSION.to_string(),
        sent_at_ns: i64::MAX,
        heartbeat_interval_sec: u32::MAX,
    };
    let topic = mir_proto::topics::DeviceTopic::Hello.for_device(device_id);
    let size = largest.encoded_len() + topic.len();
    if size > MAX_PAYLOAD_BYTES {
        return Err(BuildError::SchemaTooLarge {
            compressed: schema.len(),
            hello: size,
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(())
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
pub(super) fn compressed_schema(sets: &[Vec<u8>]) -> Result<Bytes, BuildError> {
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
