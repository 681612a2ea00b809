//! [`AwsConfig`]: the functions' environment variables, read and validated once (the
//! table in the parent module's docs).

use std::fmt;

use crate::domain::{retention::DEFAULT_RETENTION_DAYS, EventRetention};

/// Environment variable names.
pub mod env {
    pub const TWINS_TABLE: &str = "MIR_TWINS_TABLE";
    pub const SCHEMAS_TABLE: &str = "MIR_SCHEMAS_TABLE";
    pub const COMMANDS_TABLE: &str = "MIR_COMMANDS_TABLE";
    pub const EVENTS_TABLE: &str = "MIR_EVENTS_TABLE";
    pub const TELEMETRY_SINK: &str = "MIR_TELEMETRY_SINK";
    pub const TIMESTREAM_DATABASE: &str = "MIR_TIMESTREAM_DATABASE";
    pub const TIMESTREAM_TABLE: &str = "MIR_TIMESTREAM_TABLE";
    pub const TELEMETRY_TABLE: &str = "MIR_TELEMETRY_TABLE";
    pub const IOT_DATA_ENDPOINT: &str = "MIR_IOT_DATA_ENDPOINT";
    pub const IOT_POLICY_NAME: &str = "MIR_IOT_POLICY_NAME";
    pub const EVENTS_TTL_DAYS: &str = "MIR_EVENTS_TTL_DAYS";
    pub const EVENT_RETENTION: &str = "MIR_EVENT_RETENTION";
    pub const COMMANDS_TTL_DAYS: &str = "MIR_COMMANDS_TTL_DAYS";
    pub const TELEMETRY_RETENTION_DAYS: &str = "MIR_TELEMETRY_RETENTION_DAYS";
    pub const ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
    pub const ALLOW_GENERATED_KEYS: &str = "MIR_ALLOW_GENERATED_KEYS";
    pub const OPERATION_TIMEOUT_MS: &str = "MIR_AWS_OPERATION_TIMEOUT_MS";
    pub const ATTEMPT_TIMEOUT_MS: &str = "MIR_AWS_ATTEMPT_TIMEOUT_MS";
    pub const CERTIFICATE_GRACE_HOURS: &str = "MIR_CERTIFICATE_GRACE_HOURS";
    pub const EVENT_BUS_NAME: &str = "MIR_EVENT_BUS_NAME";
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is not set; this function needs it")]
    Missing { var: &'static str },
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
    /// The configuration names an adapter this binary was built without (a function
    /// links only the SDK clients its `access` needs: see `shared/Cargo.toml`).
    #[error("{var} is set, but this binary was built without the `{feature}` adapter")]
    NotBuiltIn {
        var: &'static str,
        feature: &'static str,
    },
}

/// Where telemetry goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelemetryConfig {
    Timestream { database: String, table: String },
    DynamoDb { table: String },
}

/// Everything the AWS adapters need, read and validated once.
///
/// Holds no secret (credentials come from the SDK's default chain and never pass
/// through here), so `Display` prints all of it for the cold-start log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    pub twins_table: Option<String>,
    pub schemas_table: Option<String>,
    pub commands_table: Option<String>,
    pub events_table: Option<String>,
    pub telemetry: Option<TelemetryConfig>,
    /// Host of the IoT data endpoint (`<prefix>-ats.iot.<region>.amazonaws.com`).
    pub iot_data_endpoint: Option<String>,
    pub iot_policy_name: Option<String>,
    /// The EventBridge bus of the event feed (name or ARN).
    pub event_bus: Option<String>,
    /// How long events are kept, per reason (validated).
    pub event_retention: EventRetention,
    pub commands_ttl_days: u32,
    /// How long telemetry is kept, in days.
    pub telemetry_retention_days: u32,
    /// `AWS_ENDPOINT_URL`: one endpoint for every service (LocalStack, moto).
    pub endpoint_url: Option<String>,
    /// Whether a certificate may be issued without a CSR (AWS then generates the key
    /// and returns it once): off unless `MIR_ALLOW_GENERATED_KEYS=true`.
    pub allow_generated_keys: bool,
    /// Every AWS SDK call ends within this, retries included (below the function's
    /// own timeout, which the CDK app derives it from).
    pub timeouts: SdkTimeouts,
    /// Hours a device's earlier certificates stay active after a new one is issued.
    pub certificate_grace_hours: u32,
}

/// The AWS SDK clients' timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdkTimeouts {
    /// A whole operation, retries included.
    pub operation: std::time::Duration,
    /// One attempt of it.
    pub attempt: std::time::Duration,
}

impl SdkTimeouts {
    /// For an emulator on this machine (`mir local --profile localstack`, moto in
    /// tests): no Lambda timeout to stay under, and a loaded machine answers slowly.
    pub fn emulator() -> Self {
        Self {
            operation: std::time::Duration::from_secs(120),
            attempt: std::time::Duration::from_secs(60),
        }
    }
}

impl Default for SdkTimeouts {
    fn default() -> Self {
        Self {
            operation: std::time::Duration::from_secs(10),
            attempt: std::time::Duration::from_secs(3),
        }
    }
}

/// The longest timeout accepted: Lambda's own limit (15 minutes).
const MAX_TIMEOUT_MS: u64 = 900_000;

fn timeout_ms(var: &'static str, v: Option<String>, default: u64) -> Result<u64, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    match v.parse::<u64>() {
        Ok(n) if (100..=MAX_TIMEOUT_MS).contains(&n) => Ok(n),
        _ => Err(ConfigError::Invalid {
            var,
            value: v,
            reason: format!("must be a whole number of milliseconds from 100 to {MAX_TIMEOUT_MS}"),
        }),
    }
}

fn timeouts(
    operation: Option<String>,
    attempt: Option<String>,
) -> Result<SdkTimeouts, ConfigError> {
    let d = SdkTimeouts::default();
    let op = timeout_ms(
        env::OPERATION_TIMEOUT_MS,
        operation,
        d.operation.as_millis() as u64,
    )?;
    let default_attempt = (d.attempt.as_millis() as u64).min(op);
    let at = timeout_ms(env::ATTEMPT_TIMEOUT_MS, attempt, default_attempt)?;
    if at > op {
        return Err(ConfigError::Invalid {
            var: env::ATTEMPT_TIMEOUT_MS,
            value: at.to_string(),
            reason: format!("must not exceed {} ({op})", env::OPERATION_TIMEOUT_MS),
        });
    }
    Ok(SdkTimeouts {
        operation: std::time::Duration::from_millis(op),
        attempt: std::time::Duration::from_millis(at),
    })
}

fn flag(var: &'static str, v: Option<String>) -> Result<bool, ConfigError> {
    match v.as_deref() {
        None => Ok(false),
        Some(t) if t.eq_ignore_ascii_case("true") => Ok(true),
        Some(f) if f.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(ConfigError::Invalid {
            var,
            value: v.unwrap_or_default(),
            reason: "must be true or false".into(),
        }),
    }
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            twins_table: None,
            schemas_table: None,
            commands_table: None,
            events_table: None,
            telemetry: None,
            iot_data_endpoint: None,
            iot_policy_name: None,
            event_bus: None,
            event_retention: EventRetention::default(),
            commands_ttl_days: 7,
            telemetry_retention_days: DEFAULT_TELEMETRY_RETENTION_DAYS,
            endpoint_url: None,
            allow_generated_keys: false,
            timeouts: SdkTimeouts::default(),
            certificate_grace_hours: 24,
        }
    }
}

/// Telemetry retention when `MIR_TELEMETRY_RETENTION_DAYS` is not set.
pub const DEFAULT_TELEMETRY_RETENTION_DAYS: u32 = 365;
/// The longest telemetry retention accepted (100 years).
pub const MAX_TELEMETRY_RETENTION_DAYS: u32 = 36_500;

fn check_table(var: &'static str, v: &str) -> Result<(), ConfigError> {
    let ok = (3..=255).contains(&v.len())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            var,
            value: v.to_string(),
            reason: "a table name is 3 to 255 letters, digits, '_', '-' or '.'".into(),
        })
    }
}

fn days(var: &'static str, v: Option<String>, default: u32) -> Result<u32, ConfigError> {
    whole(var, v, default, "days")
}

fn whole(
    var: &'static str,
    v: Option<String>,
    default: u32,
    unit: &str,
) -> Result<u32, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => match s.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(ConfigError::Invalid {
                var,
                value: s,
                reason: format!("must be a whole number of {unit}, at least 1"),
            }),
        },
    }
}

fn telemetry_retention(v: Option<String>) -> Result<u32, ConfigError> {
    let var = env::TELEMETRY_RETENTION_DAYS;
    let n = days(var, v.clone(), DEFAULT_TELEMETRY_RETENTION_DAYS)?;
    if n > MAX_TELEMETRY_RETENTION_DAYS {
        return Err(ConfigError::Invalid {
            var,
            value: v.unwrap_or_default(),
            reason: format!("must be at most {MAX_TELEMETRY_RETENTION_DAYS} days (100 years)"),
        });
    }
    Ok(n)
}

/// The event retention: the defaults, `MIR_EVENTS_TTL_DAYS` as the default days when
/// set, then the entries of `MIR_EVENT_RETENTION`.
fn event_retention(
    ttl_days: Option<String>,
    entries: Option<String>,
) -> Result<EventRetention, ConfigError> {
    let default_days = days(
        env::EVENTS_TTL_DAYS,
        ttl_days.clone(),
        DEFAULT_RETENTION_DAYS,
    )?;
    let base = EventRetention {
        default_days,
        ..EventRetention::default()
    };
    base.validate().map_err(|e| ConfigError::Invalid {
        var: env::EVENTS_TTL_DAYS,
        value: ttl_days.unwrap_or_default(),
        reason: e.to_string(),
    })?;
    match entries {
        None => Ok(base),
        Some(text) => base.overridden_by(&text).map_err(|e| ConfigError::Invalid {
            var: env::EVENT_RETENTION,
            value: text,
            reason: e.to_string(),
        }),
    }
}

impl AwsConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Whether this binary has the adapters the configuration names: the IoT clients
    /// (feature `iot`) for `MIR_IOT_DATA_ENDPOINT` and `MIR_IOT_POLICY_NAME`, Timestream
    /// (feature `timestream`) for the timestream sink, EventBridge (feature
    /// `eventbridge`) for `MIR_EVENT_BUS_NAME`.
    pub fn check_built_in(&self) -> Result<(), ConfigError> {
        let missing = |var, feature| Err(ConfigError::NotBuiltIn { var, feature });
        if matches!(self.telemetry, Some(TelemetryConfig::Timestream { .. }))
            && !cfg!(feature = "timestream")
        {
            return missing(env::TELEMETRY_SINK, "timestream");
        }
        if !cfg!(feature = "iot") {
            if self.iot_data_endpoint.is_some() {
                return missing(env::IOT_DATA_ENDPOINT, "iot");
            }
            if self.iot_policy_name.is_some() {
                return missing(env::IOT_POLICY_NAME, "iot");
            }
        }
        if self.event_bus.is_some() && !cfg!(feature = "eventbridge") {
            return missing(env::EVENT_BUS_NAME, "eventbridge");
        }
        Ok(())
    }

    /// Reads the variables through `get` (tests pass a map). Empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let table = |var: &'static str| -> Result<Option<String>, ConfigError> {
            match get(var) {
                Some(v) => check_table(var, &v).map(|()| Some(v)),
                None => Ok(None),
            }
        };
        let twins_table = table(env::TWINS_TABLE)?;
        let schemas_table = table(env::SCHEMAS_TABLE)?;
        let commands_table = table(env::COMMANDS_TABLE)?;
        let events_table = table(env::EVENTS_TABLE)?;
        let telemetry_table = table(env::TELEMETRY_TABLE)?;
        let database = get(env::TIMESTREAM_DATABASE);
        let ts_table = get(env::TIMESTREAM_TABLE);
        let telemetry = match get(env::TELEMETRY_SINK).as_deref() {
            None if database.is_none() && telemetry_table.is_none() => None,
            None | Some("timestream") if database.is_some() || ts_table.is_some() => {
                Some(TelemetryConfig::Timestream {
                    database: database.ok_or(ConfigError::Missing {
                        var: env::TIMESTREAM_DATABASE,
                    })?,
                    table: ts_table.ok_or(ConfigError::Missing {
                        var: env::TIMESTREAM_TABLE,
                    })?,
                })
            }
            Some("timestream") => {
                return Err(ConfigError::Missing {
                    var: env::TIMESTREAM_DATABASE,
                })
            }
            None | Some("dynamodb") => Some(TelemetryConfig::DynamoDb {
                table: telemetry_table.ok_or(ConfigError::Missing {
                    var: env::TELEMETRY_TABLE,
                })?,
            }),
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: env::TELEMETRY_SINK,
                    value: other.to_string(),
                    reason: "must be \"timestream\" or \"dynamodb\"".into(),
                })
            }
        };
        let iot_data_endpoint = match get(env::IOT_DATA_ENDPOINT) {
            Some(v) => {
                let host = v
                    .trim_start_matches("https://")
                    .trim_end_matches('/')
                    .to_string();
                if host.is_empty() || host.contains('/') || host.contains(' ') {
                    return Err(ConfigError::Invalid {
                        var: env::IOT_DATA_ENDPOINT,
                        value: v,
                        reason: "must be a host name such as abc-ats.iot.us-east-1.amazonaws.com"
                            .into(),
                    });
                }
                Some(host)
            }
            None => None,
        };
        let endpoint_url = match get(env::ENDPOINT_URL) {
            Some(v) if !(v.starts_with("http://") || v.starts_with("https://")) => {
                return Err(ConfigError::Invalid {
                    var: env::ENDPOINT_URL,
                    value: v,
                    reason: "must be an http:// or https:// URL".into(),
                })
            }
            other => other,
        };
        Ok(Self {
            twins_table,
            schemas_table,
            commands_table,
            events_table,
            telemetry,
            iot_data_endpoint,
            iot_policy_name: get(env::IOT_POLICY_NAME),
            event_bus: get(env::EVENT_BUS_NAME),
            event_retention: event_retention(get(env::EVENTS_TTL_DAYS), get(env::EVENT_RETENTION))?,
            commands_ttl_days: days(env::COMMANDS_TTL_DAYS, get(env::COMMANDS_TTL_DAYS), 7)?,
            telemetry_retention_days: telemetry_retention(get(env::TELEMETRY_RETENTION_DAYS))?,
            endpoint_url,
            allow_generated_keys: flag(env::ALLOW_GENERATED_KEYS, get(env::ALLOW_GENERATED_KEYS))?,
            timeouts: timeouts(get(env::OPERATION_TIMEOUT_MS), get(env::ATTEMPT_TIMEOUT_MS))?,
            certificate_grace_hours: whole(
                env::CERTIFICATE_GRACE_HOURS,
                get(env::CERTIFICATE_GRACE_HOURS),
                24,
                "hours",
            )?,
        })
    }

    /// The configuration of `mir local --profile localstack`: every table named
    /// `<prefix>-<store>` (e.g. `mir-local-twins`), the DynamoDB telemetry sink (community
    /// LocalStack has no Timestream), all on `endpoint_url`.
    pub fn localstack(endpoint_url: &str, prefix: &str) -> Self {
        let t = |s: &str| Some(format!("{prefix}-{s}"));
        Self {
            twins_table: t("twins"),
            schemas_table: t("schemas"),
            commands_table: t("commands"),
            events_table: t("events"),
            telemetry: Some(TelemetryConfig::DynamoDb {
                table: format!("{prefix}-telemetry"),
            }),
            iot_data_endpoint: None,
            iot_policy_name: None,
            endpoint_url: Some(endpoint_url.trim_end_matches('/').to_string()),
            timeouts: SdkTimeouts::emulator(),
            ..Self::default()
        }
    }

    pub fn commands_ttl(&self) -> chrono::Duration {
        chrono::Duration::days(self.commands_ttl_days.into())
    }

    pub fn telemetry_retention(&self) -> chrono::Duration {
        chrono::Duration::days(self.telemetry_retention_days.into())
    }

    /// Every DynamoDB table of this configuration (for bootstrapping).
    pub fn dynamodb_tables(&self) -> Vec<String> {
        let mut out: Vec<String> = [
            &self.twins_table,
            &self.schemas_table,
            &self.commands_table,
            &self.events_table,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        if let Some(TelemetryConfig::DynamoDb { table }) = &self.telemetry {
            out.push(table.clone());
        }
        out
    }
}

impl fmt::Display for AwsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        write!(
            f,
            "twins={} schemas={} commands={} events={} telemetry=",
            o(&self.twins_table),
            o(&self.schemas_table),
            o(&self.commands_table),
            o(&self.events_table)
        )?;
        match &self.telemetry {
            None => write!(f, "-")?,
            Some(TelemetryConfig::Timestream { database, table }) => {
                write!(f, "timestream:{database}.{table}")?
            }
            Some(TelemetryConfig::DynamoDb { table }) => write!(f, "dynamodb:{table}")?,
        }
        write!(
            f,
            " iotDataEndpoint={} iotPolicy={} eventBus={} eventRetention={} commandsTtlDays={} telemetryRetentionDays={} endpointUrl={} allowGeneratedKeys={} sdkTimeoutMs={}/{}",
            o(&self.iot_data_endpoint),
            o(&self.iot_policy_name),
            o(&self.event_bus),
            self.event_retention,
            self.commands_ttl_days,
            self.telemetry_retention_days,
            o(&self.endpoint_url),
            self.allow_generated_keys,
            self.timeouts.operation.as_millis(),
            self.timeouts.attempt.as_millis()
        )
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
