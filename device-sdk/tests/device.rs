//! The SDK against the embedded broker (`mir-broker`) on 127.0.0.1, ephemeral ports.

mod support;

use std::{
    io::Read,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use mir_device_sdk::{Mir, SdkError};
use mir_proto::{
    examples::weather::{
        ActivateHvacCmd, ActivateHvacResp, DataRateProp, DataRateStatus, Env, HvacStatus,
    },
    wire::{
        CommandRequest, CommandResponse, CommandResponseStatus, Compression, DesiredProperties,
        Heartbeat, Hello, PropertyValue, ReportedProperties, TelemetryBatch,
    },
};
use prost::{Message, Name};
use support::{device, launch, launch_connected, wait_until, TestBroker, WAIT};

fn command(id: &str, name: &str, payload: impl Message) -> Bytes {
    CommandRequest {
        id: id.into(),
        name: name.into(),
        payload: payload.encode_to_vec().into(),
        deadline_unix_ms: 0,
    }
    .encode_to_vec()
    .into()
}

fn hvac_handler(mir: &Mir) {
    mir.handle_command(|cmd: ActivateHvacCmd| async move {
        if cmd.duration_sec < 0 {
            return Err(format!("duration {} is negative", cmd.duration_sec));
        }
        Ok(ActivateHvacResp { success: true })
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_connects_says_hello_with_its_schema_and_pulls_desired() {
    let broker = TestBroker::start().await;
    let dev = launch_connected(device(&broker, "weather-hello").build().expect("build")).await;

    let hello = broker.recorder.wait_on("mir/weather-hello/hello", 1).await;
    let hello = Hello::decode(hello[0].clone()).expect("hello decodes");
    assert_eq!(hello.compression, Compression::Zlib as i32);
    assert_eq!(hello.sdk_version, mir_device_sdk::SDK_VERSION);
    assert!(hello.sent_at_ns > 0);
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&hello.schema[..])
        .read_to_end(&mut raw)
        .expect("zlib");
    let set = prost_types::FileDescriptorSet::decode(&raw[..]).expect("descriptor set");
    assert!(
        set.file.iter().any(|f| f.package() == "schema.v1"
            && f.message_type.iter().any(|m| m.name() == "Env")),
        "the weather schema is in the hello"
    );

    let get = broker
        .recorder
        .wait_on("mir/weather-hello/cfg/desired/get", 1)
        .await;
    assert!(get[0].is_empty());
    let hb = broker.recorder.wait_on("mir/weather-hello/hb", 1).await;
    assert!(Heartbeat::decode(hb[0].clone()).expect("hb").sent_at_ns > 0);

    // The hub asks for the schema again.
    broker
        .publish("mir/weather-hello/hello/get", Bytes::new())
        .await;
    broker.recorder.wait_on("mir/weather-hello/hello", 2).await;
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_arrives_in_batches_that_decode() {
    let broker = TestBroker::start().await;
    let dev = launch_connected(device(&broker, "weather-tlm").build().expect("build")).await;
    for i in 0..50 {
        dev.mir
            .send_telemetry(&Env {
                ts: i,
                temperature: i as i32,
                ..Default::default()
            })
            .await
            .expect("accepted");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let items = loop {
        let items: Vec<_> = broker
            .recorder
            .on("mir/weather-tlm/tlm")
            .into_iter()
            .flat_map(|b| TelemetryBatch::decode(b).expect("batch decodes").items)
            .collect();
        if items.len() >= 50 || tokio::time::Instant::now() > deadline {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(items.len(), 50);
    let batches = broker.recorder.on("mir/weather-tlm/tlm").len();
    assert!(
        batches < 50,
        "{batches} batches for 50 messages: not batched"
    );
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item.name, Env::full_name());
        let env = Env::decode(item.payload.clone()).expect("env decodes");
        assert_eq!(env.ts, i as i64, "in order");
        assert!(item.sent_at_ns > 0);
    }
    assert!(items.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_published_by_the_hub_gets_a_success_response() {
    let broker = TestBroker::start().await;
    let mir = device(&broker, "weather-cmd").build().expect("build");
    hvac_handler(&mir);
    let dev = launch_connected(mir).await;
    broker.recorder.wait_on("mir/weather-cmd/hello", 1).await; // subscribed

    broker
        .publish(
            "mir/weather-cmd/cmd/req",
            command(
                "c1",
                &ActivateHvacCmd::full_name(),
                ActivateHvacCmd { duration_sec: 5 },
            ),
        )
        .await;
    let resp = broker.recorder.wait_on("mir/weather-cmd/cmd/resp", 1).await;
    let resp = CommandResponse::decode(resp[0].clone()).expect("response decodes");
    assert_eq!(resp.id, "c1");
    assert_eq!(
        resp.status,
        CommandResponseStatus::Success as i32,
        "{}",
        resp.error
    );
    assert_eq!(resp.name, ActivateHvacResp::full_name());
    assert!(
        ActivateHvacResp::decode(resp.payload)
            .expect("payload")
            .success
    );
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_an_unknown_command_and_a_bad_payload_give_errors() {
    let broker = TestBroker::start().await;
    let mir = device(&broker, "weather-err").build().expect("build");
    hvac_handler(&mir);
    let dev = launch_connected(mir).await;
    broker.recorder.wait_on("mir/weather-err/hello", 1).await;

    let topic = "mir/weather-err/cmd/req";
    let name = ActivateHvacCmd::full_name();
    broker
        .publish(
            topic,
            command("fail", &name, ActivateHvacCmd { duration_sec: -1 }),
        )
        .await;
    broker
        .publish(
            topic,
            command("unknown", "schema.v1.Nope", ActivateHvacCmd::default()),
        )
        .await;
    let junk = CommandRequest {
        id: "junk".into(),
        name: name.clone(),
        payload: Bytes::from_static(b"\xff\xff\xff"),
        deadline_unix_ms: 0,
    };
    broker.publish(topic, junk.encode_to_vec()).await;

    let responses: Vec<CommandResponse> = broker
        .recorder
        .wait_on("mir/weather-err/cmd/resp", 3)
        .await
        .into_iter()
        .map(|r| CommandResponse::decode(r).expect("decodes"))
        .collect();
    let by_id = |id: &str| {
        responses
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("no response {id}"))
            .clone()
    };
    let fail = by_id("fail");
    assert_eq!(fail.status, CommandResponseStatus::Error as i32);
    assert_eq!(fail.error, "duration -1 is negative");
    let unknown = by_id("unknown");
    assert_eq!(unknown.status, CommandResponseStatus::Error as i32);
    assert_eq!(
        unknown.error,
        "no handler for command schema.v1.Nope on device weather-err"
    );
    let junk = by_id("junk");
    assert_eq!(junk.status, CommandResponseStatus::Error as i32);
    assert!(
        junk.error.contains("schema.v1.ActivateHVACCmd"),
        "{}",
        junk.error
    );
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_pushed_by_the_hub_reaches_the_handler_and_reported_arrives() {
    let broker = TestBroker::start().await;
    let mir = device(&broker, "weather-cfg").build().expect("build");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reporter = mir.clone();
    let log = Arc::clone(&seen);
    mir.handle_properties(move |rate: DataRateProp| {
        log.lock().expect("lock").push(rate.sec);
        reporter
            .send_properties(&DataRateStatus {
                sec: rate.sec.max(1),
            })
            .expect("reported");
    });
    let dev = launch_connected(mir).await;
    broker.recorder.wait_on("mir/weather-cfg/hello", 1).await;

    let push = |sec: i32, at: i64| -> Vec<u8> {
        DesiredProperties {
            properties: vec![PropertyValue {
                name: DataRateProp::full_name(),
                payload: DataRateProp { sec }.encode_to_vec().into(),
                updated_at_ns: at,
                version: 1,
            }],
            complete: false,
        }
        .encode_to_vec()
    };
    broker
        .publish("mir/weather-cfg/cfg/desired", push(5, 2_000))
        .await;
    broker
        .publish("mir/weather-cfg/cfg/desired", push(7, 1_000))
        .await; // older: ignored
    let reported = broker
        .recorder
        .wait_on("mir/weather-cfg/cfg/reported", 1)
        .await;
    let reported = ReportedProperties::decode(reported[0].clone()).expect("decodes");
    assert_eq!(reported.properties[0].name, DataRateStatus::full_name());
    assert_eq!(
        DataRateStatus::decode(reported.properties[0].payload.clone())
            .expect("status")
            .sec,
        5
    );
    assert!(reported.properties[0].updated_at_ns > 0);

    // Standalone report, as the HVAC command does.
    dev.mir
        .send_properties(&HvacStatus { online: true })
        .expect("sent");
    broker
        .recorder
        .wait_on("mir/weather-cfg/cfg/reported", 2)
        .await;
    // Values reach the handler in order: once a newer one arrived, the older one
    // published before it was either applied or ignored.
    broker
        .publish("mir/weather-cfg/cfg/desired", push(9, 3_000))
        .await;
    wait_until("the newest desired value applied", || {
        seen.lock().expect("lock").contains(&9)
    })
    .await;
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![5, 9],
        "the older value is ignored"
    );
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_on_the_same_port_the_device_reconnects_and_resubscribes() {
    let mut broker = TestBroker::start().await;
    let mir = device(&broker, "weather-restart").build().expect("build");
    hvac_handler(&mir);
    let dev = launch_connected(mir).await;
    broker
        .recorder
        .wait_on("mir/weather-restart/hello", 1)
        .await;

    broker.restart().await;
    dev.mir.wait_connects(2, WAIT).await.expect("reconnects");
    broker
        .recorder
        .wait_on("mir/weather-restart/hello", 2)
        .await;
    broker
        .recorder
        .wait_on("mir/weather-restart/cfg/desired/get", 2)
        .await;

    broker
        .publish(
            "mir/weather-restart/cmd/req",
            command(
                "after",
                &ActivateHvacCmd::full_name(),
                ActivateHvacCmd { duration_sec: 1 },
            ),
        )
        .await;
    let resp = broker
        .recorder
        .wait_on("mir/weather-restart/cmd/resp", 1)
        .await;
    let resp = CommandResponse::decode(resp[0].clone()).expect("decodes");
    assert_eq!(
        (resp.id.as_str(), resp.status),
        ("after", CommandResponseStatus::Success as i32)
    );

    // Telemetry sent while the broker was away is delivered after the reconnect.
    dev.mir
        .send_telemetry(&Env::default())
        .await
        .expect("accepted");
    broker.recorder.wait_on("mir/weather-restart/tlm", 1).await;
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_never_block_without_a_broker() {
    let mut broker = TestBroker::start().await;
    let target = broker.target();
    broker.stop().await;
    let mir = Mir::builder()
        .device_id("weather-offline")
        .target(target)
        .memory_only()
        .queue_capacity(8)
        .build()
        .expect("build");
    // Before launch nothing drains the queue: it fills and says so.
    for _ in 0..8 {
        mir.send_telemetry(&Env::default()).await.expect("queued");
    }
    assert!(matches!(
        mir.send_telemetry(&Env::default()).await,
        Err(SdkError::QueueFull { capacity: 8 })
    ));
    let dev = launch(mir).await;
    assert!(matches!(
        dev.mir.wait_connected(Duration::from_millis(200)).await,
        Err(SdkError::ConnectTimeout(_))
    ));
    let started = std::time::Instant::now();
    let mut accepted = 0;
    for _ in 0..10_000 {
        match dev.mir.send_telemetry(&Env::default()).await {
            Ok(()) => accepted += 1,
            Err(SdkError::QueueFull { .. }) => tokio::task::yield_now().await,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(accepted > 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_flushes_the_open_batch() {
    let broker = TestBroker::start().await;
    let mir = device(&broker, "weather-flush")
        .telemetry_linger(Duration::from_secs(60))
        .build()
        .expect("build");
    let dev = launch_connected(mir).await;
    dev.mir
        .send_telemetry(&Env {
            temperature: 42,
            ..Default::default()
        })
        .await
        .expect("accepted");
    dev.mir
        .wait_for_status(WAIT, |s| s.queued_messages == 1)
        .await
        .expect("in the open batch");
    assert!(broker.recorder.on("mir/weather-flush/tlm").is_empty());
    dev.stop().await;
    let batch = broker.recorder.wait_on("mir/weather-flush/tlm", 1).await;
    let batch = TelemetryBatch::decode(batch[0].clone()).expect("batch");
    assert_eq!(
        Env::decode(batch.items[0].payload.clone())
            .expect("env")
            .temperature,
        42
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_returns_once_the_broker_has_acknowledged_everything_sent_before() {
    let broker = TestBroker::start().await;
    let mir = device(&broker, "weather-flushed")
        .telemetry_linger(Duration::from_secs(60))
        .build()
        .expect("build");
    let dev = launch_connected(mir).await;
    for temperature in 0..10 {
        dev.mir
            .send_telemetry(&Env {
                temperature,
                ..Default::default()
            })
            .await
            .expect("accepted");
    }
    dev.mir
        .send_properties(&DataRateStatus { sec: 7 })
        .expect("accepted");
    tokio::time::timeout(WAIT, dev.mir.flush())
        .await
        .expect("flushed in time")
        .expect("flushed");
    // The broker acknowledges after its hooks ran: everything is recorded already.
    let items: usize = broker
        .recorder
        .on("mir/weather-flushed/tlm")
        .into_iter()
        .map(|b| TelemetryBatch::decode(b).expect("batch").items.len())
        .sum();
    assert_eq!(items, 10, "not waiting for the 60 s linger");
    assert_eq!(
        broker.recorder.on("mir/weather-flushed/cfg/reported").len(),
        1
    );
    assert_eq!(dev.mir.status().queued_messages, 0);
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_for_one_payload_is_refused_at_send() {
    let broker = TestBroker::start().await;
    let mir = device(&broker, "weather-big").build().expect("build");
    let huge = Env {
        station: "x".repeat(mir_proto::MAX_PAYLOAD_BYTES),
        ..Default::default()
    };
    match mir.send_telemetry(&huge).await {
        Err(SdkError::PayloadTooLarge { name, size, limit }) => {
            assert_eq!(name, "schema.v1.Env");
            assert!(size > limit);
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launching_twice_is_refused() {
    let broker = TestBroker::start().await;
    let dev = launch(device(&broker, "weather-twice").build().expect("build")).await;
    assert!(matches!(
        dev.mir.launch(std::future::pending()).await,
        Err(SdkError::AlreadyLaunched)
    ));
    dev.stop().await;
}
