//! The Mir device SDK: connect a device to Mir over MQTT (AWS IoT Core, the local hub
//! `mir local`, or any MQTT 3.1.1 broker), stream telemetry, answer commands and
//! reconcile desired/reported properties. It follows Mir's Go SDK: a builder, handlers
//! registered per protobuf message, `launch`, `send_telemetry`, `send_properties`.
//!
//! ```no_run
//! use std::time::Duration;
//! use mir_device_sdk::{LogLevel, Mir};
//! use mir_proto::examples::weather::{
//!     ActivateHvacCmd, ActivateHvacResp, DataRateProp, DataRateStatus, Env, DESCRIPTOR_SET,
//! };
//!
//! # async fn device() -> Result<(), Box<dyn std::error::Error>> {
//! let mir = Mir::builder()
//!     .device_id("weather")
//!     .target("mqtt://127.0.0.1:1883")
//!     .schema(DESCRIPTOR_SET)
//!     .log_level(LogLevel::Info)
//!     .build()?;
//!
//! mir.handle_command(|cmd: ActivateHvacCmd| async move {
//!     tracing::info!("HVAC on for {} s", cmd.duration_sec);
//!     Ok::<_, String>(ActivateHvacResp { success: true })
//! });
//! let reporter = mir.clone();
//! mir.handle_properties(move |rate: DataRateProp| {
//!     let _ = reporter.send_properties(&DataRateStatus { sec: rate.sec.max(1) });
//! });
//!
//! let running = mir.launch(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! mir.wait_connected(Duration::from_secs(10)).await?;
//! mir.send_telemetry(&Env { temperature: 21, ..Default::default() })?;
//! running.wait().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - `config`: [`Builder`], [`Target`], [`Credentials`], [`LogLevel`], [`IdPrefix`]:
//!   everything is validated by [`Builder::build`] ([`BuildError`]).
//! - `client`: [`Mir`], the cloneable device handle: handler registration, sends
//!   (never blocking: [`SdkError::QueueFull`] rather than waiting), [`Mir::launch`],
//!   status.
//! - `session`: the session state machine, free of I/O: what is sent on every connect
//!   (subscriptions, `Hello` with the zlib-compressed schema, a pull of desired
//!   properties, a heartbeat), telemetry batching under the 128 KB payload limit,
//!   command and desired-property routing, the outbox.
//! - `eventloop`: the network side: a poller task owning rumqttc's event loop, the
//!   driver feeding the session, command handler tasks and the property task.
//! - `tls`: rustls (ring) client configuration; ALPN `x-amzn-mqtt-ca` on port 443.
//! - `handlers`: type-erased handlers by message full name.
//!
//! # Topics
//!
//! Everything lives under `mir/{device id}/` (see [`mir_proto::topics`]): the device
//! publishes `hello`, `hb`, `tlm`, `cfg/reported`, `cfg/desired/get`, `cmd/resp` (all
//! QoS 1) and subscribes to `cmd/req`, `cfg/desired`, `hello/get`.

mod client;
mod config;
mod error;
mod eventloop;
mod handlers;
mod session;
mod tls;

#[cfg(test)]
mod test_support;

pub use client::{Mir, Running, Status};
pub use config::{
    Builder, Credentials, IdPrefix, LogLevel, Scheme, Target, DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_QUEUE_CAPACITY, DEFAULT_TARGET,
    DEFAULT_TELEMETRY_LINGER,
};
pub use error::{BuildError, SdkError};
pub use session::{BATCH_LIMIT, BATCH_SAFETY_MARGIN};
pub use tls::AWS_IOT_ALPN;

/// This SDK's version, sent in `Hello.sdk_version`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
