//! The session with an offline store: acknowledgements, replay, persistence types,
//! retention, caps, sequence numbers and cached desired properties, without a network.

use std::time::Duration;

use bytes::Bytes;
use mir_proto::wire::{DesiredProperties, PropertyValue, TelemetryBatch};
use prost::Message;

use super::*;
use crate::{
    config::Persistence,
    test_support::{
        drain, item, later, published_on, t0, topic, FakeNet, Names, SessionBuilder, SharedStore,
    },
};

/// Pushes one telemetry message and closes its batch: one record.
fn record(s: &mut Session, now: Now) -> u64 {
    let seq = s
        .push_telemetry(item("schema.v1.Env", 16, now), now)
        .expect("fits");
    s.flush_telemetry(now);
    seq
}

fn seqs(requests: &[Request]) -> Vec<u64> {
    published_on(requests, "tlm")
        .into_iter()
        .flat_map(|b| TelemetryBatch::decode(b).expect("batch").items)
        .map(|i| i.seq)
        .collect()
}

/// Connects and takes the connect burst (acknowledged).
fn connect(s: &mut Session, now: Now) {
    s.on_connected(now);
    let mut net = FakeNet::default();
    let burst = net.send(s, 4);
    assert_eq!(burst.len(), 4);
    net.ack_all(s, now);
}

#[test]
fn a_batch_written_but_not_acknowledged_is_sent_again_after_a_reconnect() {
    let now = t0();
    let mut s = SessionBuilder::new().build(now);
    connect(&mut s, now);
    let seq = record(&mut s, now);
    let mut net = FakeNet::default();
    assert_eq!(seqs(&net.send(&mut s, 10)), vec![seq]);
    net.drop_connection(&mut s);
    assert!(s.next_request().is_none(), "nothing leaves while offline");
    connect(&mut s, now);
    let again = net.send(&mut s, 10);
    assert_eq!(seqs(&again), vec![seq], "resent once");
    net.ack_all(&mut s, now);
    assert!(net.send(&mut s, 10).is_empty());
    assert!(s.is_idle());
}

#[test]
fn an_acknowledged_batch_is_never_sent_again() {
    let now = t0();
    let mut s = SessionBuilder::new().build(now);
    connect(&mut s, now);
    let a = record(&mut s, now);
    let b = record(&mut s, now);
    let mut net = FakeNet::default();
    assert_eq!(seqs(&net.send(&mut s, 10)), vec![a, b]);
    // Only the first is acknowledged before the connection drops.
    let first = net.written[0];
    s.on_puback(first, now);
    net.drop_connection(&mut s);
    connect(&mut s, now);
    assert_eq!(seqs(&net.send(&mut s, 10)), vec![b]);
}

#[test]
fn ifoffline_stores_only_while_offline_then_replays_oldest_first_and_empties_the_store() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = SessionBuilder::new().store(store.boxed()).build(now);
    let offline: Vec<u64> = (0..3).map(|_| record(&mut s, now)).collect();
    assert_eq!(store.lock().stats().records, 3);
    assert_eq!(s.counters().stored_messages, 3);

    connect(&mut s, now);
    let online = record(&mut s, now);
    assert_eq!(
        store.lock().stats().records,
        3,
        "online records stay in memory"
    );
    let mut net = FakeNet::default();
    let sent = net.send(&mut s, 100);
    let mut expected = offline.clone();
    expected.push(online);
    assert_eq!(seqs(&sent), expected, "oldest first, store then memory");
    net.ack_all(&mut s, now);
    assert_eq!(store.lock().stats().records, 3, "removals are batched");
    s.on_timer(later(now, DELETE_LINGER));
    assert_eq!(store.lock().stats().records, 0);
    assert!(s.is_idle());
}

#[test]
fn ifoffline_moves_unacknowledged_memory_records_to_the_store_when_the_connection_drops() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = SessionBuilder::new().store(store.boxed()).build(now);
    connect(&mut s, now);
    let a = record(&mut s, now);
    let b = record(&mut s, now);
    let mut net = FakeNet::default();
    net.send(&mut s, 1); // a is written, b waits
    net.drop_connection(&mut s);
    assert_eq!(store.lock().stats().records, 2);
    // A restarted process on the same store replays both.
    drop(s);
    let mut s2 = SessionBuilder::new().store(store.boxed()).build(now);
    connect(&mut s2, now);
    assert_eq!(seqs(&net.send(&mut s2, 10)), vec![a, b]);
}

#[test]
fn always_writes_every_record_to_the_store_before_sending_it() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = SessionBuilder::new()
        .persistence(Persistence::Always)
        .store(store.boxed())
        .build(now);
    connect(&mut s, now);
    let a = record(&mut s, now);
    assert_eq!(store.lock().stats().records, 1, "stored while online");
    let mut net = FakeNet::default();
    assert_eq!(seqs(&net.send(&mut s, 10)), vec![a]);
    // The process dies before the PUBACK: a new session replays it.
    drop(s);
    let mut s2 = SessionBuilder::new()
        .persistence(Persistence::Always)
        .store(store.boxed())
        .build(now);
    connect(&mut s2, now);
    assert_eq!(seqs(&net.send(&mut s2, 10)), vec![a]);
    net.ack_all(&mut s2, now);
    s2.close(now);
    assert_eq!(store.lock().stats().records, 0);
}

#[test]
fn nostorage_keeps_the_queue_in_memory_even_with_a_store() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = SessionBuilder::new()
        .persistence(Persistence::NoStorage)
        .store(store.boxed())
        .build(now);
    let a = record(&mut s, now);
    connect(&mut s, now);
    let mut net = FakeNet::default();
    net.send(&mut s, 10);
    net.drop_connection(&mut s);
    s.close(now);
    assert_eq!(store.lock().stats().records, 0);
    connect(&mut s, now);
    assert_eq!(
        seqs(&net.send(&mut s, 10)),
        vec![a],
        "still resent from memory"
    );
}

#[test]
fn at_most_max_inflight_publishes_wait_for_their_puback() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = SessionBuilder::new()
        .max_inflight(100)
        .store(store.boxed())
        .build(now);
    let all: Vec<u64> = (0..250).map(|_| record(&mut s, now)).collect();
    connect(&mut s, now);
    let mut net = FakeNet::default();
    let mut sent = Vec::new();
    for _ in 0..10 {
        let batch = net.send(&mut s, usize::MAX);
        assert!(net.written.len() <= 100, "{} in flight", net.written.len());
        sent.extend(seqs(&batch));
        net.ack_all(&mut s, now);
    }
    assert_eq!(sent, all);
}

#[test]
fn retention_drops_stored_records_older_than_the_limit() {
    let now = t0();
    let store = SharedStore::default();
    let week = Duration::from_secs(7 * 24 * 3600);
    let mut s = SessionBuilder::new()
        .retention(week)
        .store(store.boxed())
        .build(now);
    record(&mut s, now);
    let eight_days = later(now, Duration::from_secs(8 * 24 * 3600));
    let young = record(&mut s, eight_days);
    assert_eq!(store.lock().stats().records, 2);
    // Applied every minute...
    s.on_timer(later(eight_days, RETENTION_EVERY));
    assert_eq!(store.lock().stats().records, 1);
    assert_eq!(s.counters().dropped_messages, 1);
    // ... and when a device starts on an old store.
    drop(s);
    let much_later = later(eight_days, Duration::from_secs(8 * 24 * 3600));
    let _s = SessionBuilder::new()
        .retention(week)
        .store(store.boxed())
        .build(much_later);
    assert_eq!(store.lock().stats().records, 0, "{young} expired too");
}

#[test]
fn a_full_disk_makes_new_records_replace_the_oldest() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = SessionBuilder::new().store(store.boxed()).build(now);
    for _ in 0..5 {
        record(&mut s, now);
    }
    assert_eq!(store.lock().stats().records, 5);
    store.lock().disk_used_percent = Some(90.0);
    let newest: Vec<u64> = (0..3).map(|_| record(&mut s, now)).collect();
    assert_eq!(store.lock().stats().records, 5, "the store stops growing");
    assert_eq!(s.counters().dropped_messages, 3);
    let kept: Vec<u64> = store
        .lock()
        .read_after(None, 100)
        .expect("read")
        .into_iter()
        .flat_map(|r| TelemetryBatch::decode(r.payload).expect("batch").items)
        .map(|i| i.seq)
        .collect();
    assert_eq!(&kept[2..], &newest[..], "the newest are kept");
    // Below the limit again: the store grows.
    store.lock().disk_used_percent = Some(50.0);
    record(&mut s, now);
    assert_eq!(store.lock().stats().records, 6);
}

#[test]
fn a_size_cap_keeps_the_store_under_its_bytes() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = SessionBuilder::new()
        .max_store_bytes(10_000)
        .store(store.boxed())
        .build(now);
    for _ in 0..20 {
        s.push_telemetry(item("schema.v1.Env", 2_000, now), now)
            .expect("fits");
        s.flush_telemetry(now);
        assert!(store.lock().stats().bytes <= 10_000);
    }
    assert!(store.lock().stats().records >= 3);
    assert!(s.counters().dropped_messages >= 14);
}

#[test]
fn sequence_numbers_continue_after_a_restart_on_the_same_store() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = SessionBuilder::new().store(store.boxed()).build(now);
    let last = (0..5).map(|_| record(&mut s, now)).last().expect("5");
    drop(s);
    // Even with a clock that went back (a device without RTC).
    let mut before = now;
    before.unix_ns = 0;
    let mut s2 = SessionBuilder::new().store(store.boxed()).build(before);
    let next = record(&mut s2, before);
    assert!(next > last, "{next} <= {last}");
}

#[test]
fn a_device_booting_offline_gets_its_cached_desired_properties() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = SessionBuilder::new().store(store.boxed()).build(now);
    connect(&mut s, now);
    let desired = DesiredProperties {
        properties: vec![PropertyValue {
            name: "schema.v1.DataRateProp".into(),
            payload: Bytes::from_static(b"\x08\x05"),
            updated_at_ns: now.unix_ns,
            version: 3,
        }],
        complete: true,
    }
    .encode_to_vec()
    .into();
    let names = Names::default().property("schema.v1.DataRateProp");
    assert_eq!(
        s.on_incoming(&topic("cfg/desired"), &desired, &names, now)
            .len(),
        1
    );
    drop(s);

    // Reboot without network.
    let mut s2 = SessionBuilder::new().store(store.boxed()).build(now);
    let Some(Action::ApplyProperty(v)) = s2.on_property_registered("schema.v1.DataRateProp") else {
        panic!("the cached value is applied at boot")
    };
    assert_eq!(v.payload, Bytes::from_static(b"\x08\x05"));
    // Online again, the hub sends the same value: not applied twice.
    connect(&mut s2, now);
    assert!(s2
        .on_incoming(&topic("cfg/desired"), &desired, &names, now)
        .is_empty());
}

#[test]
fn unacknowledged_command_responses_are_sent_again_in_order() {
    let now = t0();
    let mut s = SessionBuilder::new().build(now);
    connect(&mut s, now);
    s.command_finished(error_response("a".into(), "x".into()));
    s.command_finished(error_response("b".into(), "x".into()));
    let mut net = FakeNet::default();
    assert_eq!(published_on(&net.send(&mut s, 10), "cmd/resp").len(), 2);
    net.drop_connection(&mut s);
    s.on_connected(now);
    let sent = drain(&mut s);
    let ids: Vec<String> = published_on(&sent, "cmd/resp")
        .into_iter()
        .map(|p| CommandResponse::decode(p).expect("resp").id)
        .collect();
    assert_eq!(ids, vec!["a", "b"]);
    assert!(matches!(sent[0], Request::Subscribe(_)), "the burst first");
}

#[test]
fn nothing_is_handed_while_disconnected() {
    let now = t0();
    let mut s = SessionBuilder::new().build(now);
    record(&mut s, now);
    assert!(s.next_request().is_none());
}
