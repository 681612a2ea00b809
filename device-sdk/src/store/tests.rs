use bytes::Bytes;

use super::*;

fn rec(key: u64, created_ns: i64, len: usize) -> Record {
    Record {
        key,
        kind: if key.is_multiple_of(2) {
            RecordKind::Reported
        } else {
            RecordKind::Telemetry
        },
        created_ns,
        messages: 3,
        payload: Bytes::from(vec![key as u8; len]),
    }
}

/// The same checks on both stores.
fn conformance(store: &mut dyn Store) {
    assert_eq!(store.stats(), StoreStats::default());
    let t = crate::clock::CLOCK_FLOOR_NS;
    let records: Vec<Record> = (1..=10).map(|k| rec(k, t + k as i64 * 100, 50)).collect();
    store.append(&records[..5]).expect("append");
    store.append(&records[5..]).expect("append");
    let s = store.stats();
    assert_eq!((s.records, s.messages), (10, 30));
    assert_eq!((s.first_key, s.last_key), (Some(1), Some(10)));
    assert_eq!(
        store.read_after(None, 3).expect("read"),
        records[..3].to_vec()
    );
    assert_eq!(
        store.read_after(Some(8), 10).expect("read"),
        records[8..].to_vec()
    );
    assert!(store.read_after(Some(10), 10).expect("read").is_empty());

    store.remove(&[2, 3, 42]).expect("remove");
    assert_eq!(store.stats().records, 8);
    assert_eq!(store.stats().messages, 24);
    let keys: Vec<u64> = store
        .read_after(None, 3)
        .expect("read")
        .iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, vec![1, 4, 5]);

    // Expire everything created before 500: 1 and 4.
    let expired = store.expire(t + 500).expect("expire");
    assert_eq!(expired.records, 2);
    assert_eq!(store.stats().first_key, Some(5));

    // A record written before the clock was set (time 0) is never too old, and the
    // records behind it expire all the same.
    store
        .append(&[rec(11, 0, 50), rec(12, t + 550, 50)])
        .expect("append");
    store.remove(&[5]).expect("remove");
    let expired = store.expire(t + 100_000).expect("expire");
    assert_eq!(expired.records, 6, "6 to 10 and 12: {expired:?}");
    let left: Vec<u64> = store
        .read_after(None, 10)
        .expect("read")
        .iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(left, vec![11]);
    store.remove(&[11]).expect("remove");
    store.append(&records[4..]).expect("append again");

    // Drop at least 100 bytes: two records of 71 bytes (50 + header + key).
    let dropped = store.drop_oldest(100).expect("drop");
    assert_eq!(dropped.records, 2, "{dropped:?}");
    let dropped = store.drop_oldest(1).expect("drop");
    assert_eq!(dropped.records, 1);
    assert_eq!(store.stats().records, 3);
    assert_eq!(store.stats().bytes, 3 * records[0].stored_len());

    store.put_meta("seq", b"1").expect("meta");
    store.put_meta("desired/a", b"A").expect("meta");
    store.put_meta("desired/b", b"B").expect("meta");
    store.put_meta("desires", b"no").expect("meta");
    assert_eq!(store.get_meta("seq").expect("meta"), Some(b"1".to_vec()));
    assert_eq!(store.get_meta("nope").expect("meta"), None);
    assert_eq!(
        store.scan_meta("desired/").expect("scan"),
        vec![
            ("desired/a".to_string(), b"A".to_vec()),
            ("desired/b".to_string(), b"B".to_vec())
        ]
    );
}

#[test]
fn the_memory_store_passes_the_conformance_checks() {
    conformance(&mut MemoryStore::new());
}

#[test]
fn the_redb_store_passes_the_conformance_checks_and_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = {
        let mut store = RedbStore::open(dir.path()).expect("open");
        conformance(&mut store);
        store.stats()
    };
    let store = RedbStore::open(dir.path()).expect("reopen");
    assert_eq!(store.stats(), stats);
    assert_eq!(store.get_meta("seq").expect("meta"), Some(b"1".to_vec()));
    assert_eq!(store.read_after(None, 100).expect("read").len(), 3);
}

#[test]
fn the_redb_store_is_locked_to_one_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = RedbStore::open(dir.path()).expect("open");
    let err = RedbStore::open(dir.path()).expect_err("locked by the first");
    assert!(
        matches!(&err, StoreError::Database { path, .. } if path.ends_with(redb_store::STORE_FILE)),
        "{err}"
    );
    assert!(err.to_string().contains("already open"), "{err}");
}

#[test]
fn disk_usage_is_read_from_the_file_system() {
    let dir = tempfile::tempdir().expect("tempdir");
    let used = disk_used_percent(dir.path()).expect("statvfs");
    assert!((0.0..=100.0).contains(&used), "{used}");
    // Same as df's Use%, within rounding.
    if let Ok(out) = std::process::Command::new("df")
        .args(["--output=pcent"])
        .arg(dir.path())
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(pct) = text
            .lines()
            .nth(1)
            .and_then(|l| l.trim().trim_end_matches('%').parse::<f64>().ok())
        {
            assert!((pct - used).abs() <= 1.5, "df says {pct}%, statvfs {used}%");
        }
    }
    let store = RedbStore::open(dir.path()).expect("open");
    assert!(store.disk_used_percent().is_some());
}
