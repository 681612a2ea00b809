//! SDK test devices of the weather schema, with scripted command answers.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::watch;

use mir_device_sdk::{LogLevel, Mir};
use mir_proto::examples::weather::{
    ActivateHvacCmd, ActivateHvacResp, DataRateProp, DataRateStatus, HvacStatus, DESCRIPTOR_SET,
};

use crate::TestHub;

/// How long a device may take to connect.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// How a test device answers `ActivateHVACCmd`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    Succeed,
    /// Answers with the error `hvac jammed`.
    Fail,
    /// Answers after this long.
    Slow(Duration),
}

/// Where a device connects, and with which credentials.
#[derive(Debug, Clone)]
pub struct DeviceOptions {
    /// `mqtt://...` or `mqtts://...`.
    pub target: String,
    /// Certificate, key and CA files for mutual TLS.
    pub credentials: Option<(PathBuf, PathBuf, PathBuf)>,
}

/// An SDK device of the weather schema, connected. Reports `HVACStatus` when it gets a
/// command and echoes each desired `DataRateProp` as the reported `DataRateStatus`.
/// Stops on drop.
pub struct TestDevice {
    pub mir: Mir,
    stop: watch::Sender<bool>,
    running: Option<mir_device_sdk::Running>,
    /// Every desired DataRateProp the device's handler saw.
    pub desired_seen: Arc<Mutex<Vec<i32>>>,
}

impl TestDevice {
    /// The device `id` on `hub`'s plain MQTT port, once the platform has it online with
    /// its schema.
    pub async fn start(hub: &TestHub, id: &str, behaviour: Behaviour) -> TestDevice {
        let device = Self::start_with(
            DeviceOptions {
                target: hub.mqtt(),
                credentials: None,
            },
            id,
            behaviour,
        )
        .await;
        hub.wait_ready(id).await;
        device
    }

    pub async fn start_with(opts: DeviceOptions, id: &str, behaviour: Behaviour) -> TestDevice {
        let mut b = Mir::builder()
            .device_id(id)
            .target(opts.target)
            .schema(DESCRIPTOR_SET)
            .log_level(LogLevel::Warn)
            // Test devices keep their queue in memory (the SDK's default is on disk).
            .memory_only()
            .telemetry_linger(Duration::from_millis(20));
        if let Some((cert, key, ca)) = opts.credentials {
            b = b.tls_files(cert, key, ca);
        }
        let mir = b
            .build()
            .unwrap_or_else(|e| panic!("test device {id}: {e}"));
        let m = mir.clone();
        mir.handle_command(move |cmd: ActivateHvacCmd| {
            let m = m.clone();
            async move {
                let _ = m.send_properties(&HvacStatus {
                    online: cmd.duration_sec > 0,
                });
                match behaviour {
                    Behaviour::Succeed => Ok(ActivateHvacResp { success: true }),
                    Behaviour::Fail => Err("hvac jammed".to_string()),
                    Behaviour::Slow(d) => {
                        tokio::time::sleep(d).await;
                        Ok(ActivateHvacResp { success: true })
                    }
                }
            }
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let m = mir.clone();
        let s = seen.clone();
        mir.handle_properties(move |p: DataRateProp| {
            if let Ok(mut seen) = s.lock() {
                seen.push(p.sec);
            }
            let _ = m.send_properties(&DataRateStatus { sec: p.sec });
        });
        let (stop, mut rx) = watch::channel(false);
        let running = mir
            .launch(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
            .unwrap_or_else(|e| panic!("test device {id} did not launch: {e}"));
        mir.wait_connected(CONNECT_DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("test device {id} did not connect: {e}"));
        TestDevice {
            mir,
            stop,
            running: Some(running),
            desired_seen: seen,
        }
    }

    /// The desired `DataRateProp` values the device got so far.
    pub fn desired(&self) -> Vec<i32> {
        self.desired_seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Disconnects cleanly and waits for the SDK to finish.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(r) = self.running.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), r.wait()).await;
        }
    }
}

impl Drop for TestDevice {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
