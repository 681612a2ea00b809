//! Against `mir local`: the module reads the event feed; a `DeviceOffline` starts a
//! timer of N minutes for its device, a `DeviceOnline` or `DeviceDeleted` cancels it,
//! and a timer that ends publishes the [`alert`](crate::alert). Devices already offline
//! when it starts are not alerted on.

use std::{collections::HashMap, future::Future, time::Duration};

use futures::StreamExt;
use tokio::task::JoinHandle;

use mir_module_sdk::{EventReason, FeedEvent, FeedFilter, Module, ModuleError};

use crate::{alert, who, Platform};

/// Runs until `shutdown` completes (or the stream ends for good): alerts on the devices
/// offline for `after` (`minutes` in the alert's words).
pub async fn run(
    module: Module,
    after: Duration,
    minutes: f64,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ModuleError> {
    let mut events = module.events(&FeedFilter::default()).await?;
    tracing::info!(?after, "watching for devices offline");
    let mut timers: HashMap<String, JoinHandle<()>> = HashMap::new();
    tokio::pin!(shutdown);
    loop {
        let event = tokio::select! {
            _ = &mut shutdown => break,
            e = events.next() => e,
        };
        let event = match event {
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "skipping an event");
                continue;
            }
            None => break,
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
        timers.retain(|_, t| !t.is_finished());
    }
    for (_, t) in timers {
        t.abort();
    }
    Ok(())
}

/// Waits `after`, then logs the alert and publishes it.
async fn alert_after(module: Module, offline: FeedEvent, after: Duration, minutes: f64) {
    tokio::time::sleep(after).await;
    tracing::warn!(device = %who(&offline), minutes, "ALERT: device offline");
    if let Err(e) = module.publish(&alert(&offline, minutes)).await {
        tracing::error!(device = %who(&offline), error = %e, "cannot publish the alert");
    }
}
