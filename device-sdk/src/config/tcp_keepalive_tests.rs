//! `tcpKeepalive`: its default, the builder, `device.yaml`, `MIR__TCP_KEEPALIVE__...`,
//! turning it off, and the limits.

use std::time::Duration;

use super::*;

fn builder() -> Builder {
    Builder::default().device_id("weather")
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn tcp_keepalive_is_on_by_default_with_the_keep_alive_as_idle_time_10_s_and_3_probes() {
    let c = builder().env_vars(no_env()).resolve().expect("valid");
    assert_eq!(
        c.tcp_keepalive,
        Some(TcpKeepalive {
            idle: DEFAULT_KEEP_ALIVE,
            interval: secs(10),
            retries: 3
        })
    );
    let c = builder()
        .keep_alive(secs(300))
        .env_vars(no_env())
        .resolve()
        .expect("valid");
    assert_eq!(c.tcp_keepalive.map(|k| k.idle), Some(secs(300)));
}

#[test]
fn tcp_keepalive_is_set_by_the_builder_the_file_and_the_environment_and_can_be_turned_off() {
    let c = builder()
        .tcp_keepalive(secs(20), secs(5), 4)
        .env_vars(no_env())
        .resolve()
        .expect("valid");
    let want = TcpKeepalive {
        idle: secs(20),
        interval: secs(5),
        retries: 4,
    };
    assert_eq!(c.tcp_keepalive, Some(want));

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.yaml");
    let yaml = "mir:\n  device:\n    id: f\n  tcpKeepalive:\n    idle: 20s\n    interval: 5\n    retries: 4\n";
    std::fs::write(&path, yaml).expect("write");
    let c = Builder::default()
        .config_file(&path)
        .env_vars(no_env())
        .resolve()
        .expect("valid");
    assert_eq!(c.tcp_keepalive, Some(want));

    let c = builder()
        .env_vars([
            ("MIR__TCP_KEEPALIVE__IDLE", "20s"),
            ("MIR__TCP_KEEPALIVE__INTERVAL", "5s"),
            ("MIR__TCP_KEEPALIVE__RETRIES", "4"),
        ])
        .resolve()
        .expect("valid");
    assert_eq!(c.tcp_keepalive, Some(want));

    let c = builder()
        .env_vars([("MIR__TCP_KEEPALIVE__ENABLED", "false")])
        .resolve()
        .expect("valid");
    assert_eq!(c.tcp_keepalive, None);
    let c = builder()
        .no_tcp_keepalive()
        .env_vars(no_env())
        .resolve()
        .expect("valid");
    assert_eq!(c.tcp_keepalive, None);
    // The builder's settings win over the file's `enabled: false`.
    std::fs::write(
        &path,
        "mir:\n  device:\n    id: f\n  tcpKeepalive:\n    enabled: false\n",
    )
    .expect("write");
    let c = Builder::default()
        .config_file(&path)
        .tcp_keepalive(secs(20), secs(5), 4)
        .env_vars(no_env())
        .resolve()
        .expect("valid");
    assert_eq!(c.tcp_keepalive, Some(want));
}

#[test]
fn an_unknown_tcp_keepalive_key_in_the_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.yaml");
    let yaml = "mir:\n  device:\n    id: f\n  tcpKeepalive:\n    idel: 20s\n";
    std::fs::write(&path, yaml).expect("write");
    let err = Builder::default()
        .config_file(&path)
        .env_vars(no_env())
        .resolve()
        .expect_err("unknown key");
    assert!(matches!(err, BuildError::ConfigFile { .. }), "{err}");
    assert!(err.to_string().contains("idel"), "{err}");
}

#[test]
fn tcp_keepalive_times_and_probes_outside_what_linux_accepts_are_refused() {
    let cases: [(Duration, Duration, u32, &str); 5] = [
        (Duration::from_millis(500), secs(10), 3, "tcpKeepalive.idle"),
        (secs(32_768), secs(10), 3, "tcpKeepalive.idle"),
        (secs(30), Duration::ZERO, 3, "tcpKeepalive.interval"),
        (secs(30), secs(10), 0, "tcpKeepalive.retries"),
        (secs(30), secs(10), 128, "tcpKeepalive.retries"),
    ];
    for (idle, interval, retries, want) in cases {
        let err = builder()
            .tcp_keepalive(idle, interval, retries)
            .env_vars(no_env())
            .resolve()
            .expect_err("out of range");
        match err {
            BuildError::InvalidOption { option, .. } => assert_eq!(option, want),
            other => panic!("expected InvalidOption {want}, got {other}"),
        }
    }
}
