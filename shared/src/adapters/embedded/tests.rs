//! Unit tests of the embedded store's own helpers: time keys, transactions, pruning
//! (the ports themselves are covered by the conformance suite).

use chrono::{DateTime, Duration, Utc};
use redb::ReadableTableMetadata;

use super::store::{get_json, read, time_key, to_json, unavailable, write, COMMANDS};
use super::{EmbeddedStore, Retention};
use crate::domain::{CommandRecord, CommandStatus, Event, EventFilter, EventReason};
use crate::ports::{CommandStore, EventStore, StoreError};

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

fn store() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("t.redb")).expect("opens");
    (dir, store)
}

fn command(id: &str, status: CommandStatus, created: DateTime<Utc>) -> CommandRecord {
    CommandRecord {
        id: id.into(),
        device_id: "d".into(),
        device_name: String::new(),
        namespace: String::new(),
        name: "schema.v1.Cmd".into(),
        request: serde_json::Value::Null,
        status,
        response_name: None,
        response: None,
        error: None,
        created_at: created,
        deadline: created,
        completed_at: status.is_final().then_some(created),
    }
}

#[test]
fn time_keys_order_like_the_times() {
    assert!(time_key(at(9), "z") < time_key(at(10), "a"));
    assert!(time_key(at(10), "a") < time_key(at(10), "b"));
    // Before 1970 counts as 1970.
    assert_eq!(time_key(at(-5), "x"), time_key(at(0), "x"));
}

#[test]
fn a_failed_write_transaction_writes_nothing() {
    let (_dir, store) = store();
    let db = store.db();
    let bytes = to_json(&command("c1", CommandStatus::Pending, at(0))).expect("encodes");
    let r: Result<(), StoreError> = write(db, |tx| {
        let mut t = tx.open_table(COMMANDS).map_err(unavailable)?;
        t.insert("c1", bytes.as_slice()).map_err(unavailable)?;
        Err(StoreError::Conflict("on purpose".into()))
    });
    assert!(matches!(r, Err(StoreError::Conflict(_))));
    let found: Option<CommandRecord> = read(db, |tx| {
        let t = tx.open_table(COMMANDS).map_err(unavailable)?;
        assert_eq!(t.len().map_err(unavailable)?, 0);
        get_json(&t, "c1")
    })
    .expect("reads");
    assert!(found.is_none());
}

#[tokio::test]
async fn prune_removes_old_events_and_old_finished_commands_only() {
    let (_dir, store) = store();
    let now = at(100 * 86_400);
    let old = now - Duration::days(40);
    let recent = now - Duration::days(1);
    let events = [
        Event::new(EventReason::DeviceOnline, "d", old, "a", "old"),
        Event::new(EventReason::DeviceOnline, "d", recent, "b", "recent"),
    ];
    store.append(&events).await.expect("appends");
    for c in [
        command("old-done", CommandStatus::Success, old),
        command("old-pending", CommandStatus::Pending, old),
        command("recent-done", CommandStatus::Success, recent),
    ] {
        store.create(&c).await.expect("creates");
    }
    let removed = store
        .prune(now, Retention::default())
        .await
        .expect("prunes");
    assert_eq!(removed, 2);
    let left = store.list(&EventFilter::default()).await.expect("lists");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].message, "recent");
    assert!(CommandStore::get(&store, "old-done")
        .await
        .expect("reads")
        .is_none());
    for id in ["old-pending", "recent-done"] {
        assert!(CommandStore::get(&store, id)
            .await
            .expect("reads")
            .is_some());
    }
}
