//! `mir swarm`: virtual devices from a swarm file (Mir's format), running on the real
//! device SDK.
//!
//! - [`spec`]: the file format, the `-j` template and the `--ids` swarm.
//! - [`plan`]: validation, device ids, the generated `.proto` per device group
//!   (compiled with protox) and telemetry generators.
//! - [`expr`]: generator expressions.
//! - this module: deployment in batches (twin first, through the API, so that
//!   namespace, labels and annotations are right from the first connection), a progress
//!   bar, telemetry loops, command echo, desired-to-reported echo, and shutdown.

pub mod expr;
pub mod plan;
pub mod spec;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use clap::Args;
use serde_json::json;
use tokio::sync::watch;

use mir_device_sdk::{LogLevel, Mir, Running};
use mir_shared::domain::twin::Meta;
use mir_shared::domain::Twin;

use crate::client::{Client, ClientError};
use plan::{DevicePlan, GroupPlan};
use spec::SwarmFile;

/// How long a device may take to connect while deploying.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Status line while running.
const STATS_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  mir swarm --ids reco,capstone,pathstone      # simple devices sending basic telemetry
  mir swarm -j > my-swarm.yaml                 # a complete example file
  mir swarm -f my-swarm.yaml
  cat my-swarm.yaml | mir swarm
  mir swarm -j | mir swarm
  mir swarm -f my-swarm.yaml --target mqtt://10.0.0.5:1883 --duration 10m

The devices' twins are created (or updated) through the API of the current context
with the namespace, labels and annotations of the file; the devices connect to --target.
Commands are echoed back after their delay; desired properties are reported back after
theirs. Stop with Ctrl-C.")]
pub struct SwarmArgs {
    /// Simple devices with these ids (a,b,c)
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "ID,...",
        conflicts_with = "file"
    )]
    pub ids: Vec<String>,
    /// Swarm file ('-' for stdin; without -f and --ids, piped stdin is read)
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print a complete example swarm file and exit
    #[arg(short = 'j', long = "template")]
    pub template: bool,
    /// MQTT endpoint the devices connect to
    #[arg(
        long,
        env = "MIR_SWARM_TARGET",
        default_value = "mqtt://127.0.0.1:1883",
        value_name = "URL"
    )]
    pub target: String,
    /// Stop after this long (e.g. 90s, 10m) instead of waiting for Ctrl-C
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
}

/// Counters shared by every device.
#[derive(Debug, Default)]
struct Stats {
    telemetry: AtomicU64,
    dropped: AtomicU64,
    commands: AtomicU64,
    properties: AtomicU64,
}

/// Runs a swarm until Ctrl-C (or `--duration`).
pub async fn run(client: anyhow::Result<Client>, args: SwarmArgs) -> anyhow::Result<ExitCode> {
    if args.template {
        crate::commands::out(spec::TEMPLATE)?;
        return Ok(ExitCode::SUCCESS);
    }
    let file = load(&args)?;
    let plan = plan::plan(&file)?;
    let stop_after = match &args.duration {
        Some(d) => Some(
            humantime::parse_duration(d)
                .map_err(|e| anyhow!("--duration: invalid duration {d:?} ({e})"))?,
        ),
        None => None,
    };
    let client = client?;
    // Fail early and clearly when the API is not there.
    client
        .list_devices(&mir_shared::domain::Targets {
            ids: vec![plan.groups[0].devices[0].id.clone()],
            ..Default::default()
        })
        .await?;
    let log_level = match plan.log_level.as_deref() {
        Some(l) => l
            .parse::<LogLevel>()
            .map_err(|e| anyhow!("swarm.logLevel: {e}"))?,
        None => LogLevel::Warn,
    };

    let total = plan.device_count();
    eprintln!(
        "Deploying {total} devices ({} groups, schema package {}) in batches of {} to {}",
        plan.groups.len(),
        plan.package,
        plan.batch_size,
        args.target
    );
    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stats = Arc::new(Stats::default());
    let progress = crate::progress::bar(
        u64::try_from(total).unwrap_or(u64::MAX),
        "deployed",
        crate::progress::on_terminal(),
    );
    let mut running: Vec<(Mir, Running)> = Vec::with_capacity(total);
    let mut failures: Vec<String> = Vec::new();

    let all: Vec<(&GroupPlan, &DevicePlan)> = plan
        .groups
        .iter()
        .flat_map(|g| g.devices.iter().map(move |d| (g, d)))
        .collect();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    for batch in all.chunks(plan.batch_size) {
        let deploys = batch.iter().map(|(g, d)| {
            deploy(
                &client,
                &args.target,
                log_level,
                g,
                d,
                started,
                stop_rx.clone(),
                Arc::clone(&stats),
            )
        });
        let results = tokio::select! {
            r = futures::future::join_all(deploys) => r,
            _ = &mut ctrl_c => { interrupted = true; Vec::new() }
        };
        if interrupted {
            break;
        }
        for (r, (_, d)) in results.into_iter().zip(batch) {
            match r {
                Ok(device) => running.push(device),
                Err(e) => {
                    failures.push(format!("{}: {e:#}", d.id));
                    progress.set_message(format!(", {} failed", failures.len()));
                }
            }
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    let deploy_time = started.elapsed();
    for f in failures.iter().take(10) {
        eprintln!("  failed: {f}");
    }
    if failures.len() > 10 {
        eprintln!("  ... and {} more failures", failures.len() - 10);
    }
    if !interrupted {
        eprintln!(
            "Swarm running: {} of {total} devices deployed in {:.1} s{}",
            running.len(),
            deploy_time.as_secs_f64(),
            match stop_after {
                Some(d) => format!("; stopping after {}", humantime::format_duration(d)),
                None => "; Ctrl-C to stop".to_string(),
            }
        );
        wait(&mut ctrl_c, stop_after, &running, &stats).await;
    }
    eprintln!("Stopping {} devices...", running.len());
    let _ = stop_tx.send(true);
    let waits = running.into_iter().map(|(_, r)| r.wait());
    let _ = tokio::time::timeout(Duration::from_secs(15), futures::future::join_all(waits)).await;
    eprintln!(
        "Stopped: {} telemetry messages sent ({} dropped), {} commands echoed, {} properties reported",
        stats.telemetry.load(Ordering::Relaxed),
        stats.dropped.load(Ordering::Relaxed),
        stats.commands.load(Ordering::Relaxed),
        stats.properties.load(Ordering::Relaxed),
    );
    Ok(crate::commands::status(failures.is_empty()))
}

/// Waits for Ctrl-C or the duration, printing a status line now and then.
async fn wait(
    ctrl_c: &mut std::pin::Pin<&mut impl std::future::Future<Output = std::io::Result<()>>>,
    stop_after: Option<Duration>,
    running: &[(Mir, Running)],
    stats: &Stats,
) {
    let deadline = stop_after.map(|d| tokio::time::Instant::now() + d);
    let mut ticker = tokio::time::interval(STATS_EVERY);
    ticker.tick().await;
    loop {
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut *ctrl_c => return,
            _ = until => return,
            _ = ticker.tick() => {
                let connected = running.iter().filter(|(m, _)| m.is_connected()).count();
                eprintln!(
                    "swarm: {connected}/{} connected, {} telemetry sent, {} dropped, {} commands, {} properties",
                    running.len(),
                    stats.telemetry.load(Ordering::Relaxed),
                    stats.dropped.load(Ordering::Relaxed),
                    stats.commands.load(Ordering::Relaxed),
                    stats.properties.load(Ordering::Relaxed),
                );
            }
        }
    }
}

/// The swarm file: `--ids`, `-f FILE` (`-` for stdin), or piped stdin.
fn load(args: &SwarmArgs) -> anyhow::Result<SwarmFile> {
    if !args.ids.is_empty() {
        let ids: Vec<String> = args
            .ids
            .iter()
            .map(|i| i.trim().to_string())
            .filter(|i| !i.is_empty())
            .collect();
        if ids.is_empty() {
            bail!("--ids is empty: give device ids, e.g. --ids power,weather");
        }
        return Ok(SwarmFile::for_ids(&ids));
    }
    let text = match &args.file {
        Some(p) if p.as_os_str() == "-" => read_stdin()?,
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the swarm file {}", p.display()))?,
        None if !std::io::stdin().is_terminal() => read_stdin()?,
        None => bail!(
            "nothing to simulate: give --ids a,b,c, -f swarm.yaml, or pipe a swarm file; \
             `mir swarm -j` prints an example"
        ),
    };
    if text.trim().is_empty() {
        bail!("the swarm file is empty; `mir swarm -j` prints an example");
    }
    SwarmFile::parse(&text)
}

fn read_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the swarm file from stdin")?;
    Ok(text)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Creates or updates the device's twin with the file's meta.
async fn upsert_twin(client: &Client, d: &DevicePlan) -> anyhow::Result<()> {
    let patch = json!({"meta": {
        "name": d.id,
        "namespace": d.namespace,
        "labels": d.labels,
        "annotations": d.annotations,
    }});
    match client.patch_device(&d.id, &patch).await {
        Ok(_) => Ok(()),
        Err(ClientError::Api { status: 404, .. }) => {
            let mut twin = Twin {
                meta: Meta {
                    name: d.id.clone(),
                    namespace: d.namespace.clone(),
                    labels: d.labels.clone(),
                    annotations: d.annotations.clone(),
                },
                ..Default::default()
            };
            twin.spec.device_id = d.id.clone();
            client.apply_device(&d.id, &twin).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Deploys one device: twin, SDK device with echo handlers, launch, connect, telemetry.
#[allow(clippy::too_many_arguments)]
async fn deploy(
    client: &Client,
    target: &str,
    log_level: LogLevel,
    group: &GroupPlan,
    d: &DevicePlan,
    started: Instant,
    stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
) -> anyhow::Result<(Mir, Running)> {
    upsert_twin(client, d)
        .await
        .context("cannot create the twin")?;
    let mir = Mir::builder()
        .device_id(d.id.as_str())
        .target(target)
        .schema(&group.descriptor_set)
        .log_level(log_level)
        // Simulated devices keep their queue in memory (the SDK's default is on disk).
        .memory_only()
        .build()?;
    for (name, delay) in &group.commands {
        let (name, delay) = (name.clone(), *delay);
        let stats = Arc::clone(&stats);
        mir.handle_command_raw(&name.clone(), move |payload: Bytes| {
            let name = name.clone();
            let stats = Arc::clone(&stats);
            async move {
                tokio::time::sleep(delay).await;
                stats.commands.fetch_add(1, Ordering::Relaxed);
                Ok::<_, String>((name, payload))
            }
        });
    }
    for (name, delay) in &group.properties {
        let (name, delay) = (name.clone(), *delay);
        let reporter = mir.clone();
        let stats = Arc::clone(&stats);
        mir.handle_properties_raw(&name.clone(), move |payload: Bytes| {
            let (reporter, name, stats) = (reporter.clone(), name.clone(), Arc::clone(&stats));
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                match reporter.send_properties_raw(&name, payload) {
                    Ok(()) => {
                        stats.properties.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(device = %reporter.device_id(), %name, "cannot report: {e}")
                    }
                }
            });
        });
    }
    let mut shutdown = stop.clone();
    let running = mir
        .launch(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await?;
    mir.wait_connected(CONNECT_TIMEOUT)
        .await
        .map_err(|e| anyhow!("did not connect to {target}: {e}"))?;
    for tlm in &group.telemetry {
        let (mir, tlm, stats) = (mir.clone(), tlm.clone(), Arc::clone(&stats));
        let mut stop = stop.clone();
        tokio::spawn(async move {
            // Spread devices over the interval so that readings do not all coincide.
            let offset = tlm.interval.mul_f64(rand::random::<f64>());
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + offset, tlm.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let t = started.elapsed().as_secs_f64();
                let payload = tlm.reading(t, now_ns(), &mut rand::rng());
                match mir.send_telemetry_raw(&tlm.full_name, payload).await {
                    Ok(()) => stats.telemetry.fetch_add(1, Ordering::Relaxed),
                    Err(_) => stats.dropped.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    Ok((mir, running))
}
