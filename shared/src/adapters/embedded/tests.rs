//! Unit tests of the embedded store's own helpers: time keys, transactions, pruning
//! (the ports themselves are covered by the conformance suite).

use chrono::{DateTime, Duration, Utc};
use redb::ReadableTableMetadata;

use super::store::{
    get_json, read, time_key, to_json, unavailable, write, COMMANDS, EVENTS, EVENTS_BY_TIME,
};
use super::{EmbeddedStore, Retention};
use crate::domain::{
    CommandRecord, CommandStatus, Event, EventFilter, EventReason, EventRetention, PageRequest,
};
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
    let left = all_events(&store).await;
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

async fn all_events(store: &EmbeddedStore) -> Vec<Event> {
    store
        .list(&EventFilter::default(), &PageRequest::default())
        .await
        .expect("lists")
        .items
}

#[tokio::test]
async fn prune_drops_each_event_at_the_expiry_of_its_reason() {
    let (_dir, store) = store();
    let store =
        store.with_event_retention(EventRetention::uniform(30).with(EventReason::DeviceOffline, 2));
    let t = at(1_000 * 86_400);
    let events = [
        Event::new(EventReason::DeviceOffline, "d", t, "a", "offline"),
        Event::new(EventReason::CommandSent, "d", t, "b", "sent"),
    ];
    store.append(&events).await.expect("appends");
    let stored = all_events(&store).await;
    let expiry = |r: EventReason| {
        stored
            .iter()
            .find(|e| e.reason == r)
            .and_then(|e| e.expires_at)
    };
    assert_eq!(
        expiry(EventReason::DeviceOffline),
        Some((t + Duration::days(2)).timestamp())
    );
    assert_eq!(
        expiry(EventReason::CommandSent),
        Some((t + Duration::days(30)).timestamp())
    );
    let prune = |days: i64| store.prune(t + Duration::days(days), Retention::default());
    assert_eq!(prune(1).await.expect("prunes"), 0);
    assert_eq!(
        prune(2).await.expect("prunes"),
        1,
        "expired at its expiresAt"
    );
    assert_eq!(all_events(&store).await[0].reason, EventReason::CommandSent);
    assert_eq!(prune(29).await.expect("prunes"), 0);
    assert_eq!(prune(30).await.expect("prunes"), 1);
    assert!(all_events(&store).await.is_empty());
}

#[tokio::test]
async fn prune_drops_events_without_an_expiry_past_the_longest_retention() {
    let (_dir, store) = store();
    let t = at(1_000 * 86_400);
    let legacy = Event::new(EventReason::CommandSent, "d", t, "a", "before expiresAt");
    let tk = time_key(t, &legacy.id);
    let bytes = to_json(&legacy).expect("json");
    write(store.db(), |tx| {
        let mut events = tx.open_table(EVENTS).map_err(unavailable)?;
        events
            .insert(legacy.id.as_str(), bytes.as_slice())
            .map_err(unavailable)?;
        let mut by_time = tx.open_table(EVENTS_BY_TIME).map_err(unavailable)?;
        by_time.insert(tk.as_str(), ()).map_err(unavailable)?;
        Ok(())
    })
    .expect("writes");
    assert_eq!(all_events(&store).await.len(), 1);
    let max = i64::from(EventRetention::default().max_days());
    let prune = |days: i64| store.prune(t + Duration::days(days), Retention::default());
    assert_eq!(prune(max).await.expect("prunes"), 0);
    assert_eq!(prune(max + 1).await.expect("prunes"), 1);
    assert!(all_events(&store).await.is_empty());
}
