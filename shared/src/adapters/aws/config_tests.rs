//! Tests of `config.rs`: every variable's parsing and refusals.
use super::*;
use std::collections::HashMap;

fn cfg(vars: &[(&str, &str)]) -> Result<AwsConfig, ConfigError> {
    let m: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    AwsConfig::from_lookup(|k| m.get(k).cloned())
}

#[test]
fn the_cdk_environment_of_a_timestream_function_parses() {
    let c = cfg(&[
        ("MIR_TWINS_TABLE", "mir-dev-data-Twins1234"),
        ("MIR_TELEMETRY_SINK", "timestream"),
        ("MIR_TIMESTREAM_DATABASE", "db"),
        ("MIR_TIMESTREAM_TABLE", "tbl"),
        (
            "MIR_IOT_DATA_ENDPOINT",
            "abc-ats.iot.us-east-1.amazonaws.com",
        ),
        ("MIR_EVENTS_TTL_DAYS", "30"),
    ])
    .expect("valid");
    assert_eq!(c.twins_table.as_deref(), Some("mir-dev-data-Twins1234"));
    assert_eq!(
        c.telemetry,
        Some(TelemetryConfig::Timestream {
            database: "db".into(),
            table: "tbl".into()
        })
    );
    assert_eq!(c.commands_ttl_days, 7);
    let shown = c.to_string();
    assert!(shown.contains("timestream:db.tbl"), "{shown}");
}

#[test]
fn event_retention_takes_the_ttl_days_as_default_and_the_entries_over_it() {
    let c = cfg(&[]).expect("valid");
    assert_eq!(c.event_retention, EventRetention::default());
    let c = cfg(&[("MIR_EVENTS_TTL_DAYS", "30")]).expect("valid");
    assert_eq!(
        c.event_retention.to_string(),
        "default=30,DeviceOnline=7,DeviceOffline=7"
    );
    let c = cfg(&[
        ("MIR_EVENTS_TTL_DAYS", "30"),
        (
            "MIR_EVENT_RETENTION",
            "default=60, DeviceOnline=1, CommandFailed=365",
        ),
    ])
    .expect("valid");
    let r = &c.event_retention;
    assert_eq!(
        r.to_string(),
        "default=60,DeviceOnline=1,DeviceOffline=7,CommandFailed=365"
    );
    assert!(
        c.to_string().contains(&format!("eventRetention={r}")),
        "{c}"
    );
}

#[test]
fn a_bad_setting_names_the_variable() {
    let e = cfg(&[("MIR_TELEMETRY_SINK", "influx")]).expect_err("bad sink");
    assert!(e.to_string().contains("MIR_TELEMETRY_SINK"), "{e}");
    let e = cfg(&[("MIR_TELEMETRY_SINK", "dynamodb")]).expect_err("no table");
    assert_eq!(
        e,
        ConfigError::Missing {
            var: "MIR_TELEMETRY_TABLE"
        }
    );
    let e = cfg(&[("MIR_EVENTS_TTL_DAYS", "0")]).expect_err("zero");
    assert!(e.to_string().contains("MIR_EVENTS_TTL_DAYS"), "{e}");
    let e = cfg(&[("MIR_EVENTS_TTL_DAYS", "99999")]).expect_err("too long");
    assert!(e.to_string().contains("from 1 to 36500"), "{e}");
    let e = cfg(&[("MIR_EVENT_RETENTION", "DeviceOnline=7,Exploded=1")]).expect_err("reason");
    assert!(
        matches!(&e, ConfigError::Invalid { var: "MIR_EVENT_RETENTION", reason, .. }
            if reason.contains("unknown reason \"Exploded\"")),
        "{e}"
    );
    let e = cfg(&[("MIR_TWINS_TABLE", "a b")]).expect_err("name");
    assert!(e.to_string().contains("MIR_TWINS_TABLE"), "{e}");
    let e = cfg(&[("AWS_ENDPOINT_URL", "localhost:4566")]).expect_err("url");
    assert!(e.to_string().contains("AWS_ENDPOINT_URL"), "{e}");
}

#[test]
fn the_dynamodb_sink_and_the_localstack_profile() {
    let c = cfg(&[
        ("MIR_TELEMETRY_SINK", "dynamodb"),
        ("MIR_TELEMETRY_TABLE", "tlm"),
    ])
    .expect("valid");
    assert_eq!(
        c.telemetry,
        Some(TelemetryConfig::DynamoDb {
            table: "tlm".into()
        })
    );
    let l = AwsConfig::localstack("http://localhost:4566/", "mir-local");
    assert_eq!(l.endpoint_url.as_deref(), Some("http://localhost:4566"));
    assert_eq!(l.dynamodb_tables().len(), 5);
    assert!(l
        .dynamodb_tables()
        .contains(&"mir-local-telemetry".to_string()));
}

#[test]
fn telemetry_retention_defaults_to_a_year_and_a_bad_value_names_the_variable() {
    let c = cfg(&[]).expect("valid");
    assert_eq!(c.telemetry_retention_days, 365);
    assert_eq!(c.telemetry_retention(), chrono::Duration::days(365));
    let c = cfg(&[("MIR_TELEMETRY_RETENTION_DAYS", " 90 ")]).expect("valid");
    assert_eq!(c.telemetry_retention_days, 90);
    assert!(c.to_string().contains("telemetryRetentionDays=90"), "{c}");
    for bad in ["0", "-3", "1.5", "a year"] {
        let e = cfg(&[("MIR_TELEMETRY_RETENTION_DAYS", bad)]).expect_err(bad);
        assert_eq!(
            e,
            ConfigError::Invalid {
                var: "MIR_TELEMETRY_RETENTION_DAYS",
                value: bad.into(),
                reason: "must be a whole number of days, at least 1".into(),
            }
        );
    }
    let e = cfg(&[("MIR_TELEMETRY_RETENTION_DAYS", "36501")]).expect_err("too long");
    assert_eq!(
        e,
        ConfigError::Invalid {
            var: "MIR_TELEMETRY_RETENTION_DAYS",
            value: "36501".into(),
            reason: "must be at most 36500 days (100 years)".into(),
        }
    );
}

#[test]
fn sdk_timeouts_default_to_10_s_and_3_s_and_an_attempt_may_not_outlast_its_operation() {
    let c = cfg(&[]).expect("valid");
    assert_eq!(c.timeouts, SdkTimeouts::default());
    assert_eq!(c.timeouts.operation, std::time::Duration::from_secs(10));
    // An emulator on this machine gets generous ones.
    let local = AwsConfig::localstack("http://127.0.0.1:4566", "p");
    assert_eq!(
        local.timeouts.operation,
        std::time::Duration::from_secs(120)
    );
    let c = cfg(&[("MIR_AWS_OPERATION_TIMEOUT_MS", "2000")]).expect("valid");
    assert_eq!(c.timeouts.attempt, std::time::Duration::from_millis(2000));
    let e = cfg(&[
        ("MIR_AWS_OPERATION_TIMEOUT_MS", "2000"),
        ("MIR_AWS_ATTEMPT_TIMEOUT_MS", "2500"),
    ])
    .expect_err("attempt over operation");
    assert_eq!(
        e,
        ConfigError::Invalid {
            var: "MIR_AWS_ATTEMPT_TIMEOUT_MS",
            value: "2500".into(),
            reason: "must not exceed MIR_AWS_OPERATION_TIMEOUT_MS (2000)".into(),
        }
    );
    let e = cfg(&[("MIR_AWS_OPERATION_TIMEOUT_MS", "99999999999999999999")]).expect_err("huge");
    assert_eq!(
        e,
        ConfigError::Invalid {
            var: "MIR_AWS_OPERATION_TIMEOUT_MS",
            value: "99999999999999999999".into(),
            reason: "must be a whole number of milliseconds from 100 to 900000".into(),
        }
    );
}

#[test]
fn generated_keys_are_off_unless_explicitly_allowed() {
    assert!(!cfg(&[]).expect("valid").allow_generated_keys);
    assert!(
        cfg(&[("MIR_ALLOW_GENERATED_KEYS", "TRUE")])
            .expect("valid")
            .allow_generated_keys
    );
    let e = cfg(&[("MIR_ALLOW_GENERATED_KEYS", "yes")]).expect_err("not a flag");
    assert_eq!(
        e,
        ConfigError::Invalid {
            var: "MIR_ALLOW_GENERATED_KEYS",
            value: "yes".into(),
            reason: "must be true or false".into(),
        }
    );
}

#[test]
fn the_certificate_grace_defaults_to_a_day_and_refuses_zero() {
    assert_eq!(cfg(&[]).expect("valid").certificate_grace_hours, 24);
    let e = cfg(&[("MIR_CERTIFICATE_GRACE_HOURS", "0")]).expect_err("zero");
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                var: "MIR_CERTIFICATE_GRACE_HOURS",
                ..
            }
        ),
        "{e:?}"
    );
}
