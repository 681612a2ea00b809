//! What is durable when, in the state machine: sends with `always` settled by the
//! commit that holds their message (messages arriving during a commit share the next
//! one), flushes settled once everything before them is safe, and what a replay after
//! a restart publishes. The store operations run when the test says so.

use std::time::Duration;

use mir_proto::wire::{PropertyValue, TelemetryBatch};
use prost::Message;

use super::*;
use crate::{
    config::Persistence,
    store::{RecordKind, Store, StoreError},
    test_support::{item, later, published_on, t0, FakeNet, SessionBuilder, SharedStore},
};

const ENV: &str = "schema.v1.Env";

fn always(store: &SharedStore) -> SessionBuilder {
    SessionBuilder::new()
        .persistence(Persistence::Always)
        .store(store.boxed())
}

/// The waits settled `Ok`, in order.
fn ok_ids(settled: &[Settled]) -> Vec<WaitId> {
    settled
        .iter()
        .map(|(id, result)| {
            assert!(result.is_ok(), "wait {id} failed: {result:?}");
            *id
        })
        .collect()
}

fn appends(ops: &[StoreOp]) -> Vec<&Vec<crate::store::Record>> {
    ops.iter()
        .filter_map(|op| match op {
            StoreOp::Append { records, .. } => Some(records),
            _ => None,
        })
        .collect()
}

/// Items of the telemetry batches in `requests`.
fn items_of(requests: &[Request]) -> Vec<TelemetryItem> {
    published_on(requests, "tlm")
        .into_iter()
        .flat_map(|b| TelemetryBatch::decode(b).expect("batch").items)
        .collect()
}

fn reported(name: &str, now: Now) -> PropertyValue {
    PropertyValue {
        name: name.to_string(),
        payload: Bytes::from_static(b"\x08\x05"),
        updated_at_ns: now.unix_ns,
        version: 0,
    }
}

#[test]
fn with_always_a_send_is_settled_only_once_the_append_holding_it_is_answered() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = always(&store).connected(now);
    s.push_telemetry_awaited(item(ENV, 16, now), now, 1)
        .expect("fits");
    assert!(s.take_settled().is_empty(), "in the open batch");
    s.on_timer(now);
    let ops = s.take_store_ops();
    assert_eq!(appends(&ops).len(), 1, "{ops:?}");
    assert!(s.take_settled().is_empty(), "the append is not answered");
    assert_eq!(store.lock().stats().messages, 0);
    for op in ops {
        s.run(op);
    }
    assert_eq!(store.lock().stats().messages, 1);
    assert_eq!(ok_ids(&s.take_settled()), vec![1]);
    assert!(s.take_settled().is_empty(), "settled once");
}

#[test]
fn with_always_the_batch_closes_as_soon_as_the_store_is_free_not_at_the_linger() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = always(&store).linger(Duration::from_secs(60)).build(now);
    s.push_telemetry_awaited(item(ENV, 16, now), now, 1)
        .expect("fits");
    assert!(
        s.next_deadline().is_some_and(|d| d <= now.mono),
        "due now, not in 60 s"
    );
    s.on_timer(now);
    assert_eq!(appends(&s.take_store_ops()).len(), 1);
}

#[test]
fn sends_arriving_while_a_commit_runs_share_the_next_one() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = always(&store).connected(now);
    s.push_telemetry_awaited(item(ENV, 16, now), now, 1)
        .expect("fits");
    s.on_timer(now);
    let first = s.take_store_ops();
    assert_eq!(appends(&first).len(), 1);
    for id in 2..=4 {
        s.push_telemetry_awaited(item(ENV, 16, now), now, id)
            .expect("fits");
        s.on_timer(now);
    }
    assert!(
        appends(&s.take_store_ops()).is_empty(),
        "the batch stays open while the first append runs"
    );
    for op in first {
        s.run(op);
    }
    assert_eq!(ok_ids(&s.take_settled()), vec![1]);
    s.on_timer(now);
    let second = s.take_store_ops();
    let records = appends(&second);
    assert_eq!(records.len(), 1, "one commit for the three: {second:?}");
    assert_eq!(records[0].len(), 1);
    assert_eq!(records[0][0].messages, 3);
    assert!(s.take_settled().is_empty());
    for op in second {
        s.run(op);
    }
    assert_eq!(ok_ids(&s.take_settled()), vec![2, 3, 4]);
    assert_eq!(store.appends(), 2, "four sends, two commits");
}

#[test]
fn a_send_whose_append_failed_gets_the_store_error_and_its_message_is_still_sent() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = always(&store).connected(now);
    store.fail_appends(true);
    let seq = s
        .push_telemetry_awaited(item(ENV, 16, now), now, 7)
        .expect("fits");
    s.on_timer(now);
    s.settle();
    let settled = s.take_settled();
    let [(7, Err(NotStored::Failed(e)))] = settled.as_slice() else {
        panic!("a failed wait expected: {settled:?}")
    };
    let StoreError::Database { reason, .. } = e.as_ref() else {
        panic!("the store's error expected: {e:?}")
    };
    assert_eq!(reason, "appends fail");
    assert_eq!(s.counters().queued_messages, 1, "kept in memory");
    let sent = items_of(&FakeNet::default().send(&mut s, 10));
    assert_eq!(sent.iter().map(|i| i.seq).collect::<Vec<_>>(), vec![seq]);
}

#[test]
fn a_send_with_no_room_at_the_stores_cap_is_settled_as_dropped() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = always(&store).max_store_bytes(100).build(now);
    s.push_telemetry_awaited(item(ENV, 500, now), now, 3)
        .expect("fits");
    s.on_timer(now);
    s.settle();
    let settled = s.take_settled();
    assert!(
        matches!(settled.as_slice(), [(3, Err(NotStored::Dropped))]),
        "{settled:?}"
    );
    assert_eq!(store.lock().stats().records, 0);
    assert_eq!(s.counters().dropped_messages, 1);
}

#[test]
fn without_always_an_awaited_send_is_settled_at_once() {
    let now = t0();
    for builder in [
        SessionBuilder::new().store(SharedStore::default().boxed()),
        SessionBuilder::new().persistence(Persistence::NoStorage),
        SessionBuilder::new().persistence(Persistence::Always), // no store
    ] {
        let mut s = builder.connected(now);
        assert!(!s.commits_telemetry());
        s.push_telemetry_awaited(item(ENV, 16, now), now, 5)
            .expect("fits");
        assert_eq!(ok_ids(&s.take_settled()), vec![5]);
    }
}

#[test]
fn with_always_a_flush_is_settled_once_telemetry_and_reported_values_before_it_are_committed() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = always(&store).connected(now);
    s.push_telemetry(item(ENV, 16, now), now).expect("fits");
    s.push_reported(reported("schema.v1.DataRateStatus", now), now)
        .expect("fits");
    s.flush(now, 9);
    assert!(s.take_settled().is_empty());
    s.settle();
    assert_eq!(ok_ids(&s.take_settled()), vec![9]);
    let kinds: Vec<RecordKind> = store
        .lock()
        .read_after(None, 10)
        .expect("read")
        .iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds, vec![RecordKind::Reported, RecordKind::Telemetry]);
}

#[test]
fn a_flush_with_nothing_pending_is_settled_at_once() {
    let now = t0();
    let mut s = always(&SharedStore::default()).connected(now);
    s.flush(now, 1);
    assert_eq!(ok_ids(&s.take_settled()), vec![1]);
}

#[test]
fn with_ifoffline_a_flush_while_online_is_settled_by_the_puback() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = SessionBuilder::new().store(store.boxed()).connected(now);
    s.push_telemetry(item(ENV, 16, now), now).expect("fits");
    s.flush(now, 1);
    let mut net = FakeNet::default();
    assert_eq!(items_of(&net.send(&mut s, 10)).len(), 1);
    assert!(s.take_settled().is_empty(), "handed, not acknowledged");
    net.ack_all(&mut s, now);
    assert_eq!(ok_ids(&s.take_settled()), vec![1]);
    assert_eq!(store.appends(), 0, "never written to the store");
}

#[test]
fn with_ifoffline_a_flush_is_settled_when_a_dropped_connection_writes_its_records_to_the_store() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = SessionBuilder::new().store(store.boxed()).connected(now);
    s.push_telemetry(item(ENV, 16, now), now).expect("fits");
    s.flush(now, 1);
    let mut net = FakeNet::default();
    net.send(&mut s, 10);
    net.drop_connection(&mut s);
    assert_eq!(ok_ids(&s.take_settled()), vec![1]);
    assert_eq!(store.lock().stats().messages, 1);
}

#[test]
fn with_ifoffline_a_flush_while_offline_is_settled_by_the_commit() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = SessionBuilder::new().store(store.boxed()).build(now);
    s.push_telemetry(item(ENV, 16, now), now).expect("fits");
    s.flush(now, 1);
    assert!(s.take_settled().is_empty(), "the append is not answered");
    s.settle();
    assert_eq!(ok_ids(&s.take_settled()), vec![1]);
    assert_eq!(store.lock().stats().messages, 1);
}

#[test]
fn with_nostorage_a_flush_waits_for_the_puback_across_a_reconnect() {
    let now = t0();
    let mut s = SessionBuilder::new()
        .persistence(Persistence::NoStorage)
        .connected(now);
    s.push_telemetry(item(ENV, 16, now), now).expect("fits");
    s.flush(now, 1);
    let mut net = FakeNet::default();
    net.send(&mut s, 10);
    net.drop_connection(&mut s);
    assert!(s.take_settled().is_empty(), "in memory only");
    s.on_connected(now);
    net.send(&mut s, 10);
    net.ack_all(&mut s, now);
    assert_eq!(ok_ids(&s.take_settled()), vec![1]);
}

#[test]
fn a_replay_after_a_restart_publishes_each_message_with_its_seq_and_sent_at() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = always(&store).connected(now);
    for (id, ms) in [(1, 0), (2, 7), (3, 11)] {
        let at = later(now, Duration::from_millis(ms));
        s.push_telemetry_awaited(item(ENV, 16, at), at, id)
            .expect("fits");
        s.on_timer(at);
        s.settle();
    }
    assert_eq!(ok_ids(&s.take_settled()), vec![1, 2, 3]);
    let mut net = FakeNet::default();
    let first = items_of(&net.send(&mut s, 10));
    assert_eq!(first.len(), 3);
    // Killed before the PUBACKs: nothing closes the session.
    drop(s);
    let mut s = always(&store).build(now);
    s.on_connected(now);
    let mut net = FakeNet::default();
    let burst = net.send(&mut s, 4);
    assert!(items_of(&burst).is_empty(), "the connect burst first");
    net.ack_all(&mut s, now);
    let replayed = items_of(&net.send(&mut s, 10));
    assert_eq!(replayed, first, "same seq, sent_at_ns and payload");
}

#[test]
fn a_killed_device_never_stores_a_sequence_number_it_had_not_reserved_first() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = always(&store).build(now);
    // Past the first reserved block: a second reservation is asked for midway.
    for _ in 0..SEQ_BLOCK + 500 {
        s.push_telemetry(item(ENV, 16, now), now).expect("fits");
    }
    s.flush_telemetry(now);
    let ops = s.take_store_ops();
    assert!(appends(&ops).len() >= 2, "several full batches");
    // A kill may come after any operation: what the store holds then is what a
    // restart sees.
    for op in ops {
        s.run(op);
        let reserved = store
            .lock()
            .get_meta(META_SEQ)
            .expect("meta")
            .map(|v| u64::from_be_bytes(v.try_into().expect("8 bytes")))
            .expect("reserved at boot");
        let highest = store.items().iter().map(|i| i.seq).max().unwrap_or(0);
        assert!(
            highest < reserved,
            "seq {highest} stored, {reserved} reserved"
        );
    }
}

#[test]
fn a_restarted_device_never_gives_a_new_message_a_sequence_number_used_before() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = always(&store).build(now);
    for _ in 0..5 {
        s.push_telemetry(item(ENV, 16, now), now).expect("fits");
    }
    s.on_timer(now);
    s.settle();
    drop(s); // killed mid-block
             // The same device time for every message, and then a clock set back: only the
             // sequence number tells the messages apart.
    let mut back = now;
    back.unix_ns -= 3_600_000_000_000;
    for clock in [now, back] {
        let mut s = always(&store).build(clock);
        for _ in 0..5 {
            s.push_telemetry(item(ENV, 16, now), clock).expect("fits");
        }
        s.on_timer(clock);
        s.settle();
    }
    let items = store.items();
    assert_eq!(items.len(), 15);
    let mut keys: Vec<(i64, u64)> = items.iter().map(|i| (i.sent_at_ns, i.seq)).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 15, "every (time, seq) is one message");
    let seqs: Vec<u64> = items.iter().map(|i| i.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[test]
fn with_always_a_flush_after_a_failed_write_waits_for_the_puback() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = always(&store).connected(now);
    store.fail_appends(true);
    s.push_telemetry(item(ENV, 16, now), now).expect("fits");
    s.flush(now, 1);
    s.settle();
    assert!(
        s.take_settled().is_empty(),
        "in memory only, not acknowledged"
    );
    let mut net = FakeNet::default();
    net.send(&mut s, 10);
    net.ack_all(&mut s, now);
    assert_eq!(ok_ids(&s.take_settled()), vec![1]);
}

#[test]
fn sequence_numbers_start_at_the_clock_in_microseconds_on_an_empty_store() {
    let now = t0();
    let store = SharedStore::default();
    let mut s = always(&store).build(now);
    let seq = s.push_telemetry(item(ENV, 16, now), now).expect("fits");
    assert_eq!(Ok(seq), u64::try_from(now.unix_ns / 1_000));
}
