//! The weather device of Mir's SDK tutorial, in Rust.
//!
//! - telemetry `schema.v1.Env` every data-rate seconds (random values, NANO timestamp);
//! - command `schema.v1.ActivateHVACCmd` -> `ActivateHVACResp { success: true }`, reporting
//!   `HVACStatus { online: true }`, then `false` after `duration_sec`;
//! - desired property `schema.v1.DataRateProp` changes the rate (at least 1 s) and is
//!   reported back as `DataRateStatus`.
//!
//! ```sh
//! cargo run -p mir-device-sdk --example weather -- [mqtt://127.0.0.1:1883] [weather]
//! # or MIR_TARGET=... MIR_DEVICE_ID=... cargo run -p mir-device-sdk --example weather
//! ```

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use mir_device_sdk::{LogLevel, Mir};
use mir_proto::examples::weather::{
    ActivateHvacCmd, ActivateHvacResp, DataRateProp, DataRateStatus, Env, HvacStatus,
    DESCRIPTOR_SET,
};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let target = args
        .next()
        .or_else(|| std::env::var("MIR_TARGET").ok())
        .unwrap_or_else(|| "mqtt://127.0.0.1:1883".to_string());
    let device_id = args
        .next()
        .or_else(|| std::env::var("MIR_DEVICE_ID").ok())
        .unwrap_or_else(|| "weather".to_string());

    let mir = Mir::builder()
        .device_id(device_id)
        .target(target)
        .log_level(LogLevel::Info)
        .schema(DESCRIPTOR_SET)
        .build()?;

    let data_rate = Arc::new(AtomicU64::new(3));

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
            station: "roof".to_string(),
        };
        if let Err(e) = mir.send_telemetry(&env) {
            tracing::error!("error sending telemetry: {e}");
        }
    }
    running.wait().await?;
    Ok(())
}
