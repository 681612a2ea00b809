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
    assert!(builder().id_prefix("bad prefix").resolve().is_err());
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
    let ok = builder()
        .target("mqtts://localhost")
        .tls_files(&cert, &key, &ca)
        .resolve();
    assert!(ok.is_ok(), "{:?}", ok.err());

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

#[test]
fn out_of_range_options_are_refused() {
    assert!(builder()
        .heartbeat_interval(Duration::ZERO)
        .resolve()
        .is_err());
    assert!(builder()
        .command_timeout_default(Duration::ZERO)
        .resolve()
        .is_err());
    assert!(builder().queue_capacity(0).resolve().is_err());
    assert!(builder().max_queued_bytes(10).resolve().is_err());
}

#[test]
fn log_levels_parse_with_mir_names() {
    assert_eq!("INFO".parse::<LogLevel>().expect("info"), LogLevel::Info);
    assert_eq!("fatal".parse::<LogLevel>().expect("fatal"), LogLevel::Error);
    assert!("loud".parse::<LogLevel>().is_err());
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
