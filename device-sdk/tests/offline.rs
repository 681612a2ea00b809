//! Offline behaviour with the real store (redb): a device that boots without network
//! runs its property handlers with the desired values cached on disk; `always` keeps
//! messages on disk until acknowledged.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use mir_device_sdk::{Mir, Persistence, StoreOptions};
use mir_proto::{
    examples::weather::{DataRateProp, Env},
    wire::{DesiredProperties, PropertyValue, TelemetryBatch},
};
use prost::{Message, Name};
use support::{launch, launch_connected, wait_until, TestBroker, WAIT};

fn device(target: String, dir: &std::path::Path, persistence: Persistence) -> Mir {
    Mir::builder()
        .device_id("offline-boot")
        .target(target)
        .telemetry_linger(Duration::from_millis(20))
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .connect_interval(Duration::from_millis(100))
        .store(StoreOptions {
            folder_path: Some(dir.to_path_buf()),
            persistence_type: Some(persistence),
            disk_space_limit: Some(100.0),
            ..Default::default()
        })
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build")
}

fn record_rates(mir: &Mir) -> Arc<Mutex<Vec<i32>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    mir.handle_properties(move |p: DataRateProp| log.lock().expect("lock").push(p.sec));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_booting_offline_applies_the_last_desired_values_from_its_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = TestBroker::start().await;
    let mir = device(broker.target(), dir.path(), Persistence::IfOffline);
    let seen = record_rates(&mir);
    let dev = launch_connected(mir).await;
    broker.recorder.wait_on("mir/offline-boot/hello", 1).await;
    let desired = DesiredProperties {
        properties: vec![PropertyValue {
            name: DataRateProp::full_name(),
            payload: DataRateProp { sec: 9 }.encode_to_vec().into(),
            updated_at_ns: 1_000,
            version: 1,
        }],
        complete: true,
    };
    broker
        .publish("mir/offline-boot/cfg/desired", desired.encode_to_vec())
        .await;
    wait_until("the desired value applied", || {
        !seen.lock().expect("lock").is_empty()
    })
    .await;
    dev.stop().await;
    let target = broker.target();
    broker.stop().await;

    // Reboot without a broker: the handler gets 9 from the store.
    let mir = device(target, dir.path(), Persistence::IfOffline);
    let seen = record_rates(&mir);
    let dev = launch(mir).await;
    wait_until("the cached value applied", || {
        !seen.lock().expect("lock").is_empty()
    })
    .await;
    assert_eq!(*seen.lock().expect("lock"), vec![9]);
    assert!(!dev.mir.is_connected());
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_keeps_messages_on_disk_until_the_broker_acknowledges_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = TestBroker::start().await;
    let target = broker.target();
    broker.stop().await;
    let mir = device(target.clone(), dir.path(), Persistence::Always);
    let dev = launch(mir).await;
    for ts in 0..100 {
        dev.mir
            .send_telemetry(&Env {
                ts,
                ..Default::default()
            })
            .await
            .expect("queued");
    }
    dev.mir
        .wait_for_status(WAIT, |s| s.stored_messages == 100)
        .await
        .expect("stored");
    dev.stop().await;

    // Online: everything is delivered and the store empties.
    broker.restart().await;
    let dev = launch(device(target, dir.path(), Persistence::Always)).await;
    dev.mir.wait_connected(WAIT).await.expect("connects");
    dev.mir
        .wait_for_status(WAIT, |s| s.stored_records == 0 && s.queued_messages == 0)
        .await
        .expect("the store empties");
    let items: usize = broker
        .recorder
        .on("mir/offline-boot/tlm")
        .into_iter()
        .map(|b| TelemetryBatch::decode(b).expect("batch").items.len())
        .sum();
    assert_eq!(items, 100);
    dev.stop().await;
}
