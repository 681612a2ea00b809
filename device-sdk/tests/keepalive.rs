//! The SDK's own connection (TCP keepalive on its socket, relayed to rumqttc through a
//! private Unix socket): a device connects, publishes and answers commands through
//! it, and a link that goes silent is still noticed and replaced.

mod support;

use std::time::Duration;

use bytes::Bytes;
use mir_device_sdk::{LinkIssue, Mir};
use mir_proto::{
    examples::weather::{ActivateHvacCmd, ActivateHvacResp, Env, DESCRIPTOR_SET},
    wire::{CommandRequest, CommandResponse, CommandResponseStatus, TelemetryBatch},
};
use prost::{Message, Name};
use support::{device, launch_connected, net::SilentProxy, TestBroker, WAIT};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn hvac_command(id: &str) -> Bytes {
    CommandRequest {
        id: id.into(),
        name: ActivateHvacCmd::full_name(),
        payload: ActivateHvacCmd { duration_sec: 5 }.encode_to_vec().into(),
        deadline_unix_ms: 0,
    }
    .encode_to_vec()
    .into()
}

/// The device `id` publishes one telemetry record and answers one command, both seen
/// by `broker`'s recorder.
async fn publishes_and_answers(
    mir: &Mir,
    recorder: &support::Recorder,
    publish: impl std::future::Future<Output = ()>,
    id: &str,
) {
    mir.send_telemetry(&Env {
        ts: 7,
        ..Default::default()
    })
    .await
    .expect("accepted");
    let batch = recorder.wait_on(&format!("mir/{id}/tlm"), 1).await;
    let batch = TelemetryBatch::decode(batch[0].clone()).expect("batch");
    assert_eq!(batch.items.len(), 1);
    publish.await;
    let resp = recorder.wait_on(&format!("mir/{id}/cmd/resp"), 1).await;
    let resp = CommandResponse::decode(resp[0].clone()).expect("response");
    assert_eq!(resp.id, "c1");
    assert_eq!(
        resp.status,
        CommandResponseStatus::Success as i32,
        "{}",
        resp.error
    );
}

fn hvac_handler(mir: &Mir) {
    mir.handle_command(|_: ActivateHvacCmd| async move {
        Ok::<_, String>(ActivateHvacResp { success: true })
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_with_tcp_keepalive_publishes_and_answers_commands_over_plain_mqtt() {
    let broker = TestBroker::start().await;
    let mir = device(&broker, "ka-plain")
        .tcp_keepalive(secs(5), secs(1), 2)
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build");
    hvac_handler(&mir);
    let dev = launch_connected(mir).await;
    broker.recorder.wait_on("mir/ka-plain/hello", 1).await;
    let command = broker.publish("mir/ka-plain/cmd/req", hvac_command("c1"));
    publishes_and_answers(&dev.mir, &broker.recorder, command, "ka-plain").await;
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tcp_keepalive_the_device_still_connects_and_answers() {
    let broker = TestBroker::start().await;
    let mir = device(&broker, "ka-off")
        .no_tcp_keepalive()
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build");
    hvac_handler(&mir);
    let dev = launch_connected(mir).await;
    broker.recorder.wait_on("mir/ka-off/hello", 1).await;
    let command = broker.publish("mir/ka-off/cmd/req", hvac_command("c1"));
    publishes_and_answers(&dev.mir, &broker.recorder, command, "ka-off").await;
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_goes_silent_is_noticed_and_the_device_reconnects_and_delivers() {
    let broker = TestBroker::start().await;
    let proxy = SilentProxy::start(broker.addr).await;
    let mir = Mir::builder()
        .device_id("ka-silent")
        .target(format!("mqtt://{}", proxy.addr))
        .schema(DESCRIPTOR_SET)
        .memory_only()
        .keep_alive(secs(1))
        .tcp_keepalive(secs(1), secs(1), 1)
        .connect_interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(100), Duration::from_millis(200))
        .heartbeat_interval(secs(3600))
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build");
    hvac_handler(&mir);
    let dev = launch_connected(mir).await;
    broker.recorder.wait_on("mir/ka-silent/hello", 1).await;
    proxy.go_silent();
    dev.mir
        .wait_for_status(WAIT, |s| {
            !s.connected && s.link_issue == Some(LinkIssue::ConnectionLost)
        })
        .await
        .expect("the dead link noticed");
    dev.mir.wait_connected(WAIT).await.expect("reconnects");
    assert!(proxy.connections() >= 2, "a new connection");
    broker.recorder.wait_on("mir/ka-silent/hello", 2).await;
    let command = broker.publish("mir/ka-silent/cmd/req", hvac_command("c1"));
    publishes_and_answers(&dev.mir, &broker.recorder, command, "ka-silent").await;
    dev.stop().await;
}
