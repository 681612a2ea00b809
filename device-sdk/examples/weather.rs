//! The weather device of Mir's SDK tutorial, in Rust.
//!
//! - telemetry `schema.v1.Env` every data-rate seconds (random values, NANO timestamp);
//! - command `schema.v1.ActivateHVACCmd` -> `ActivateHVACResp { success: true }`, reporting
//!   `HVACStatus { online: true }`, then `false` after `duration_sec`;
//! - desired property `schema.v1.DataRateProp` changes the rate (at least 1 s) and is
//!   reported back as `DataRateStatus`.
//!
//! Settings come from `device.yaml` (Mir's layout, see `examples/device.yaml`): the
//! first of `./device.yaml`, `~/.config/mir/device.yaml`, `/etc/mir/device.yaml`, else
//! the example's own file; a path can be given as the first argument. `MIR__...`
//! variables fill what the file leaves out (`MIR__DEVICE__ID`, `MIR__TARGET`, ...).
//!
//! ```sh
//! cargo run -p mir-device-sdk --example weather -- [path/to/device.yaml]
//! ```

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use mir_device_sdk::{default_config_paths, Mir, Secret};
use mir_proto::examples::weather::{
    ActivateHvacCmd, ActivateHvacResp, DataRateProp, DataRateStatus, Env, HvacStatus,
    DESCRIPTOR_SET,
};
use tokio::sync::watch;

/// The `user:` section of `device.yaml`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WeatherConfig {
    /// Seconds between two `Env` messages (until the desired `DataRateProp` says otherwise).
    data_rate_sec: u64,
    station: String,
    /// Kept out of logs.
    #[allow(dead_code)]
    api_key: Option<Secret<String>>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .or_else(|| default_config_paths().into_iter().find(|p| p.is_file()))
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/device.yaml")
        });

    let (mir, config): (Mir, WeatherConfig) = Mir::builder()
        .config_file(&file)
        .schema(DESCRIPTOR_SET)
        .build_with_user_config()?;
    tracing::info!(file = %file.display(), ?config, "weather station {}", mir.device_id());

    let data_rate = Arc::new(AtomicU64::new(config.data_rate_sec.max(1)));
    let station = config.station.clone();

    let m = mir.clone();
    mir.handle_command(move |cmd: ActivateHvacCmd| {
        let m = m.clone();
        async move {
            tracing::info!(
                "handling command: activating HVAC for {} sec",
                cmd.duration_sec
            );
            if let Err(e) = m.send_properties(&HvacStatus { online: true }) {
                tracing::error!("error sending HVAC status: {e}");
            }
            let duration = Duration::from_secs(u64::try_from(cmd.duration_sec).unwrap_or(0));
            tokio::spawn(async move {
                tokio::time::sleep(duration).await;
                tracing::info!("turning off HVAC");
                if let Err(e) = m.send_properties(&HvacStatus { online: false }) {
                    tracing::error!("error sending HVAC status: {e}");
                }
            });
            Ok::<_, String>(ActivateHvacResp { success: true })
        }
    });

    let m = mir.clone();
    let rate = Arc::clone(&data_rate);
    mir.handle_properties(move |prop: DataRateProp| {
        let sec = prop.sec.max(1);
        rate.store(u64::try_from(sec).unwrap_or(1), Ordering::Relaxed);
        tracing::info!("data rate changed to {sec}");
        if let Err(e) = m.send_properties(&DataRateStatus { sec }) {
            tracing::error!("error sending data rate status: {e}");
        }
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop_tx.send(true);
    });
    let mut stopped = stop_rx.clone();
    let running = mir
        .launch(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await?;

    let mut stopped = stop_rx;
    loop {
        let wait = Duration::from_secs(data_rate.load(Ordering::Relaxed));
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(wait) => {}
        }
        let env = Env {
            ts: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0),
            temperature: rand::random_range(0..101),
            pressure: rand::random_range(0..101),
            humidity: rand::random_range(0..101),
            wind_speed: rand::random_range(0.0..30.0),
            raining: rand::random_bool(0.2),
            station: station.clone(),
        };
        if let Err(e) = mir.send_telemetry(&env).await {
            tracing::error!("error sending telemetry: {e}");
        }
    }
    running.wait().await?;
    Ok(())
}
