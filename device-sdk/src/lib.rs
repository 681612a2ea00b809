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
//! mir.send_telemetry(&Env { temperature: 21, ..Default::default() }).await?;
//! running.wait().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Configuration
//!
//! As in Mir: the builder, then a `device.yaml` ([`Builder::config_file`],
//! [`Builder::default_config_file`]: `./device.yaml`, `~/.config/mir/device.yaml`,
//! `/etc/mir/device.yaml`), then `MIR__...` environment variables (`MIR__DEVICE__ID`,
//! `MIR__TARGET`, `MIR__PROFILE`, `MIR__LOG_LEVEL`, `MIR__LOCAL_STORE__PERSISTENCE_TYPE`,
//! ...: the file's keys in SCREAMING_SNAKE_CASE, `__` between levels), then defaults.
//! The `mir:` section refuses unknown keys; the free `user:` section is deserialized into
//! the application's type by [`Builder::build_with_user_config`], with [`Secret`] for
//! values kept out of logs. See `examples/device.yaml` for every key.
//!
//! Profiles ([`Profile`]): `local` (default, the local hub on `mqtt://127.0.0.1:1883`),
//! `localstack`, `aws` (the account's ATS endpoint on 8883, or 443 with ALPN
//! `x-amzn-mqtt-ca`, mutual TLS, [`credentials::AMAZON_ROOT_CA_1`]). Credentials are PEM
//! files: `tls.crt`, `tls.key`, `ca.crt`, searched in `./`, `~/.config/mir/`,
//! `/etc/mir/` for `mqtts://` targets; [`credentials::generate_csr`] creates the key on
//! the device and returns a CSR for the platform to sign.
//!
//! # Offline store and delivery
//!
//! Telemetry (batched) and reported properties are records kept until the broker's
//! PUBACK, never just handed to the MQTT client: a record written on a connection that
//! drops is sent again on the next one (so the platform may see an exact redelivery,
//! deduplicated by `seq`, never a loss). [`Persistence`]: `ifoffline` (default) writes
//! records to the store while offline (and moves unacknowledged ones there when the
//! connection drops), `always` writes every record first, `nostorage` keeps a bounded
//! queue in memory. The store ([`store::RedbStore`], redb, one file) applies a retention
//! (default one week) and a cap on the file system's use (default 85 %: new records then
//! replace the oldest); it also keeps the sequence number and the last desired
//! properties, so a device that boots offline calls its handlers with them. Without a
//! `localStore.folderPath` the store is in the standard per-device folder
//! ([`default_store_folder`]: `$XDG_STATE_HOME/mir/devices/{id}`, else
//! `~/.local/state/mir/devices/{id}`); memory only is an explicit choice
//! ([`Builder::memory_only`], `localStore.inMemory: true`). Replay is oldest first, at
//! most 100 publishes in flight, paced under AWS IoT Core's per-connection limits
//! ([`Pace::AWS`], [`Builder::pace`]).
//!
//! Reconnection: exponential backoff, 1 s to 128 s by default ([`Builder::backoff`]),
//! each delay drawn between half its ceiling and its ceiling, and never two CONNECTs
//! closer than [`DEFAULT_CONNECT_INTERVAL`] (AWS IoT Core's one per second per client
//! id); the backoff starts over only once a connection stayed up [`STABLE_AFTER`].
//! Every connection subscribes again, says hello and pulls the desired properties; the
//! MQTT session is persistent (`clean_session = false`) so the broker keeps commands
//! for a device that is briefly away. Sends never wait for the network or for room in
//! the queue: they queue, or fail with [`SdkError::QueueFull`].
//!
//! # In the field
//!
//! [`Mir::status`] says what the device is going through ([`Status`]), and every
//! heartbeat (`mir/{id}/hb`) tells the cloud the same: where the queue lives
//! (`store_state`), the clock (`clock_state`), the last link issue (`link_issue`,
//! `dropped_after_connect_in_a_row`), quarantined records, queued bytes, store errors,
//! dropped and corrupt records (`Heartbeat` fields 5 to 13).
//!
//! - **Kicked right after connecting.** [`KICKED_IN_A_ROW`] connections in a row that
//!   end within [`KICKED_WITHIN`] of their CONNACK (two processes with one client id, a
//!   publish the IoT policy denies) are reported as [`LinkIssue::DroppedAfterConnect`],
//!   in the status and the log, while the backoff keeps growing.
//! - **Poison records.** After a drop with several records in flight, those records
//!   leave one at a time; a record alone in flight when the connection drops three
//!   times is moved to the store's quarantine ([`Status::quarantined_records`]) and
//!   replay goes on behind it.
//! - **Failing storage.** A store that cannot be opened starts the device on the
//!   bounded memory queue ([`StoreHealth::Unavailable`]; `localStore.required: true`
//!   makes it a [`BuildError::Store`]); writes that fail keep records in the bounded
//!   memory queue, the oldest dropped past `max_queued_bytes` and counted
//!   ([`StoreHealth::Failing`]); a corrupt record is skipped, removed and counted
//!   ([`Status::corrupt_records`]); a corrupt file is moved aside and a new one
//!   started ([`store::RedbStore::moved_aside`]). [`Builder::store_backend`] puts the
//!   queue in another [`store::Store`].
//! - **No real-time clock.** A clock before [`CLOCK_FLOOR_UNIX_SECS`] (or that its
//!   [`WallClock`] calls unsynced) is not set ([`ClockState::Unsynced`]): telemetry
//!   accepted then is marked `clock_unsynced` and gets its real time at publish once
//!   the clock is set in the same run; records of an earlier run keep the mark, and
//!   the cloud stores them at their receive time. Retention never deletes a record
//!   written before the clock was set. A command's deadline is not judged by an unset
//!   clock: its time limit runs from its receipt, on the monotonic clock.
//! - **Commands delivered twice** (a QoS 1 redelivery, a retry) run their handler once;
//!   every delivery gets the first one's response.
//! - **Credentials from files** are read again at every connection attempt: a
//!   certificate renewed on disk is used by the next reconnect. A CA without client
//!   credentials is server-only TLS. [`credentials::generate_csr`] writes the new key
//!   beside the live one; [`credentials::install_certificate`] swaps both once the
//!   certificate is back.
//! - **Keep-alive** is [`Builder::keep_alive`] (default 30 s; AWS: 30 s to 1,200 s): a
//!   connection that received nothing within half of it (at most 5 s) of a ping is
//!   given up, so a link that dies without closing is noticed.
//! - **TCP keepalive** is set on the socket ([`Builder::tcp_keepalive`],
//!   `tcpKeepalive:`; default on: idle = the keep-alive, a probe every 10 s, dropped
//!   after 3 unanswered, [`TcpKeepalive`]), with `TCP_NODELAY`. rumqttc 0.25 creates
//!   its socket with no hook for options, so on unix the SDK opens the connection
//!   itself for every attempt (its socket, then TLS with the same rustls
//!   configuration) and hands it to rumqttc through a Unix socket in a private
//!   directory (mode 0700) that accepts one connection and is removed at once; when
//!   that connection fails (a reset, the kernel giving up on the probes), rumqttc's
//!   side is closed and the device reconnects. On other targets rumqttc connects
//!   itself, without TCP keepalive.
//! - **Size limits.** `Hello` (the compressed schema) and its topic must fit in 128 KB,
//!   checked by [`Builder::build`] ([`BuildError::SchemaTooLarge`]); every publish is
//!   checked with its topic.
//!
//! # What is durable when
//!
//! "Durable" means: in the store file, committed (redb, fsync), so that it survives the
//! process being killed (SIGKILL) or the power going, and is replayed after a restart
//! on the same `localStore.folderPath`. "Safe" means durable, or acknowledged by the
//! broker (PUBACK: the platform has it).
//!
//! | persistence | `send_telemetry(..).await` returns `Ok` | the message is durable | [`Mir::flush`]`().await` returns |
//! |---|---|---|---|
//! | `always`, with a store folder | once it is committed to the store | from that return until its PUBACK (then removed within 200 ms) | once everything accepted before it is committed (or, if its write failed, acknowledged) |
//! | `ifoffline` (default) | at once (queued) | while offline: from the commit after its batch closes (the linger, default 50 ms); online: not on the device (it waits in memory for its PUBACK), unless the connection drops first (then it is written to the store) | once everything accepted before it is safe: its PUBACK while online, its commit while offline |
//! | `nostorage`, or memory only | at once (queued) | never | once everything accepted before it is acknowledged |
//!
//! - With `always`, messages sent while a commit runs share the next commit (group
//!   commit): concurrent senders get one commit per round, a lone sequential sender one
//!   commit per message (the linger does not apply: a batch closes as soon as the store
//!   is free). A failed write is [`SdkError::NotStored`] (the message is still queued,
//!   in memory only); no room at the store's cap even without older records is
//!   [`SdkError::StoreFull`] (dropped). A send before [`Mir::launch`] is
//!   [`SdkError::NotLaunched`], as the commit needs the event loop.
//! - Reported properties ([`Mir::send_properties`]) never wait: with `always` their
//!   record is committed with the next store write; [`Mir::flush`] waits for it.
//! - Custom device routes ([`Mir::send_custom`]: raw bytes on
//!   `mir/{id}/x/{module}/{route}`, QoS 1, for a server-side module) are never
//!   durable and never queued offline: a send while not connected is
//!   [`SdkError::NotConnected`], nothing sent; one accepted waits in memory for its
//!   PUBACK (sent again after a reconnect). Bad names are
//!   [`SdkError::InvalidCustomRoute`], payload and topic over 128 KB
//!   [`SdkError::PayloadTooLarge`]; [`Mir::flush`] does not wait for them.
//! - A durable message stays durable until the broker acknowledges it, or until the
//!   retention or the store's caps drop it (counted in [`Status::dropped_messages`]).
//! - A replay after a restart publishes the stored batch as it was: every message keeps
//!   its `seq` and `sent_at_ns`. The platform keys telemetry points by (device, measure,
//!   time, seq), so a message delivered before the kill and replayed after it is stored
//!   once. Sequence numbers are reserved in the store (blocks of 10,000) before they are
//!   used and never start below the clock in microseconds (nor below
//!   [`CLOCK_FLOOR_UNIX_SECS`]), so a restarted device never gives another message a
//!   `seq` it used before.
//!
//! ```
//! use std::time::Duration;
//! use mir_device_sdk::{Mir, Persistence, StoreOptions};
//! use mir_proto::examples::weather::Env;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let mir = Mir::builder()
//!     .device_id("doc-offline")
//!     .target("mqtt://127.0.0.1:9") // nobody listens: offline
//!     .store(StoreOptions {
//!         folder_path: Some(dir.path().to_path_buf()),
//!         persistence_type: Some(Persistence::IfOffline),
//!         ..Default::default()
//!     })
//!     .telemetry_linger(Duration::from_millis(10))
//!     .build()?;
//! let running = mir.launch(async {}).await?; // stops at once, after storing
//! mir.send_telemetry(&Env { temperature: 21, ..Default::default() }).await?;
//! running.wait().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! - `csr` (default): key pair and CSR generation on the device
//!   ([`credentials::generate_csr`], rcgen).
//! - `log-subscriber` (default): the fmt subscriber (tracing-subscriber) that a log
//!   level installs ([`Builder::log_level`], `logLevel`, `MIR__LOG_LEVEL`) on stdout,
//!   unless the application installed one; without it the SDK only emits `tracing`
//!   events.
//! - `json-logs`: that subscriber prints one JSON object per line when the format is
//!   [`LogFormat::Json`] ([`Builder::log_format`], `logFormat: json`,
//!   `MIR__LOG_FORMAT=json`); a build without it prints text and warns.
//!
//! # Layout
//!
//! - `config`: [`Builder`], [`Target`], [`Credentials`], [`LogLevel`], [`IdPrefix`],
//!   [`Profile`], [`StoreOptions`], `device.yaml` and `MIR__` variables: everything is
//!   validated by [`Builder::build`] ([`BuildError`]).
//! - `client`: [`Mir`], the cloneable device handle: handler registration, sends
//!   ([`SdkError::QueueFull`] rather than waiting for room; [`SendTelemetry`] resolves
//!   once the message is as durable as the persistence type says), [`Mir::flush`],
//!   [`Mir::launch`], [`Status`].
//! - `session`: the session state machine, free of I/O: what is sent on every connect
//!   (subscriptions, `Hello` with the zlib-compressed schema, a pull of desired
//!   properties, a heartbeat with the status), telemetry batching under the 128 KB payload limit,
//!   command and desired-property routing, the outbox with its acknowledgement
//!   tracking (packet id -> message), the in-flight window, persistence policy,
//!   retention and caps. It never calls the store: it asks for store operations
//!   (append, read, remove, expire, meta writes) and takes their answers.
//! - `store`: the [`store::Store`] trait, [`store::RedbStore`] and [`store::MemoryStore`].
//! - `eventloop`: the I/O side: a connector task (a fresh rumqttc client per
//!   connection, backoff), the driver feeding the session, the store task running the
//!   session's store operations in order on tokio's blocking pool, command handler
//!   tasks and the property task.
//! - `backoff`: [`Backoff`] and the reconnect policy (connect interval, reset after a
//!   stable connection, kicks after CONNACK counted).
//! - `clock`: [`WallClock`], [`SystemClock`], whether the clock is set.
//! - `status`: [`Status`], [`LinkIssue`], [`StoreHealth`], [`ClockState`], and their
//!   values in a heartbeat.
//! - `credentials`: file search, CSR generation, the Amazon root CA.
//! - `tls`: rustls (ring) client configuration; ALPN `x-amzn-mqtt-ca` on port 443.
//! - `handlers`: type-erased handlers by message full name.
//! - `logs`: the subscriber a log level installs, text or JSON.
//!
//! # Topics
//!
//! Everything lives under `mir/{device id}/` (see [`mir_proto::topics`]): the device
//! publishes `hello`, `hb`, `tlm`, `cfg/reported`, `cfg/desired/get`, `cmd/resp` (all
//! QoS 1) and subscribes to `cmd/req`, `cfg/desired`, `hello/get`.
//!
//! Architecture: see docs/architecture.md in the repository (section Profiles).

mod backoff;
mod client;
pub mod clock;
mod config;
pub mod credentials;
mod error;
mod eventloop;
mod handlers;
#[cfg(feature = "log-subscriber")]
mod logs;
mod session;
mod status;
pub mod store;
mod tls;

#[cfg(test)]
mod test_support;

pub use backoff::{
    Backoff, DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN, DEFAULT_CONNECT_INTERVAL, KICKED_IN_A_ROW,
    KICKED_WITHIN, STABLE_AFTER,
};
pub use client::{Mir, Running, SendTelemetry};
pub use clock::{SystemClock, WallClock, CLOCK_FLOOR_UNIX_SECS};
pub use config::{
    default_config_paths, default_store_folder, Builder, Credentials, IdPrefix, LogFormat,
    LogLevel, Persistence, Profile, Scheme, Secret, StoreOptions, Target, TcpKeepalive,
    AWS_HEARTBEAT_INTERVAL, DEFAULT_COMMAND_TIMEOUT, DEFAULT_DISK_LIMIT_PERCENT,
    DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_KEEP_ALIVE, DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_QUEUE_CAPACITY, DEFAULT_RETENTION, DEFAULT_TARGET, DEFAULT_TCP_KEEPALIVE_INTERVAL,
    DEFAULT_TCP_KEEPALIVE_RETRIES, DEFAULT_TELEMETRY_LINGER, MAX_KEEP_ALIVE, MAX_TCP_KEEPALIVE,
    MAX_TCP_KEEPALIVE_RETRIES,
};
pub use error::{BuildError, SdkError};
pub use session::{Pace, BATCH_LIMIT, BATCH_SAFETY_MARGIN};
pub use status::{ClockState, LinkIssue, Status, StoreHealth};
pub use tls::AWS_IOT_ALPN;

/// This SDK's version, sent in `Hello.sdk_version`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
