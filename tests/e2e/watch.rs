//! `mir evt watch` against the hub (chaos on: duplicated invocations append an event
//! twice): a device's online event and a completed command are each printed once; and
//! the feed's latency from `append` to the printed line (a benchmark, `--ignored`).

use std::{
    io::{BufRead, BufReader},
    time::{Duration, Instant},
};

use mir_shared::domain::{Event, EventReason};
use tokio::sync::mpsc;

use super::*;

const LINE_WAIT: Duration = Duration::from_secs(15);

/// `mir evt watch ARGS` in the background, its stdout lines on a channel.
fn watch(hub: &TestHub, args: &[&str]) -> (Background, mpsc::UnboundedReceiver<String>) {
    let mut all = vec!["evt", "watch"];
    all.extend(args);
    let mut bg = hub.cmd(&all).spawn();
    let stdout = bg.take_stdout().expect("piped stdout");
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (bg, rx)
}

async fn next_line(rx: &mut mpsc::UnboundedReceiver<String>, what: &str) -> String {
    match tokio::time::timeout(LINE_WAIT, rx.recv()).await {
        Ok(Some(line)) => line,
        other => panic!("no {what} line within {LINE_WAIT:?}: {other:?}"),
    }
}

/// Waits for the table's header: the watcher is connected.
async fn connected(rx: &mut mpsc::UnboundedReceiver<String>) {
    let header = next_line(rx, "header").await;
    assert!(header.starts_with("TIME "), "{header}");
    assert!(
        header.contains("REASON") && header.contains("MESSAGE"),
        "{header}"
    );
}

/// Nothing more within a second.
async fn quiet(rx: &mut mpsc::UnboundedReceiver<String>) {
    if let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
        panic!("unexpected line: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evt_watch_prints_a_devices_online_event_then_its_completed_command_each_once() {
    let hub = hub();
    let (online, mut online_lines) = watch(&hub, &["--reason", "DeviceOnline", "-d", "w-watch"]);
    connected(&mut online_lines).await;
    let _device = TestDevice::start(&hub, "w-watch", Behaviour::Succeed).await;
    let line = next_line(&mut online_lines, "DeviceOnline").await;
    assert!(line.contains("DeviceOnline"), "{line}");
    assert!(line.contains("w-watch"), "{line}");
    quiet(&mut online_lines).await;

    let (completed, mut completed_lines) = watch(&hub, &["--reason", "CommandCompleted"]);
    connected(&mut completed_lines).await;
    let sent = hub.mir(&[
        "cmd",
        "send",
        "w-watch/default",
        "-n",
        "schema.v1.ActivateHVACCmd",
        "-p",
        r#"{"durationSec": 1}"#,
    ]);
    assert!(sent.ok, "{sent:?}");
    let line = next_line(&mut completed_lines, "CommandCompleted").await;
    assert!(line.contains("CommandCompleted"), "{line}");
    assert!(line.contains("w-watch/default"), "{line}");
    quiet(&mut completed_lines).await;
    quiet(&mut online_lines).await;

    for bg in [online, completed] {
        let out = bg.interrupt();
        assert_eq!(out.code, Some(0), "Ctrl-C stops with 0: {out:?}");
    }
}

/// The latency from `EventStore::append` (the hub's decorated store) to the line
/// `mir evt watch` prints, over 100 events one after another. Run with
/// `cargo test -p mir-cli --test e2e -- --ignored --nocapture evt_watch_latency`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: prints p50/p99"]
async fn evt_watch_latency_from_append_to_printed_line() {
    let hub = hub();
    let (_bg, mut lines) = watch(&hub, &["--reason", "CommandSent"]);
    connected(&mut lines).await;
    let events = hub.core().ports.events.clone().expect("the events port");
    let mut latencies = Vec::new();
    for i in 0..100 {
        let message = format!("bench-{i}");
        let e = Event::new(
            EventReason::CommandSent,
            "bench",
            chrono::Utc::now(),
            &message,
            message.clone(),
        );
        let start = Instant::now();
        events.append(std::slice::from_ref(&e)).await.unwrap();
        loop {
            let line = next_line(&mut lines, &message).await;
            if line.trim_end().ends_with(&message) {
                break;
            }
        }
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "evt watch latency over {} events: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        p(0.50),
        p(0.99),
        latencies[latencies.len() - 1]
    );
}
