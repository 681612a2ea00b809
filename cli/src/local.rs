//! `mir local`: the flags and the process around [`mir_hub::Hub`] (which holds the
//! broker, the rules emulation, the function registry and the HTTP API): configuration
//! from defaults < `--config` file < flags, logs on stderr, the ready line on stdout,
//! and Ctrl-C or SIGTERM to stop.

use std::path::PathBuf;

use mir_hub::{Hub, HubConfig, Profile};

pub use mir_hub::config;

/// Options of `mir local`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(
    after_help = "Examples:\n  mir local                          # hub on 1883 (MQTT), 8883 (mTLS), 8180 (HTTP)\n  mir local --print-config > hub.yaml && mir local --config hub.yaml\n  mir local --http-port 0 --mqtt-port 0 --mqtts-port 0 --data-dir /tmp/hub\n  mir local --chaos --chaos-seed 7          # duplicated, delayed, reordered invocations"
)]
pub struct LocalArgs {
    /// Print the default configuration (YAML) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Configuration file (YAML; see --print-config). Flags override it.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Stores: `local` (embedded database) or `localstack` (AWS adapters on --aws-endpoint).
    #[arg(long, value_parser = parse_profile, value_name = "local|localstack")]
    pub profile: Option<Profile>,
    /// Where the database, the local CA and dead letters live.
    #[arg(long, env = "MIR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    pub bind: Option<std::net::IpAddr>,
    /// Plain MQTT port (0: any free port).
    #[arg(long)]
    pub mqtt_port: Option<u16>,
    /// MQTT over mutual TLS port (0: any free port).
    #[arg(long)]
    pub mqtts_port: Option<u16>,
    /// HTTP API port (0: any free port).
    #[arg(long)]
    pub http_port: Option<u16>,
    /// Log filter, e.g. info or mir=debug.
    #[arg(long)]
    pub log_level: Option<String>,
    /// Seconds without heartbeat before a device is marked offline.
    #[arg(long)]
    pub stale_after_secs: Option<u64>,
    /// AWS-compatible endpoint of the `localstack` profile (DynamoDB).
    #[arg(long)]
    pub aws_endpoint: Option<String>,
    /// Table name prefix of the `localstack` profile (`<prefix>-twins`, ...).
    #[arg(long)]
    pub aws_table_prefix: Option<String>,
    /// Deliver like AWS at its worst: a share of rule invocations twice, each after a
    /// random delay (0-2 s), so they overtake one another (see `chaos:` in --print-config).
    #[arg(long)]
    pub chaos: bool,
    /// Seed of --chaos, to replay a run (default: random, printed at start).
    #[arg(long, value_name = "N")]
    pub chaos_seed: Option<u64>,
    /// Bearer token the HTTP API requires (access.apiToken); needed with a --bind
    /// beyond loopback. Prefer the environment variable to the flag.
    #[arg(
        long,
        env = "MIR_API_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub api_token: Option<String>,
    /// With a --bind beyond loopback, open the plain MQTT port there too (any client
    /// there may claim a device id that holds no certificate).
    #[arg(long)]
    pub insecure_plain_mqtt: bool,
}

impl LocalArgs {
    /// Defaults < file < flags.
    pub fn resolve(&self) -> anyhow::Result<HubConfig> {
        let mut c = match &self.config {
            Some(path) => HubConfig::from_file(path)?,
            None => HubConfig::default(),
        };
        macro_rules! take {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = v.clone(); } )* };
        }
        take!(
            profile,
            data_dir,
            bind,
            mqtt_port,
            mqtts_port,
            http_port,
            log_level,
            stale_after_secs,
            aws_endpoint,
            aws_table_prefix
        );
        if let Some(t) = &self.api_token {
            c.access.api_token = Some(t.clone());
        }
        if self.insecure_plain_mqtt {
            c.access.insecure_plain_mqtt = true;
        }
        if self.chaos || self.chaos_seed.is_some() {
            c.chaos.enabled = true;
        }
        if self.chaos_seed.is_some() {
            c.chaos.seed = self.chaos_seed;
        }
        c.validate()?;
        Ok(c)
    }
}

/// `--profile`: `local` or `localstack`.
fn parse_profile(s: &str) -> Result<Profile, String> {
    match s {
        "local" => Ok(Profile::Local),
        "localstack" => Ok(Profile::Localstack),
        other => Err(format!("unknown profile {other:?}: local or localstack")),
    }
}

/// Runs the hub until Ctrl-C (or SIGTERM).
pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    if args.print_config {
        print!("{}", serde_yaml::to_string(&HubConfig::default())?);
        return Ok(());
    }
    let config = args.resolve()?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log_level))
        .with_writer(std::io::stderr)
        .try_init();
    let hub = Hub::start(config, shutdown_signal()).await?;
    println!(
        "{}",
        serde_json::json!({ "event": "ready", "endpoints": hub.endpoints, "chaosSeed": hub.chaos_seed })
    );
    if let Some(seed) = hub.chaos_seed {
        eprintln!("chaos is on: seed {seed} (replay with --chaos-seed {seed})");
    }
    eprintln!(
        "mir local is running\n  Console   {}/\n  HTTP API  {}\n  MQTT      {}\n  MQTT/mTLS {} (CA: {})\n  data      {}\nTry: mir device ls --api {}   (Ctrl-C to stop)",
        hub.endpoints.http.trim_end_matches('/'),
        hub.endpoints.http,
        hub.endpoints.mqtt,
        hub.endpoints.mqtts,
        hub.endpoints.ca_cert.display(),
        hub.endpoints.data_dir.display(),
        hub.endpoints.http,
    );
    hub.stopped().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chaos_flags_turn_chaos_on_and_a_seed_replays() {
        let off = LocalArgs::default().resolve().expect("defaults");
        assert!(!off.chaos.enabled);
        let on = LocalArgs {
            chaos: true,
            ..LocalArgs::default()
        }
        .resolve()
        .expect("chaos");
        assert!(on.chaos.enabled && on.chaos.seed.is_none());
        let seeded = LocalArgs {
            chaos_seed: Some(7),
            ..LocalArgs::default()
        }
        .resolve()
        .expect("a seed");
        assert!(seeded.chaos.enabled);
        assert_eq!(seeded.chaos.seed, Some(7));
    }
}
