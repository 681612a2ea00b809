//! The store task: what each operation does to a store, and that a batch runs off the
//! executor, in order, with its answers kept until they are taken.

use bytes::Bytes;

use super::*;
use crate::{
    session::{StoreOutcome, StoreReply},
    store::{RecordKind, StoreError, StoreStats},
    test_support::SharedStore,
};

fn rec(key: u64, len: usize) -> Record {
    Record {
        key,
        kind: RecordKind::Telemetry,
        created_ns: 1,
        messages: 1,
        payload: Bytes::from(vec![0u8; len]),
    }
}

const ROOM: Room = Room {
    max_bytes: None,
    disk_limit_percent: 85.0,
};

fn appended(reply: StoreReply) -> Appended {
    match reply.outcome {
        StoreOutcome::Appended(a) => a,
        other => panic!("an append's answer expected, got {other:?}"),
    }
}

/// A store and the room for `n` records of 100 bytes.
fn capped(n: u64) -> (SharedStore, Box<dyn Store>, Room) {
    let store = SharedStore::default();
    let boxed = store.boxed();
    let room = Room {
        max_bytes: Some(n * rec(1, 100).stored_len()),
        ..ROOM
    };
    (store, boxed, room)
}

#[test]
fn an_append_under_a_size_cap_drops_the_oldest_stored_records_first() {
    let (store, mut boxed, room) = capped(2);
    let records = vec![rec(1, 100), rec(2, 100)];
    let done = appended(execute(&mut *boxed, StoreOp::Append { records, room }));
    assert_eq!(done.freed, StoreStats::default());
    let reply = execute(
        &mut *boxed,
        StoreOp::Append {
            records: vec![rec(3, 100)],
            room,
        },
    );
    assert_eq!(reply.stats.records, 2, "the counts after the operation");
    let done = appended(reply);
    assert_eq!((done.freed.records, done.freed.messages), (1, 1));
    assert!(done.dropped_new.is_none() && done.failed.is_none());
    let keys: Vec<u64> = store
        .lock()
        .read_after(None, 10)
        .expect("read")
        .iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, vec![2, 3]);
}

#[test]
fn an_append_larger_than_the_cap_drops_its_own_oldest_records() {
    let (store, mut boxed, room) = capped(1);
    let records = vec![rec(1, 100), rec(2, 100), rec(3, 100)];
    let done = appended(execute(&mut *boxed, StoreOp::Append { records, room }));
    assert_eq!(done.dropped_new, Some(2));
    assert_eq!(
        done.dropped_keys,
        vec![1, 2],
        "the keys of the dropped records"
    );
    assert_eq!(store.lock().stats().first_key, Some(3));
}

#[test]
fn on_a_full_disk_new_records_take_the_place_of_the_oldest() {
    let store = SharedStore::default();
    let mut boxed = store.boxed();
    let records = vec![rec(1, 100), rec(2, 100)];
    appended(execute(
        &mut *boxed,
        StoreOp::Append {
            records,
            room: ROOM,
        },
    ));
    store.lock().disk_used_percent = Some(90.0);
    let done = appended(execute(
        &mut *boxed,
        StoreOp::Append {
            records: vec![rec(3, 100)],
            room: ROOM,
        },
    ));
    assert!(done.disk_full);
    assert_eq!(done.freed.records, 1);
    assert_eq!(store.lock().stats().records, 2);
}

#[test]
fn a_failed_append_gives_its_records_back() {
    let store = SharedStore::default();
    store.fail_appends(true);
    let mut boxed = store.boxed();
    let done = appended(execute(
        &mut *boxed,
        StoreOp::Append {
            records: vec![rec(1, 10)],
            room: ROOM,
        },
    ));
    let Some((StoreError::Database { reason, .. }, records)) = done.failed else {
        panic!("the records come back")
    };
    assert_eq!(reason, "appends fail");
    assert_eq!(records, vec![rec(1, 10)]);
}

#[test]
fn meta_operations_write_the_keys_the_boot_reads() {
    let store = SharedStore::default();
    let mut boxed = store.boxed();
    execute(&mut *boxed, StoreOp::ReserveSeq { upto: 42 });
    let value = mir_proto::wire::PropertyValue {
        name: "schema.v1.DataRateProp".into(),
        payload: Bytes::from_static(b"\x08\x05"),
        updated_at_ns: 7,
        version: 1,
    };
    let reply = execute(&mut *boxed, StoreOp::CacheDesired(value.clone()));
    let StoreOutcome::DesiredCached {
        name,
        result: Ok(()),
    } = reply.outcome
    else {
        panic!("cached expected: {:?}", reply.outcome)
    };
    assert_eq!(name, value.name);
    let boot = load_boot(&*boxed);
    assert_eq!(
        boot.seq.expect("seq readable"),
        Some(42u64.to_be_bytes().to_vec())
    );
    let desired = boot.desired.expect("desired readable");
    assert_eq!(
        desired,
        vec![(
            "desired/schema.v1.DataRateProp".to_string(),
            value.encode_to_vec()
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_runs_in_order_and_its_answers_come_back_in_order() {
    let store = SharedStore::default();
    let (mut task, boot) = StoreTask::open(store.boxed()).await.expect("opens");
    assert_eq!(boot.stats, StoreStats::default());
    assert!(!task.is_busy());
    task.submit(vec![
        StoreOp::Append {
            records: vec![rec(1, 10), rec(2, 10)],
            room: ROOM,
        },
        StoreOp::Read {
            ticket: 7,
            after: Some(1),
            max: 16,
        },
    ]);
    // Asked while the first batch runs: the next batch.
    task.submit(vec![StoreOp::Remove(vec![1, 2])]);
    assert!(task.is_busy());
    let first = task.replies().await;
    let [append, read] = first.as_slice() else {
        panic!("two answers expected: {first:?}")
    };
    assert!(matches!(append.outcome, StoreOutcome::Appended(_)));
    let StoreOutcome::Read {
        ticket: 7,
        result: Ok(page),
    } = &read.outcome
    else {
        panic!("the read's answer expected: {read:?}")
    };
    let records = &page.records;
    assert_eq!(records.len(), 1, "the read saw the append before it");
    assert_eq!(records[0].key, 2);
    assert!(task.is_busy(), "the removal runs next");
    let second = task.replies().await;
    assert!(matches!(
        second.as_slice(),
        [StoreReply {
            outcome: StoreOutcome::Removed(Ok(())),
            ..
        }]
    ));
    assert_eq!(second[0].stats.records, 0);
    assert!(!task.is_busy());
    task.close().await;
    assert_eq!(store.lock().stats().records, 0);
}

#[tokio::test(start_paused = true)]
async fn answers_survive_a_dropped_wait() {
    let store = SharedStore::default();
    let (mut task, _) = StoreTask::open(store.boxed()).await.expect("opens");
    task.submit(vec![StoreOp::Expire { cutoff_ns: 0 }]);
    // Another branch of the event loop's select wins: the wait is dropped.
    tokio::select! {
        biased;
        _ = std::future::ready(()) => {}
        _ = task.replies() => panic!("the ready branch goes first"),
    }
    let replies = task.replies().await;
    assert!(matches!(
        replies.as_slice(),
        [StoreReply {
            outcome: StoreOutcome::Expired {
                cutoff_ns: 0,
                result: Ok(_)
            },
            ..
        }]
    ));
}
