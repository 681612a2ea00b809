//! Configuration of the local hub: defaults < config file < flags. Validated once.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use mir_shared::domain::{EventRetention, RetentionError};
use serde::{Deserialize, Serialize};

/// Where the hub keeps its stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Embedded database in the data directory (needs nothing installed).
    Local,
    /// DynamoDB/Timestream adapters against an AWS-compatible endpoint (LocalStack).
    Localstack,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HubConfig {
    pub profile: Profile,
    /// Where the database, the local CA and dead letters live.
    pub data_dir: PathBuf,
    /// Address to listen on (keep it on loopback unless you mean to expose the hub).
    pub bind: IpAddr,
    /// Plain MQTT port (0: any free port).
    pub mqtt_port: u16,
    /// MQTT over mutual TLS (client certificates from the local CA).
    pub mqtts_port: u16,
    /// HTTP API (same routes as API Gateway).
    pub http_port: u16,
    pub log_level: String,
    /// A device without heartbeat for this long is marked offline.
    pub stale_after_secs: u64,
    /// How often the stale-heartbeat sweep runs (the cloud's schedule).
    pub sweep_interval_secs: u64,
    /// Days events are kept: `defaultDays`, and `byReason` overrides (default: 90 days,
    /// `DeviceOnline` and `DeviceOffline` 7), the same policy as `MIR_EVENT_RETENTION`.
    pub event_retention: EventRetention,
    pub commands_retention_days: u32,
    /// Telemetry points older than this are pruned (by their time).
    pub telemetry_retention_days: u32,
    /// QoS 1 messages kept per offline persistent session.
    pub max_queued_per_session: usize,
    /// Endpoint of the AWS-compatible services for the `localstack` profile.
    pub aws_endpoint: String,
    /// Table names of the `localstack` profile: `<prefix>-twins`, `<prefix>-events`, ...
    pub aws_table_prefix: String,
    /// How rule invocations are delivered (concurrency, retries).
    pub delivery: DeliveryConfig,
    /// Duplicated, delayed and reordered invocations, as AWS may deliver them.
    pub chaos: ChaosConfig,
    /// Who may reach the hub, once it listens beyond loopback.
    pub access: AccessConfig,
}

/// Who may reach the hub. On loopback (the default) only this machine can; a hub bound
/// beyond it (`bind`) needs `apiToken`, keeps the plain MQTT port on loopback unless
/// `insecurePlainMqtt`, and answers HTTP only for its own host names.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Plain MQTT (no certificate: any client may claim any device id without one)
    /// listens on `bind` too, not only on loopback.
    pub insecure_plain_mqtt: bool,
    /// Bearer token every HTTP request but `/healthz` must carry
    /// (`Authorization: Bearer <token>`), at least 16 characters; required when `bind`
    /// is beyond loopback. Also `MIR_API_TOKEN`. Never logged.
    pub api_token: Option<String>,
    /// Host names the HTTP API answers for, besides `localhost` and IP addresses (a
    /// request naming another host, as a DNS-rebinding page would, is refused).
    pub allowed_hosts: Vec<String>,
}

impl std::fmt::Debug for AccessConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessConfig")
            .field("insecure_plain_mqtt", &self.insecure_plain_mqtt)
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

/// The shortest `access.apiToken` accepted.
pub const MIN_API_TOKEN_LEN: usize = 16;

/// Rule invocations run concurrently and unordered, as IoT rules invoke Lambda
/// asynchronously; a retryable failure is retried after each delay in turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Invocations running at once (the functions' concurrency).
    pub max_concurrency: usize,
    /// Invocations accepted but not finished before a publishing device waits for its
    /// PUBACK (backpressure).
    pub max_queued: usize,
    /// Delay before each retry of a retryable failure (Lambda: two retries, about one
    /// and two minutes apart; shorter here).
    pub retry_delays_ms: Vec<u64>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            max_concurrency: 64,
            max_queued: 10_000,
            retry_delays_ms: vec![1_000, 3_000],
        }
    }
}

/// `mir local --chaos`: each invocation may run twice and starts after a random delay,
/// so invocations overtake one another. Decisions are a function of the seed and the
/// message, so a run with the same seed and the same messages replays them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ChaosConfig {
    pub enabled: bool,
    /// Seed of the decisions; unset, a random one (logged at start).
    pub seed: Option<u64>,
    /// Share of invocations delivered twice, in percent.
    pub duplicate_percent: u8,
    /// Each delivery starts after a random delay in `0..=maxDelayMs`.
    pub max_delay_ms: u64,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            seed: None,
            duplicate_percent: 10,
            max_delay_ms: 2_000,
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            profile: Profile::Local,
            data_dir: default_data_dir(),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            mqtt_port: 1883,
            mqtts_port: 8883,
            http_port: DEFAULT_HTTP_PORT,
            log_level: "info".into(),
            stale_after_secs: 90,
            sweep_interval_secs: 30,
            event_retention: EventRetention::default(),
            commands_retention_days: 7,
            telemetry_retention_days: 365,
            max_queued_per_session: 10_000,
            aws_endpoint: "http://localhost:4566".into(),
            aws_table_prefix: "mir-local".into(),
            delivery: DeliveryConfig::default(),
            chaos: ChaosConfig::default(),
            access: AccessConfig::default(),
        }
    }
}

/// The HTTP port the CLI talks to by default.
pub const DEFAULT_HTTP_PORT: u16 = 8180;

/// `$MIR_DATA_DIR`, else `$XDG_DATA_HOME/mir/local`, else `~/.local/share/mir/local`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MIR_DATA_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("mir").join("local");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/mir/local"),
        None => PathBuf::from(".mir-local"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
    #[error("invalid config: delivery.maxConcurrency and delivery.maxQueued must be above 0")]
    NoConcurrency,
    #[error("invalid config: chaos.duplicatePercent is {0}, at most 100")]
    DuplicatePercent(u8),
    #[error("invalid config: eventRetention: {0}")]
    EventRetention(#[from] RetentionError),
    #[error("invalid config: bind {0} is beyond loopback, so the HTTP API needs access.apiToken (or MIR_API_TOKEN)")]
    TokenRequired(IpAddr),
    #[error("invalid config: access.apiToken must be at least {MIN_API_TOKEN_LEN} characters")]
    TokenTooShort,
}

impl HubConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        serde_yaml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.stale_after_secs == 0 || self.sweep_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "staleAfterSecs and sweepIntervalSecs must be above 0".into(),
            ));
        }
        let ports = [self.mqtt_port, self.mqtts_port, self.http_port];
        for (i, p) in ports.iter().enumerate() {
            if *p != 0 && ports[..i].contains(p) {
                return Err(ConfigError::Invalid(format!("port {p} is used twice")));
            }
        }
        if self.delivery.max_concurrency == 0 || self.delivery.max_queued == 0 {
            return Err(ConfigError::NoConcurrency);
        }
        if self.chaos.duplicate_percent > 100 {
            return Err(ConfigError::DuplicatePercent(self.chaos.duplicate_percent));
        }
        self.event_retention.validate()?;
        match &self.access.api_token {
            Some(t) if t.chars().count() < MIN_API_TOKEN_LEN => {
                return Err(ConfigError::TokenTooShort)
            }
            None if !self.bind.is_loopback() => return Err(ConfigError::TokenRequired(self.bind)),
            _ => {}
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map_err(|e| ConfigError::Invalid(format!("logLevel {:?}: {e}", self.log_level)))?;
        Ok(())
    }

    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.bind, port)
    }

    /// Where the plain MQTT port listens: on `bind` when that is loopback or
    /// `access.insecurePlainMqtt` says so, else on loopback only.
    pub fn plain_mqtt_addr(&self) -> SocketAddr {
        if self.bind.is_loopback() || self.access.insecure_plain_mqtt {
            return self.addr(self.mqtt_port);
        }
        let loopback = match self.bind {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(loopback, self.mqtt_port)
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("mir.redb")
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.data_dir.join("ca")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_defaults_parse_back_and_unknown_keys_are_refused() {
        let yaml = serde_yaml::to_string(&HubConfig::default()).expect("yaml");
        let back: HubConfig = serde_yaml::from_str(&yaml).expect("parses");
        assert_eq!(back, HubConfig::default());
        let e = serde_yaml::from_str::<HubConfig>("httpPrt: 1").expect_err("a typo");
        assert!(e.to_string().contains("unknown field `httpPrt`"), "{e}");
        let partial: HubConfig = serde_yaml::from_str("httpPort: 9000").expect("partial");
        assert_eq!(partial.mqtt_port, 1883);
    }

    #[test]
    fn the_same_port_twice_is_refused() {
        let c = HubConfig {
            mqtt_port: 9000,
            http_port: 9000,
            ..HubConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid(m)) if m == "port 9000 is used twice"
        ));
        let c = HubConfig {
            mqtt_port: 0,
            http_port: 0,
            mqtts_port: 0,
            ..HubConfig::default()
        };
        c.validate().expect("any free port, three times");
    }

    #[test]
    fn chaos_is_part_of_the_printed_config_and_checked() {
        let yaml = serde_yaml::to_string(&HubConfig::default()).expect("yaml");
        assert!(yaml.contains("chaos:\n  enabled: false"), "{yaml}");
        assert!(yaml.contains("retryDelaysMs:"), "{yaml}");
        let c: HubConfig =
            serde_yaml::from_str("chaos:\n  enabled: true\n  seed: 7").expect("partial chaos");
        assert!(c.chaos.enabled);
        assert_eq!((c.chaos.seed, c.chaos.max_delay_ms), (Some(7), 2_000));
        let c = HubConfig {
            chaos: ChaosConfig {
                duplicate_percent: 101,
                ..ChaosConfig::default()
            },
            ..HubConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::DuplicatePercent(101))
        ));
        let e = serde_yaml::from_str::<HubConfig>("chaos:\n  dupes: 5").expect_err("a typo");
        assert!(e.to_string().contains("unknown field `dupes`"), "{e}");
    }

    #[test]
    fn event_retention_per_reason_is_part_of_the_printed_config_and_checked() {
        let yaml = serde_yaml::to_string(&HubConfig::default()).expect("yaml");
        assert!(
            yaml.contains("eventRetention:\n  defaultDays: 90\n  byReason:\n    DeviceOnline: 7\n    DeviceOffline: 7\n"),
            "{yaml}"
        );
        let c: HubConfig = serde_yaml::from_str(
            "eventRetention:\n  defaultDays: 30\n  byReason: {CommandFailed: 365}",
        )
        .expect("parses");
        c.validate().expect("valid");
        assert_eq!(
            c.event_retention
                .days(mir_shared::domain::EventReason::CommandFailed),
            365
        );
        assert_eq!(
            c.event_retention
                .days(mir_shared::domain::EventReason::DeviceOnline),
            30
        );
        let c: HubConfig =
            serde_yaml::from_str("eventRetention: {defaultDays: 0}").expect("parses");
        assert!(matches!(
            c.validate(),
            Err(ConfigError::EventRetention(RetentionError::OutOfRange {
                days: 0,
                ..
            }))
        ));
        let e = serde_yaml::from_str::<HubConfig>(
            "eventRetention: {defaultDays: 3, byReason: {Exploded: 1}}",
        )
        .expect_err("an unknown reason");
        assert!(e.to_string().contains("Exploded"), "{e}");
        let e =
            serde_yaml::from_str::<HubConfig>("eventsRetentionDays: 30").expect_err("the old key");
        assert!(
            e.to_string()
                .contains("unknown field `eventsRetentionDays`"),
            "{e}"
        );
    }

    #[test]
    fn a_hub_bound_beyond_loopback_needs_a_token_and_keeps_plain_mqtt_on_loopback() {
        let open = HubConfig {
            bind: "0.0.0.0".parse().expect("ip"),
            ..HubConfig::default()
        };
        assert!(matches!(
            open.validate(),
            Err(ConfigError::TokenRequired(ip)) if ip == open.bind
        ));
        let short = HubConfig {
            access: AccessConfig {
                api_token: Some("short".into()),
                ..AccessConfig::default()
            },
            ..open.clone()
        };
        assert!(matches!(short.validate(), Err(ConfigError::TokenTooShort)));
        let token = HubConfig {
            access: AccessConfig {
                api_token: Some("a-long-enough-token".into()),
                ..AccessConfig::default()
            },
            ..open.clone()
        };
        token.validate().expect("valid");
        assert_eq!(
            token.plain_mqtt_addr(),
            "127.0.0.1:1883".parse().expect("addr")
        );
        assert_eq!(
            token.addr(token.mqtts_port),
            "0.0.0.0:8883".parse().expect("addr")
        );
        let insecure = HubConfig {
            access: AccessConfig {
                insecure_plain_mqtt: true,
                ..token.access.clone()
            },
            ..token
        };
        assert_eq!(
            insecure.plain_mqtt_addr(),
            "0.0.0.0:1883".parse().expect("addr")
        );
        assert!(
            !format!("{insecure:?}").contains("a-long-enough-token"),
            "never logged"
        );
    }
}
