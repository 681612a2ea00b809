use std::time::Duration;

use super::*;

fn builder() -> Builder {
    Builder::default().device_id("weather")
}

fn self_signed() -> Credentials {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    Credentials {
        client_cert_pem: ck.cert.pem().into_bytes(),
        client_key_pem: ck.signing_key.serialize_pem().into_bytes(),
        ca_pem: Some(ck.cert.pem().into_bytes()),
    }
}

#[test]
fn defaults_target_the_local_hub_without_tls() {
    let c = builder().resolve().expect("valid");
    assert_eq!(c.device_id.as_str(), "weather");
    assert_eq!(
        c.target,
        "mqtt://127.0.0.1:1883".parse::<Target>().expect("target")
    );
    assert!(c.tls.is_none());
    assert_eq!(c.heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL);
    assert_eq!(c.telemetry_linger, DEFAULT_TELEMETRY_LINGER);
    assert_eq!(c.command_timeout, DEFAULT_COMMAND_TIMEOUT);
}

#[test]
fn a_missing_or_invalid_device_id_is_refused() {
    assert!(matches!(
        Builder::default().resolve(),
        Err(BuildError::MissingDeviceId)
    ));
    for bad in ["", "a/b", "dev ice", "a.b", "#"] {
        let err = Builder::default().device_id(bad).resolve().expect_err(bad);
        assert!(
            matches!(err, BuildError::InvalidDeviceId { .. }),
            "{bad}: {err}"
        );
    }
}

#[test]
fn the_id_prefix_is_joined_with_an_underscore() {
    let c = builder().id_prefix("warehouse-a").resolve().expect("valid");
    assert_eq!(c.device_id.as_str(), "warehouse-a_weather");
    let host = builder()
        .id_prefix(IdPrefix {
            hostname: true,
            ..IdPrefix::default()
        })
        .resolve()
        .expect("a hostname is sanitized into a valid id");
    assert!(
        host.device_id.as_str().ends_with("_weather"),
        "{}",
        host.device_id
    );
    let err = builder()
        .id_prefix("bad prefix")
        .resolve()
        .expect_err("a space is not valid in an id");
    assert!(
        matches!(&err, BuildError::InvalidDeviceId { id, .. } if id == "bad prefix_weather"),
        "{err}"
    );
}

#[test]
fn targets_parse_with_default_ports_and_ipv6() {
    let t: Target = "mqtts://abc-ats.iot.eu-west-1.amazonaws.com"
        .parse()
        .expect("target");
    assert_eq!((t.scheme, t.port), (Scheme::Mqtts, 8883));
    let t: Target = "mqtt://[::1]:1884".parse().expect("target");
    assert_eq!((t.host.as_str(), t.port), ("::1", 1884));
    assert_eq!(t.to_string(), "mqtt://[::1]:1884");
    let t: Target = "mqtt://localhost/".parse().expect("target");
    assert_eq!(t.port, 1883);
}

#[test]
fn bad_targets_are_refused_with_the_reason() {
    for bad in [
        "127.0.0.1:1883",
        "nats://127.0.0.1:4222",
        "http://x",
        "mqtt://",
        "mqtt://host:0",
        "mqtt://host:99999",
        "mqtt://host:port",
        "mqtt://host:1883/path",
        "mqtt://user@host",
    ] {
        let err = builder().target(bad).resolve().expect_err(bad);
        assert!(
            matches!(err, BuildError::InvalidTarget { .. }),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains(bad), "{err}");
    }
}

#[test]
fn mqtts_with_pem_credentials_builds_a_rustls_config() {
    let c = builder()
        .target("mqtts://localhost:8883")
        .credentials(self_signed())
        .resolve()
        .expect("valid");
    let tls = c.tls.expect("tls");
    assert!(tls.alpn_protocols.is_empty());
}

#[test]
fn port_443_asks_aws_iot_for_mqtt_with_alpn() {
    let c = builder()
        .target("mqtts://abc-ats.iot.eu-west-1.amazonaws.com:443")
        .credentials(Credentials {
            ca_pem: None,
            ..self_signed()
        })
        .resolve()
        .expect("valid");
    assert_eq!(
        c.tls.expect("tls").alpn_protocols,
        vec![crate::AWS_IOT_ALPN.to_vec()]
    );
}

#[test]
fn tls_files_are_read_at_build_and_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = self_signed();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    let ca = dir.path().join("ca.crt");
    std::fs::write(&cert, &creds.client_cert_pem).expect("write");
    std::fs::write(&key, &creds.client_key_pem).expect("write");
    std::fs::write(&ca, creds.ca_pem.as_deref().expect("ca")).expect("write");
    let c = builder()
        .target("mqtts://localhost")
        .tls_files(&cert, &key, &ca)
        .resolve()
        .expect("the files are read");
    assert!(c.tls.is_some());

    let missing = dir.path().join("missing.key");
    let err = builder()
        .target("mqtts://localhost")
        .tls_files(&cert, &missing, &ca)
        .resolve()
        .expect_err("missing key");
    assert!(
        matches!(
            err,
            BuildError::ReadFile {
                what: "client key",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("missing.key"), "{err}");
}

#[test]
fn invalid_pem_is_refused() {
    let good = self_signed();
    let cases = [
        Credentials {
            client_cert_pem: b"garbage".to_vec(),
            ..good.clone()
        },
        Credentials {
            client_key_pem: b"garbage".to_vec(),
            ..good.clone()
        },
        Credentials {
            ca_pem: Some(b"garbage".to_vec()),
            ..good.clone()
        },
        Credentials {
            client_key_pem: good.client_cert_pem.clone(),
            ..good.clone()
        },
    ];
    for creds in cases {
        let err = builder()
            .target("mqtts://localhost")
            .credentials(creds)
            .resolve()
            .expect_err("bad");
        assert!(matches!(err, BuildError::InvalidPem { .. }), "{err}");
    }
}

#[test]
fn credentials_on_a_plain_target_are_refused() {
    let err = builder()
        .credentials(self_signed())
        .resolve()
        .expect_err("plain");
    assert!(matches!(err, BuildError::CredentialsWithoutTls(_)), "{err}");
}

#[test]
fn a_schema_that_is_not_a_descriptor_set_is_refused() {
    let err = builder()
        .schema(mir_proto::MIR_DESCRIPTOR_SET)
        .schema(b"\xff\xff not protobuf")
        .resolve()
        .expect_err("bad schema");
    assert!(
        matches!(err, BuildError::InvalidSchema { index: 1, .. }),
        "{err}"
    );
}

/// The option an [`BuildError::InvalidOption`] names.
fn refused_option(err: BuildError) -> &'static str {
    match err {
        BuildError::InvalidOption { option, .. } => option,
        other => panic!("expected InvalidOption, got {other:?}"),
    }
}

#[test]
fn out_of_range_options_are_refused() {
    let cases = [
        (
            builder().heartbeat_interval(Duration::ZERO),
            "heartbeat_interval",
        ),
        (
            builder().command_timeout_default(Duration::ZERO),
            "command_timeout_default",
        ),
        (builder().queue_capacity(0), "queue_capacity"),
        (builder().max_queued_bytes(10), "max_queued_bytes"),
    ];
    for (b, option) in cases {
        let err = b.resolve().expect_err(option);
        assert_eq!(refused_option(err), option);
    }
}

#[test]
fn log_levels_parse_with_mir_names() {
    assert_eq!("INFO".parse::<LogLevel>().expect("info"), LogLevel::Info);
    assert_eq!("fatal".parse::<LogLevel>().expect("fatal"), LogLevel::Error);
    let err = "loud".parse::<LogLevel>().expect_err("not a level");
    assert_eq!(refused_option(err), "log level");
}

#[test]
fn log_formats_parse_by_name() {
    use crate::LogFormat;
    assert_eq!("JSON".parse::<LogFormat>().expect("json"), LogFormat::Json);
    assert_eq!("text".parse::<LogFormat>().expect("text"), LogFormat::Text);
    let err = "xml".parse::<LogFormat>().expect_err("not a format");
    assert_eq!(refused_option(err), "log format");
}

#[test]
fn the_schema_sent_keeps_every_byte_of_the_descriptor_set_so_mir_options_survive() {
    use std::io::Read;
    let weather = mir_proto::examples::weather::DESCRIPTOR_SET;
    let packed = compressed_schema(&[weather.to_vec(), weather.to_vec()]).expect("valid");
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&packed[..])
        .read_to_end(&mut raw)
        .expect("inflates");
    // Merging the same set twice keeps one copy of each file, byte for byte; a
    // round trip through prost_types would have dropped the custom options.
    assert_eq!(raw, weather);
}

// ---- device.yaml, MIR__ variables and their priority ----

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn write_yaml(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("device.yaml");
    std::fs::write(&path, text).expect("write");
    path
}

const FULL_YAML: &str = r#"
mir:
  target: "mqtt://file-host:1884"
  logLevel: "warn"
  logFormat: "json"
  device:
    id: "from-file"
    idPrefix:
      prefix: "site"
      hostname: false
      username: false
    noSchemaOnBoot: true
  localStore:
    folderPath: "/tmp/mir-file-store"
    inMemory: false
    retentionLimit: "48h"
    diskSpaceLimit: 70
    persistenceType: "always"
  backoff:
    min: 200ms
    max: 10s
user:
  interval: 60s
  apiKey: "secret-key"
  sensors:
    - type: temperature
      password: "sensor-pass"
"#;

#[test]
fn a_device_yaml_in_mirs_layout_configures_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_yaml(dir.path(), FULL_YAML);
    let c = Builder::default()
        .config_file(&path)
        .env_vars(no_env())
        .resolve()
        .expect("valid");
    assert_eq!(c.device_id.as_str(), "site_from-file");
    assert_eq!(c.target, "mqtt://file-host:1884".parse().expect("target"));
    assert_eq!(c.log_level, Some(LogLevel::Warn));
    assert_eq!(c.log_format, crate::LogFormat::Json);
    assert!(c.no_schema_on_boot);
    assert_eq!(c.persistence, Persistence::Always);
    assert_eq!(
        c.store_folder,
        Some(std::path::PathBuf::from("/tmp/mir-file-store"))
    );
    assert_eq!(c.retention, Duration::from_secs(48 * 3600));
    assert_eq!(c.disk_limit_percent, 70.0);
    assert_eq!(c.backoff_min, Duration::from_millis(200));
    assert_eq!(c.backoff_max, Duration::from_secs(10));
    assert_eq!(c.config_file, Some(path));
}

#[test]
fn the_example_device_yaml_is_a_valid_configuration() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/device.yaml");
    let c = Builder::default()
        .config_file(&path)
        .env_vars(no_env())
        .resolve()
        .expect("valid");
    assert_eq!(c.device_id.as_str(), "weather");
    assert_eq!(c.log_level, Some(LogLevel::Info));
    assert_eq!(c.log_format, crate::LogFormat::Text);
}

#[test]
fn defaults_when_nothing_is_configured() {
    let c = builder().env_vars(no_env()).resolve().expect("valid");
    assert_eq!(c.profile, Profile::Local);
    assert_eq!(c.persistence, Persistence::IfOffline);
    assert_eq!(
        c.store_folder,
        Some(crate::default_store_folder(&c.device_id)),
        "no folder: the standard per-device folder"
    );
    assert!(
        c.store_folder
            .as_ref()
            .is_some_and(|f| f.ends_with("mir/devices/weather")),
        "{:?}",
        c.store_folder
    );
    assert!(!c.store_required);
    assert_eq!(c.keep_alive, Duration::from_secs(30));
    assert_eq!(c.connect_interval, Duration::from_secs(1));
    assert_eq!(c.retention, DEFAULT_RETENTION);
    assert_eq!(c.retention, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(c.disk_limit_percent, 85.0);
    assert_eq!(c.backoff_min, Duration::from_secs(1));
    assert_eq!(c.backoff_max, Duration::from_secs(128));
    assert!(c.persistent_session);
    assert_eq!(c.log_level, None);
    assert_eq!(c.log_format, crate::LogFormat::Text);
}

#[test]
fn priority_is_builder_then_file_then_env_then_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_yaml(
        dir.path(),
        r#"
mir:
  target: "mqtt://file-host:1884"
  device:
    id: "from-file"
  localStore:
    persistenceType: "always"
"#,
    );
    let env = vec![
        ("MIR__DEVICE__ID", "from-env"),
        ("MIR__TARGET", "mqtt://env-host:1885"),
        ("MIR__LOG_LEVEL", "debug"),
        ("MIR__LOG_FORMAT", "json"),
        ("MIR__LOCAL_STORE__PERSISTENCE", "nostorage"),
        ("MIR__LOCAL_STORE__RETENTION_LIMIT", "2h"),
        ("MIR__LOCAL_STORE__DISK_SPACE_LIMIT", "60"),
        ("MIR__BACKOFF__MAX", "30s"),
    ];

    // env only (over the defaults)
    let c = Builder::default()
        .env_vars(env.clone())
        .resolve()
        .expect("valid");
    assert_eq!(c.device_id.as_str(), "from-env");
    assert_eq!(c.target.host, "env-host");
    assert_eq!(c.log_level, Some(LogLevel::Debug));
    assert_eq!(c.log_format, crate::LogFormat::Json);
    assert_eq!(c.persistence, Persistence::NoStorage);
    assert_eq!(c.retention, Duration::from_secs(2 * 3600));
    assert_eq!(c.disk_limit_percent, 60.0);
    assert_eq!(c.backoff_max, Duration::from_secs(30));

    // the file beats env; env still fills what the file leaves out
    let c = Builder::default()
        .config_file(&path)
        .env_vars(env.clone())
        .resolve()
        .expect("valid");
    assert_eq!(c.device_id.as_str(), "from-file");
    assert_eq!(c.target.host, "file-host");
    assert_eq!(c.persistence, Persistence::Always);
    assert_eq!(c.log_level, Some(LogLevel::Debug), "from env");
    assert_eq!(c.retention, Duration::from_secs(2 * 3600), "from env");

    // the builder beats both
    let c = Builder::default()
        .config_file(&path)
        .env_vars(env)
        .device_id("from-builder")
        .target("mqtt://builder-host:1886")
        .log_format(crate::LogFormat::Text)
        .store(StoreOptions {
            persistence_type: Some(Persistence::IfOffline),
            ..Default::default()
        })
        .resolve()
        .expect("valid");
    assert_eq!(c.device_id.as_str(), "from-builder");
    assert_eq!(c.target.host, "builder-host");
    assert_eq!(c.log_format, crate::LogFormat::Text);
    assert_eq!(c.persistence, Persistence::IfOffline);
    assert_eq!(c.retention, Duration::from_secs(2 * 3600), "still from env");
}

#[test]
fn env_variables_follow_mirs_naming_with_aliases() {
    let c = Builder::default()
        .env_vars([
            ("MIR__DEVICE_ID", "alias"),
            ("MIR__DEVICE__ID_PREFIX__PREFIX", "p"),
            ("MIR__LOCAL_STORE__PERSISTENCE_TYPE", "always"),
            ("MIR__LOCAL_STORE__FOLDER_PATH", "/tmp/x"),
            ("MIR__PERSISTENT_SESSION", "false"),
            ("MIR__NATS__URL", "ignored: not a device variable"),
            ("PATH", "/usr/bin"),
        ])
        .resolve()
        .expect("valid");
    assert_eq!(c.device_id.as_str(), "p_alias");
    assert_eq!(c.persistence, Persistence::Always);
    assert_eq!(c.store_folder, Some(std::path::PathBuf::from("/tmp/x")));
    assert!(!c.persistent_session);
    // A numeric-looking id stays a string.
    let c = Builder::default()
        .env_vars([("MIR__DEVICE__ID", "0042")])
        .resolve()
        .expect("valid");
    assert_eq!(c.device_id.as_str(), "0042");
    let err = Builder::default()
        .env_vars([
            ("MIR__DEVICE__ID", "x"),
            ("MIR__LOCAL_STORE__PERSISTENCE", "sometimes"),
        ])
        .resolve()
        .expect_err("bad persistence");
    assert!(err.to_string().contains("sometimes"), "{err}");
}

#[test]
fn unknown_keys_in_the_mir_section_are_refused_with_the_file_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_yaml(
        dir.path(),
        "mir:\n  device:\n    id: a\n  tagret: mqtt://x\n",
    );
    let err = Builder::default()
        .config_file(&path)
        .env_vars(no_env())
        .resolve()
        .expect_err("typo");
    assert!(matches!(err, BuildError::ConfigFile { .. }), "{err}");
    assert!(err.to_string().contains("tagret"), "{err}");
    assert!(err.to_string().contains("device.yaml"), "{err}");
    let path = write_yaml(dir.path(), "mir: {}\nother: 1\n");
    let err = Builder::default()
        .config_file(&path)
        .device_id("a")
        .env_vars(no_env())
        .resolve()
        .expect_err("only mir: and user: at the top");
    assert!(matches!(err, BuildError::ConfigFile { .. }), "{err}");
    assert!(err.to_string().contains("other"), "{err}");
}

#[test]
fn a_missing_explicit_file_is_an_error_but_a_missing_default_one_is_not() {
    let err = builder()
        .config_file("/nonexistent/device.yaml")
        .env_vars(no_env())
        .resolve()
        .expect_err("missing");
    assert!(matches!(err, BuildError::ReadFile { .. }), "{err}");
    let file = file::ConfigFile::search(&["/nonexistent/device.yaml".into()]).expect("none");
    assert!(file.path.is_none());
    let paths = default_config_paths();
    assert_eq!(paths[0], std::path::PathBuf::from("./device.yaml"));
    assert_eq!(
        paths.last(),
        Some(&std::path::PathBuf::from("/etc/mir/device.yaml"))
    );
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppConfig {
    #[serde(with = "humantime_serde_like")]
    interval: Duration,
    api_key: Secret<String>,
    sensors: Vec<Sensor>,
}

#[derive(Debug, serde::Deserialize)]
struct Sensor {
    #[serde(rename = "type")]
    kind: String,
    password: Secret<String>,
}

mod humantime_serde_like {
    use serde::Deserialize;
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<std::time::Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[test]
fn the_user_section_is_the_applications_and_secrets_stay_out_of_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_yaml(dir.path(), FULL_YAML);
    let (mir, app): (Mir, AppConfig) = Builder::default()
        .config_file(&path)
        .env_vars(no_env())
        .store(StoreOptions {
            folder_path: Some(dir.path().join("store")),
            ..Default::default()
        })
        .build_with_user_config()
        .expect("valid");
    assert_eq!(mir.device_id().as_str(), "site_from-file");
    assert_eq!(app.interval, Duration::from_secs(60));
    assert_eq!(app.api_key.expose(), "secret-key");
    assert_eq!(app.sensors[0].kind, "temperature");
    assert_eq!(app.sensors[0].password.expose(), "sensor-pass");
    let logged = format!("{app:?}");
    assert!(
        !logged.contains("secret-key") && !logged.contains("sensor-pass"),
        "{logged}"
    );
    assert!(logged.contains("***"), "{logged}");
    assert_eq!(app.api_key.to_string(), "***");
}

#[test]
fn profiles_set_the_target_and_the_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = builder()
        .profile(Profile::Aws)
        .env_vars(no_env())
        .resolve()
        .expect_err("aws needs an endpoint");
    assert!(err.to_string().contains("ATS endpoint"), "{err}");
    // aws without credentials in the search path is refused.
    let err = builder()
        .profile(Profile::Aws)
        .target("abc-ats.iot.eu-west-1.amazonaws.com")
        .credentials_search_dirs(vec![dir.path().to_path_buf()])
        .env_vars(no_env())
        .resolve()
        .expect_err("no certificate");
    assert!(err.to_string().contains("tls.crt"), "{err}");
    // With tls.crt/tls.key in the search path: mqtts on 8883, Amazon Root CA.
    let creds = self_signed();
    std::fs::write(dir.path().join("tls.crt"), &creds.client_cert_pem).expect("write");
    std::fs::write(dir.path().join("tls.key"), &creds.client_key_pem).expect("write");
    let c = builder()
        .env_vars([
            ("MIR__PROFILE", "aws"),
            ("MIR__TARGET", "abc-ats.iot.eu-west-1.amazonaws.com"),
        ])
        .credentials_search_dirs(vec![dir.path().to_path_buf()])
        .resolve()
        .expect("valid");
    assert_eq!(c.profile, Profile::Aws);
    assert_eq!((c.target.scheme, c.target.port), (Scheme::Mqtts, 8883));
    assert_eq!(
        c.heartbeat_interval, AWS_HEARTBEAT_INTERVAL,
        "idle devices stay cheap"
    );
    assert!(c.tls.expect("tls").alpn_protocols.is_empty());
    // Port 443: ALPN x-amzn-mqtt-ca.
    let c = builder()
        .profile(Profile::Aws)
        .target("mqtts://abc-ats.iot.eu-west-1.amazonaws.com:443")
        .credentials_search_dirs(vec![dir.path().to_path_buf()])
        .env_vars(no_env())
        .resolve()
        .expect("valid");
    assert_eq!(
        c.tls.expect("tls").alpn_protocols,
        vec![crate::AWS_IOT_ALPN.to_vec()]
    );
    // aws refuses a plain target.
    let err = builder()
        .profile(Profile::Aws)
        .target("mqtt://x:1883")
        .env_vars(no_env())
        .resolve()
        .expect_err("plain MQTT");
    assert!(err.to_string().contains("mqtts://"), "{err}");
    assert_eq!(refused_option(err), "target");
    // local and localstack default to the local hub.
    for p in [Profile::Local, Profile::Localstack] {
        let c = builder()
            .profile(p)
            .env_vars(no_env())
            .resolve()
            .expect("valid");
        assert_eq!(c.target.to_string(), "mqtt://127.0.0.1:1883");
    }
    let err = "cloud".parse::<Profile>().expect_err("not a profile");
    assert_eq!(refused_option(err), "profile");
}

#[test]
fn credentials_from_file_paths_and_the_search_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = self_signed();
    std::fs::write(dir.path().join("tls.crt"), &creds.client_cert_pem).expect("write");
    std::fs::write(dir.path().join("tls.key"), &creds.client_key_pem).expect("write");
    std::fs::write(
        dir.path().join("ca.crt"),
        creds.ca_pem.as_deref().expect("ca"),
    )
    .expect("write");
    // Found in the search path for an mqtts target.
    let c = builder()
        .target("mqtts://localhost:8883")
        .credentials_search_dirs(vec![dir.path().to_path_buf()])
        .env_vars(no_env())
        .resolve()
        .expect("valid");
    assert!(c.tls.is_some());
    // A plain target does not search (a stray tls.crt does not break it).
    let c = builder()
        .credentials_search_dirs(vec![dir.path().to_path_buf()])
        .env_vars(no_env())
        .resolve()
        .expect("plain");
    assert!(c.tls.is_none());
    // Paths given in the file (Mir's names).
    let yaml = format!(
        "mir:\n  target: mqtts://localhost\n  tlsCert: {0}/tls.crt\n  tlsKey: {0}/tls.key\n  rootCA: {0}/ca.crt\n  device:\n    id: a\n",
        dir.path().display()
    );
    let path = write_yaml(dir.path(), &yaml);
    let c = Builder::default()
        .config_file(&path)
        .credentials_search_dirs(vec![])
        .env_vars(no_env())
        .resolve()
        .expect("valid");
    assert!(c.tls.is_some());
    // One without the other is refused.
    let err = builder()
        .target("mqtts://localhost")
        .env_vars([("MIR__TLS_CERT", "/x/tls.crt")])
        .resolve()
        .expect_err("half");
    assert!(err.to_string().contains("both"), "{err}");
}

#[test]
fn store_options_are_validated() {
    let err = builder()
        .env_vars([("MIR__LOCAL_STORE__DISK_SPACE_LIMIT", "120")])
        .resolve()
        .expect_err("over 100 %");
    assert_eq!(refused_option(err), "localStore.diskSpaceLimit");
    let err = builder()
        .env_vars([("MIR__LOCAL_STORE__RETENTION_LIMIT", "soon")])
        .resolve()
        .expect_err("not a duration");
    assert!(
        matches!(&err, BuildError::Environment(reason) if reason.contains("soon")),
        "{err}"
    );
    let err = builder()
        .backoff(Duration::from_secs(2), Duration::from_secs(1))
        .env_vars(no_env())
        .resolve()
        .expect_err("min over max");
    assert_eq!(refused_option(err), "backoff");
    let c = builder()
        .store(StoreOptions {
            folder_path: Some("/tmp/s".into()),
            in_memory: Some(true),
            ..Default::default()
        })
        .env_vars(no_env())
        .resolve()
        .expect("valid");
    assert_eq!(c.store_folder, None, "inMemory keeps the queue in memory");
}

#[test]
fn a_schema_whose_hello_cannot_fit_in_one_payload_is_refused_at_build_with_its_size() {
    // One file whose name is 200 KB of noise: about 150 KB once compressed.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let name: String = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect();
    let set = prost_types::FileDescriptorSet {
        file: vec![prost_types::FileDescriptorProto {
            name: Some(name),
            ..Default::default()
        }],
    };
    let err = builder()
        .schema(&prost::Message::encode_to_vec(&set))
        .env_vars(no_env())
        .resolve()
        .expect_err("too large");
    match err {
        BuildError::SchemaTooLarge {
            compressed,
            hello,
            limit,
        } => {
            assert_eq!(limit, mir_proto::MAX_PAYLOAD_BYTES);
            assert!(compressed > limit, "{compressed}");
            assert!(
                hello > compressed,
                "{hello}: the envelope and the topic count"
            );
        }
        other => panic!("expected SchemaTooLarge, got {other}"),
    }
}

#[test]
fn the_keep_alive_is_settable_within_what_aws_accepts() {
    let c = builder()
        .keep_alive(Duration::from_secs(300))
        .env_vars(no_env())
        .resolve()
        .expect("valid");
    assert_eq!(c.keep_alive, Duration::from_secs(300));
    let c = builder()
        .env_vars([("MIR__KEEP_ALIVE", "45s")])
        .resolve()
        .expect("valid");
    assert_eq!(c.keep_alive, Duration::from_secs(45));
    for bad in [Duration::from_millis(500), Duration::from_secs(1201)] {
        let err = builder()
            .keep_alive(bad)
            .env_vars(no_env())
            .resolve()
            .expect_err("out of range");
        assert!(
            matches!(
                err,
                BuildError::InvalidOption {
                    option: "keepAlive",
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn publishes_are_paced_for_aws_by_default_and_the_pace_is_configurable() {
    let c = builder().env_vars(no_env()).resolve().expect("valid");
    assert_eq!(c.pace, Some(crate::Pace::AWS));
    let c = builder()
        .env_vars([("MIR__PACE__PUBLISHES_PER_SECOND", "40")])
        .resolve()
        .expect("valid");
    let pace = c.pace.expect("paced");
    assert_eq!((pace.publishes_per_sec, pace.publishes_burst), (40.0, 10.0));
    assert_eq!(pace.bytes_per_sec, crate::Pace::AWS.bytes_per_sec);
    let c = builder()
        .unpaced()
        .env_vars(no_env())
        .resolve()
        .expect("valid");
    assert_eq!(c.pace, None);
    let err = builder()
        .pace(0.0, 1.0)
        .env_vars(no_env())
        .resolve()
        .expect_err("zero");
    assert!(
        matches!(err, BuildError::InvalidOption { option: "pace", .. }),
        "{err}"
    );
}
