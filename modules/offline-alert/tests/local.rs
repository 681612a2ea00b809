//! The example module against an in-process hub: a device that goes offline and stays
//! away is alerted on once, after the module's delay; one that comes back before it is
//! not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;

use mir_module_offline_alert::ALERT;
use mir_module_sdk::{EventReason, FeedFilter, Module};
use mir_test_support::{Behaviour, Cli, TestDevice, TestHub};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_offline_past_the_delay_is_alerted_once_and_one_back_in_time_is_not() {
    let hub = TestHub::start(Cli::new("mir-is-not-run-by-these-tests"));
    let config =
        std::env::temp_dir().join(format!("mir-offline-alert-{}.yaml", std::process::id()));
    let module = Module::builder()
        .config_file(&config)
        .api(hub.api())
        .build()
        .expect("a module");
    let watcher = Module::builder()
        .config_file(&config)
        .api(hub.api())
        .build()
        .expect("a watcher");
    let mut customs = watcher
        .events(&FeedFilter {
            reason: Some(EventReason::Custom),
            ..FeedFilter::default()
        })
        .await
        .expect("subscribed");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // 0.05 minutes: three seconds.
    let run = tokio::spawn(mir_module_offline_alert::local::run(
        module,
        Duration::from_secs(3),
        0.05,
        async {
            let _ = stop_rx.await;
        },
    ));
    // The module subscribes when `run` starts: give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let gone = TestDevice::start(&hub, "oa-gone", Behaviour::Succeed).await;
    let back = TestDevice::start(&hub, "oa-back", Behaviour::Succeed).await;
    gone.stop().await;
    back.stop().await;
    let back = TestDevice::start(&hub, "oa-back", Behaviour::Succeed).await;

    let alert = tokio::time::timeout(Duration::from_secs(30), customs.next())
        .await
        .expect("an alert within 30 s")
        .expect("the stream")
        .expect("an event");
    assert_eq!(alert.custom_name.as_deref(), Some(ALERT));
    assert_eq!(alert.device_id, "oa-gone");
    assert_eq!(alert.payload["minutes"], 0.05);
    // Nothing more: not the device that came back, not a second alert.
    let more = tokio::time::timeout(Duration::from_secs(5), customs.next()).await;
    assert!(more.is_err(), "another custom event: {more:?}");

    back.stop().await;
    let _ = stop_tx.send(());
    run.await
        .expect("the module's task")
        .expect("the module ran");
}
