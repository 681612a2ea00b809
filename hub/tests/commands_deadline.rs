//! A command to 200 devices, 50 of which never answer, with a 5 s timeout: the call
//! answers within its deadline (plus the margin `api-commands` keeps to finish), with
//! 150 SUCCESS and 50 TIMEOUT, and no command record is left PENDING.
//!
//! The hub runs in-process on port 0 (loopback); the devices are raw rumqttc clients,
//! one connection each, that send a `Hello` with the weather schema and a heartbeat,
//! subscribe to their command topic, and (the answering ones) reply on
//! `mir/{id}/cmd/resp`. Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use prost::Message;
use rumqttc_ring::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::watch;

use mir_hub::{Hub, HubConfig};
use mir_proto::{
    examples::weather::ActivateHvacResp,
    wire::{CommandRequest, CommandResponse, CommandResponseStatus, Heartbeat},
};
use mir_shared::{domain::CommandStatus, testing::hello_event};

const ANSWERING: usize = 150;
const SILENT: usize = 50;
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long the devices may take to connect and be known online.
const SETUP: Duration = Duration::from_secs(90);

/// What the devices saw, counted.
#[derive(Default)]
struct Counters {
    /// Subscribed, and their `Hello` and heartbeat acknowledged (so handled).
    ready: AtomicUsize,
    /// Command requests received.
    requests: AtomicUsize,
}

/// One device: connects, subscribes, says hello, beats once; answers commands with
/// SUCCESS when `answers`. Runs until `stop` (or [`SETUP`] plus a minute at most).
async fn device(
    port: u16,
    id: String,
    answers: bool,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut o = MqttOptions::new(&id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(60));
    o.set_max_packet_size(512 * 1024, 512 * 1024);
    let (client, mut ev) = AsyncClient::new(o, 16);
    client
        .subscribe(format!("mir/{id}/cmd/req"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let hello = hello_event(&id, 1).payload_bytes().unwrap();
    client
        .publish(format!("mir/{id}/hello"), QoS::AtLeastOnce, false, hello)
        .await
        .unwrap();
    let hb = Heartbeat {
        sent_at_ns: 0,
        uptime_sec: 1,
        queued: 0,
        ..Default::default()
    }
    .encode_to_vec();
    client
        .publish(format!("mir/{id}/hb"), QoS::AtLeastOnce, false, hb)
        .await
        .unwrap();
    let (mut subscribed, mut acked, mut counted) = (false, 0, false);
    let give_up = tokio::time::Instant::now() + SETUP + Duration::from_secs(60);
    loop {
        let polled = tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep_until(give_up) => return,
            polled = ev.poll() => polled,
        };
        match polled {
            Ok(Event::Incoming(Packet::SubAck(_))) => subscribed = true,
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic.ends_with("/cmd/req") => {
                counters.requests.fetch_add(1, Ordering::SeqCst);
                if answers {
                    let req = CommandRequest::decode(p.payload).unwrap();
                    let resp = CommandResponse {
                        id: req.id,
                        status: CommandResponseStatus::Success as i32,
                        name: "schema.v1.ActivateHVACResp".into(),
                        payload: ActivateHvacResp { success: true }.encode_to_vec().into(),
                        error: String::new(),
                    };
                    client
                        .try_publish(
                            format!("mir/{id}/cmd/resp"),
                            QoS::AtLeastOnce,
                            false,
                            resp.encode_to_vec(),
                        )
                        .unwrap();
                }
            }
            Ok(_) => {}
            Err(e) => panic!("device {id}: connection failed: {e}"),
        }
        if subscribed && acked >= 2 && !counted {
            counted = true;
            counters.ready.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Polls `check` every 100 ms until it holds; panics naming `what` after `limit`.
async fn eventually<F: std::future::Future<Output = bool>>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let until = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < until,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_to_200_devices_50_silent_answers_in_time_with_no_record_pending() {
    let dir = tempfile::tempdir().unwrap();
    let config = HubConfig {
        data_dir: dir.path().to_path_buf(),
        mqtt_port: 0,
        mqtts_port: 0,
        http_port: 0,
        log_level: "warn".into(),
        // No device goes stale during the test.
        stale_after_secs: 3_600,
        sweep_interval_secs: 3_600,
        ..HubConfig::default()
    };
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let hub = Hub::start(config, async move {
        let _ = stopped.await;
    })
    .await
    .unwrap();

    let answering: Vec<String> = (0..ANSWERING).map(|i| format!("a{i:03}")).collect();
    let silent: Vec<String> = (0..SILENT).map(|i| format!("s{i:03}")).collect();
    let counters = Arc::new(Counters::default());
    let (stop, stop_rx) = watch::channel(false);
    let mut devices = Vec::new();
    for (id, answers) in answering
        .iter()
        .map(|id| (id, true))
        .chain(silent.iter().map(|id| (id, false)))
    {
        devices.push(tokio::spawn(device(
            hub.mqtt_addr.port(),
            id.clone(),
            answers,
            counters.clone(),
            stop_rx.clone(),
        )));
    }
    let all = ANSWERING + SILENT;
    eventually(SETUP, "every device subscribed and said hello", || async {
        counters.ready.load(Ordering::SeqCst) == all
    })
    .await;
    let twins = hub.core.ports.twins().unwrap();
    // Invocations run after the PUBACK, in any order: wait for the platform's view.
    eventually(SETUP, "every device online with its schema", || async {
        let listed = twins
            .list(&mir_shared::domain::Targets::all())
            .await
            .unwrap();
        listed.len() == all
            && listed
                .iter()
                .all(|t| t.value.status.online && !t.value.status.schema.package_names.is_empty())
    })
    .await;

    let ids: Vec<&String> = answering.iter().chain(&silent).collect();
    let http = reqwest::Client::new();
    let api = format!("http://{}", hub.http_addr);
    let started = Instant::now();
    let resp = http
        .post(format!("{api}/v1/commands"))
        .json(&json!({
            "targets": {"ids": ids},
            "name": "schema.v1.ActivateHVACCmd",
            "payload": {"durationSec": 1},
            "timeoutMs": TIMEOUT.as_millis() as u64,
        }))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!("POST /v1/commands to {all} devices ({SILENT} silent) answered in {took:?}");
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let limit = TIMEOUT + mir_fn_api_commands::FINISH_MARGIN;
    assert!(
        took < limit,
        "answered after {took:?}, over its deadline ({limit:?} with the finishing margin)"
    );
    assert!(
        took >= TIMEOUT,
        "the silent devices did not get their {TIMEOUT:?}: {took:?}"
    );

    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), all);
    let count = |s: &str| results.iter().filter(|r| r["status"] == s).count();
    assert_eq!(
        (count("SUCCESS"), count("TIMEOUT")),
        (ANSWERING, SILENT),
        "{body}"
    );
    for r in results {
        let id = r["deviceId"].as_str().unwrap();
        let want = if id.starts_with('a') {
            "SUCCESS"
        } else {
            "TIMEOUT"
        };
        assert_eq!(r["status"], want, "{r}");
    }
    assert_eq!(
        counters.requests.load(Ordering::SeqCst),
        all,
        "every device, silent ones included, got the command"
    );

    // The records as stored: none PENDING, the same outcome as the answer.
    let command_ids: Vec<String> = results
        .iter()
        .map(|r| r["commandId"].as_str().expect("a command id").to_string())
        .collect();
    let stored = hub
        .core
        .ports
        .commands()
        .unwrap()
        .get_many(&command_ids)
        .await
        .unwrap();
    assert_eq!(stored.len(), all);
    assert!(stored.iter().all(|r| r.status != CommandStatus::Pending));
    let timed_out = stored
        .iter()
        .filter(|r| r.status == CommandStatus::Timeout)
        .count();
    assert_eq!(timed_out, SILENT);
    // And each as the API reads it.
    for (r, id) in results.iter().zip(&command_ids) {
        let rec: Value = http
            .get(format!("{api}/v1/commands/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(rec["status"], r["status"], "{rec}");
    }

    let _ = stop.send(true);
    for d in devices {
        let _ = tokio::time::timeout(Duration::from_secs(10), d).await;
    }
    let _ = shutdown.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), hub.stopped()).await;
}
