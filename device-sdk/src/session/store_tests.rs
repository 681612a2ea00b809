//! The session with an offline store: acknowledgements, replay, persistence types,
//! retention, caps, sequence numbers and cached desired properties, without a network.
//! The store operations run when the test settles the session, as the event loop's
//! store task runs them.

use std::time::Duration;

use bytes::Bytes;
use mir_proto::wire::{DesiredProperties, PropertyValue, TelemetryBatch};
use prost::Message;

use super::*;
use crate::{
    config::Persistence,
    store::Store,
    test_support::{
        drain, item, later, published_on, t0, topic, FakeNet, Names, SessionBuilder, SharedStore,
        TestSession,
    },
};

/// Pushes one telemetry message and closes its batch: one record (in the store once
/// the session settled, if it goes there).
fn record(s: &mut TestSession, now: Now) -> u64 {
    let seq = s
        .push_telemetry(item("schema.v1.Env", 16, now), now)
        .expect("fits");
    s.flush_telemetry(now);
    s.settle();
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
fn connect(s: &mut TestSession, now: Now) {
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
    s.settle();
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
    s2.settle();
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
    assert_eq!(s.settle(), 0, "nothing for the store to do");
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
    s.settle();
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
        s.settle();
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
    s.settle();
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

// ---- the store boundary: the session asks, the event loop runs, answers come back ----

/// A builder of sessions over a fresh shared store.
fn over_a_store(builder: SessionBuilder) -> (SharedStore, SessionBuilder) {
    let store = SharedStore::default();
    let builder = builder.store(store.boxed());
    (store, builder)
}

/// Pushes one telemetry message and closes its batch, leaving the store operations
/// waiting.
fn push_record(s: &mut TestSession, now: Now) {
    s.push_telemetry(item("schema.v1.Env", 16, now), now)
        .expect("fits");
    s.flush_telemetry(now);
}

/// Sequence numbers of what a fresh network takes from the session.
fn replayed(s: &mut TestSession) -> Vec<u64> {
    seqs(&FakeNet::default().send(s, 10))
}

#[test]
fn the_session_asks_for_store_operations_instead_of_running_them() {
    let now = t0();
    let (store, builder) = over_a_store(SessionBuilder::new());
    let mut s = builder.build(now);
    push_record(&mut s, now);
    assert_eq!(store.lock().stats().records, 0, "nothing written yet");
    let ops = s.take_store_ops();
    let [StoreOp::Append { records, room }] = ops.as_slice() else {
        panic!("one append expected: {ops:?}")
    };
    assert_eq!(records.len(), 1);
    assert_eq!(
        *room,
        Room {
            max_bytes: None,
            disk_limit_percent: 85.0
        }
    );
    assert!(s.take_store_ops().is_empty(), "taken once");
    assert!(!s.is_idle(), "an append is running");
    s.run(ops[0].clone());
    assert_eq!(store.lock().stats().records, 1);
    assert_eq!(
        s.counters().stored_records,
        1,
        "counts come with the answer"
    );
}

#[test]
fn always_publishes_a_record_only_after_its_append_and_a_read_of_it_were_answered() {
    let now = t0();
    let (_store, builder) = over_a_store(SessionBuilder::new().persistence(Persistence::Always));
    let mut s = builder.connected(now);
    push_record(&mut s, now);
    assert!(s.next_request().is_none(), "not on disk yet");
    // The read is asked right away: the store runs it after the append.
    let ops = s.take_store_ops();
    let [append @ StoreOp::Append { .. }, read @ StoreOp::Read { after: None, .. }] =
        ops.as_slice()
    else {
        panic!("an append then a read expected: {ops:?}")
    };
    s.run(append.clone());
    assert!(s.next_request().is_none(), "not read back yet");
    s.run(read.clone());
    let (request, token) = s.next_request().expect("the stored record leaves");
    assert!(matches!(token, Token::Disk(_)), "{token:?}");
    assert_eq!(published_on(&[request], "tlm").len(), 1);
}

#[test]
fn records_wait_while_an_append_of_older_ones_is_unanswered() {
    let now = t0();
    // Room in memory for one record: the oldest not yet sent goes to the store.
    let (_store, builder) = over_a_store(SessionBuilder::new().max_queued_bytes(100));
    let mut s = builder.connected(now);
    let old = record(&mut s, now);
    push_record(&mut s, now); // the first record moves to the store
    assert!(
        s.next_request().is_none(),
        "the newer record in memory waits for the older one"
    );
    assert_eq!(replayed(&mut s), vec![old, old + 1], "oldest first");
}

#[test]
fn a_read_answered_after_the_connection_dropped_is_ignored() {
    let now = t0();
    let (_store, builder) = over_a_store(SessionBuilder::new());
    let mut s = builder.build(now);
    let a = record(&mut s, now);
    connect(&mut s, now);
    assert!(s.next_request().is_none());
    let stale = s.take_store_ops();
    assert!(
        matches!(stale.as_slice(), [StoreOp::Read { .. }]),
        "{stale:?}"
    );
    FakeNet::default().drop_connection(&mut s);
    s.run(stale[0].clone());
    assert!(s.next_request().is_none(), "offline");
    connect(&mut s, now);
    assert_eq!(replayed(&mut s), vec![a], "sent once, from a fresh read");
}

#[test]
fn records_in_memory_wait_until_the_sequence_numbers_they_use_are_reserved() {
    let now = t0();
    let (store, builder) = over_a_store(SessionBuilder::new());
    let mut s = builder.connected(now);
    assert!(s.is_idle());
    // Use up the block reserved at boot, and one more number: the next block is
    // asked for.
    for _ in 0..=SEQ_BLOCK {
        s.push_telemetry(item("schema.v1.Env", 0, now), now)
            .expect("fits");
    }
    s.flush_telemetry(now);
    let ops = s.take_store_ops();
    let [StoreOp::ReserveSeq { upto }] = ops.as_slice() else {
        panic!("a reservation expected: {ops:?}")
    };
    assert!(s.next_request().is_none(), "not reserved yet");
    s.run(ops[0].clone());
    assert_eq!(
        store.lock().get_meta(META_SEQ).expect("meta"),
        Some(upto.to_be_bytes().to_vec())
    );
    assert!(s.next_request().is_some(), "reserved: the records leave");
}

#[test]
fn records_whose_append_failed_stay_in_memory_and_are_sent() {
    let now = t0();
    let (store, builder) = over_a_store(SessionBuilder::new());
    let mut s = builder.build(now);
    store.fail_appends(true);
    let a = record(&mut s, now);
    assert_eq!(store.lock().stats().records, 0);
    assert_eq!(s.counters().queued_messages, 1, "kept in memory");
    connect(&mut s, now);
    assert_eq!(replayed(&mut s), vec![a]);
}

#[test]
fn a_failing_store_does_not_spill_memory_back_to_it_forever() {
    let now = t0();
    let (store, builder) = over_a_store(SessionBuilder::new().max_queued_bytes(100));
    let mut s = builder.connected(now);
    store.fail_appends(true);
    for _ in 0..3 {
        push_record(&mut s, now);
    }
    let ran = s.settle();
    assert!(
        ran <= 3,
        "one failed append per spilled record at most: {ran}"
    );
    assert_eq!(s.counters().dropped_messages, 2, "over the cap, dropped");
    assert_eq!(s.counters().queued_messages, 1);
}

fn custom(payload: &'static [u8]) -> Publish {
    Publish {
        topic: topic("x/alerts/door"),
        payload: Bytes::from_static(payload),
    }
}

#[test]
fn a_custom_message_unacknowledged_when_the_connection_drops_is_sent_again_and_never_stored() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = SessionBuilder::new().store(store.boxed()).build(now);
    connect(&mut s, now);
    s.push_custom(custom(b"open"));
    let mut net = FakeNet::default();
    assert_eq!(
        published_on(&net.send(&mut s, 10), "x/alerts/door"),
        [&b"open"[..]]
    );
    assert!(!s.is_idle(), "waits for its PUBACK");

    net.drop_connection(&mut s);
    assert_eq!(store.lock().stats().records, 0, "memory only, even offline");
    s.push_custom(custom(b"closed"));
    connect(&mut s, now);
    let sent = net.send(&mut s, 10);
    assert_eq!(
        published_on(&sent, "x/alerts/door"),
        [&b"open"[..], &b"closed"[..]],
        "in order, after the reconnect"
    );
    net.ack_all(&mut s, now);
    assert!(s.is_idle());
    assert!(published_on(&net.send(&mut s, 10), "x/alerts/door").is_empty());
    assert_eq!(store.lock().stats().records, 0);
}

#[test]
fn a_full_control_queue_drops_the_oldest_custom_message_before_any_command_response() {
    let now = t0();
    let mut s = SessionBuilder::new().build(now);
    s.command_finished(CommandResponse {
        id: "c1".into(),
        ..Default::default()
    });
    s.push_custom(custom(b"first"));
    for _ in 0..MAX_CONTROL_QUEUED - 2 {
        s.push_custom(custom(b"old"));
    }
    s.push_custom(custom(b"new"));
    connect(&mut s, now);
    let sent = drain(&mut s);
    assert_eq!(
        published_on(&sent, "cmd/resp").len(),
        1,
        "the response stays"
    );
    let custom = published_on(&sent, "x/alerts/door");
    assert_eq!(custom.len(), MAX_CONTROL_QUEUED - 1, "one dropped");
    assert!(
        custom.iter().all(|b| &b[..] != b"first"),
        "the oldest custom one"
    );
    assert_eq!(custom.last().map(|b| &b[..]), Some(&b"new"[..]));
}
