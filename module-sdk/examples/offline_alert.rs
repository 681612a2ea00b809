//! `offline_alert`: when a device has been offline for N minutes, publish a custom
//! Warning event `DeviceOfflineAlert` and log an alert.
//!
//! It watches the event feed for `DeviceOffline` and `DeviceOnline`: an offline device
//! starts a timer of N minutes, its coming back online cancels it; when the timer ends
//! the module publishes `DeviceOfflineAlert` about the device (payload `{"minutes": N}`),
//! which the feed fans out like Mir's own events (`mir evt watch --reason Custom`).
//! Devices already offline when it starts are not alerted on.
//!
//! Run it against `mir local` (the CLI's current context, or `MIR_API` /
//! `MIR_API_TOKEN`):
//!
//! ```text
//! mir local &                                   # the hub, http://127.0.0.1:8180
//! cargo run -p mir-module-sdk --example offline_alert -- 5
//! ```
//!
//! The argument is the number of minutes (a decimal: `0.1` is six seconds).

use std::{collections::HashMap, time::Duration};

use futures::StreamExt;
use tokio::task::JoinHandle;

use mir_module_sdk::{EventReason, EventType, FeedEvent, FeedFilter, Module, PublishEvent};

/// The custom event's name.
const ALERT: &str = "DeviceOfflineAlert";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let minutes: f64 = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .map_err(|e| anyhow::anyhow!("minutes {a:?}: {e}"))?,
        None => anyhow::bail!("usage: offline_alert MINUTES"),
    };
    if !(minutes.is_finite() && minutes >= 0.0) {
        anyhow::bail!("minutes must be a positive number, not {minutes}");
    }
    let after = Duration::from_secs_f64(minutes * 60.0);
    let mut builder = Module::builder();
    if let Ok(api) = std::env::var("MIR_API") {
        builder = builder.api(api);
    }
    if let Ok(token) = std::env::var("MIR_API_TOKEN") {
        builder = builder.token(token);
    }
    let module = builder.build()?;
    let mut events = module.events(&FeedFilter::default()).await?;
    tracing::info!(?after, "watching for devices offline");
    let mut timers: HashMap<String, JoinHandle<()>> = HashMap::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "skipping an event");
                continue;
            }
        };
        match event.reason {
            EventReason::DeviceOffline => {
                let timer =
                    tokio::spawn(alert_after(module.clone(), event.clone(), after, minutes));
                if let Some(old) = timers.insert(event.device_id.clone(), timer) {
                    old.abort();
                }
            }
            EventReason::DeviceOnline | EventReason::DeviceDeleted => {
                if let Some(timer) = timers.remove(&event.device_id) {
                    timer.abort();
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Waits `after`, then logs the alert and publishes it.
async fn alert_after(module: Module, offline: FeedEvent, after: Duration, minutes: f64) {
    tokio::time::sleep(after).await;
    let who = if offline.name.is_empty() {
        offline.device_id.clone()
    } else {
        format!("{}/{}", offline.name, offline.namespace)
    };
    tracing::warn!(device = %who, minutes, "ALERT: device offline");
    let alert = PublishEvent {
        device_id: offline.device_id.clone(),
        event_type: EventType::Warning,
        name: ALERT.into(),
        message: format!("{who} has been offline for {minutes} minutes"),
        payload: serde_json::json!({ "minutes": minutes, "offlineEvent": offline.id }),
    };
    if let Err(e) = module.publish_event(&alert).await {
        tracing::error!(device = %who, error = %e, "cannot publish the alert");
    }
}
