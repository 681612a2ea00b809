//! The module against `mir local` (the CLI's current context, or `MIR_API` and
//! `MIR_API_TOKEN`):
//!
//! ```text
//! mir local &                              # the hub, http://127.0.0.1:8180
//! cargo run -p mir-module-offline-alert --bin offline-alert -- 5
//! ```
//!
//! The argument is the number of minutes (a decimal: `0.1` is six seconds). Ctrl-C
//! stops it.

use std::time::Duration;

use mir_module_sdk::Module;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let minutes: f64 = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .map_err(|e| anyhow::anyhow!("minutes {a:?}: {e}"))?,
        None => anyhow::bail!("usage: offline-alert MINUTES"),
    };
    if !(minutes.is_finite() && minutes >= 0.0) {
        anyhow::bail!("minutes must be a positive number, not {minutes}");
    }
    let mut builder = Module::builder();
    if let Ok(api) = std::env::var("MIR_API") {
        builder = builder.api(api);
    }
    if let Ok(token) = std::env::var("MIR_API_TOKEN") {
        builder = builder.token(token);
    }
    let module = builder.build()?;
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    mir_module_offline_alert::local::run(
        module,
        Duration::from_secs_f64(minutes * 60.0),
        minutes,
        stop,
    )
    .await?;
    Ok(())
}
