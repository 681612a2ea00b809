//! The real store (redb) when its file or its records are damaged: replay goes on.

mod support;

use std::time::Duration;

use mir_device_sdk::{
    store::{RedbStore, Store},
    Mir, Persistence, StoreHealth, StoreOptions,
};
use mir_proto::{examples::weather::Env, wire::TelemetryBatch};
use prost::{Message, Name};
use redb::ReadableTable;
use support::{launch, net::free_port, TestBroker, WAIT};

fn device(target: String, dir: &std::path::Path) -> Mir {
    Mir::builder()
        .device_id("damaged")
        .target(target)
        .telemetry_linger(Duration::from_millis(10))
        .connect_interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .store(StoreOptions {
            folder_path: Some(dir.to_path_buf()),
            persistence_type: Some(Persistence::IfOffline),
            disk_space_limit: Some(100.0),
            ..Default::default()
        })
        .env_vars(Vec::<(String, String)>::new())
        .build()
        .expect("build")
}

fn received_ts(broker: &TestBroker) -> Vec<i64> {
    broker
        .recorder
        .on("mir/damaged/tlm")
        .into_iter()
        .flat_map(|b| TelemetryBatch::decode(b).expect("batch").items)
        .filter(|i| i.name == Env::full_name())
        .map(|i| Env::decode(i.payload).expect("env").ts)
        .collect()
}

/// Runs the device offline, sends `ts`, waits until they are in the store, stops.
async fn store_offline(dir: &std::path::Path, ts: std::ops::Range<i64>) {
    let dev = launch(device(format!("mqtt://127.0.0.1:{}", free_port()), dir)).await;
    for t in ts {
        dev.mir
            .send_telemetry(&Env {
                ts: t,
                ..Default::default()
            })
            .await
            .expect("queued");
    }
    dev.mir.flush().await.expect("stored");
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_is_skipped_and_counted_and_the_records_behind_it_are_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    store_offline(dir.path(), 0..5).await;
    // A record whose header is garbage, between two good ones.
    {
        let db = redb::Database::create(dir.path().join("store.redb")).expect("open");
        let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("records");
        let tx = db.begin_write().expect("tx");
        {
            let mut records = tx.open_table(table).expect("table");
            let last = records
                .last()
                .expect("last")
                .map(|(k, _)| k.value())
                .expect("a record");
            records.insert(last + 1, &[0xEE, 1, 2][..]).expect("insert");
        }
        tx.commit().expect("commit");
    }
    store_offline(dir.path(), 5..10).await;

    let broker = TestBroker::start().await;
    let dev = launch(device(broker.target(), dir.path())).await;
    dev.mir
        .wait_for_status(WAIT, |s| {
            s.connected && s.corrupt_records == 1 && s.stored_records == 0
        })
        .await
        .expect("the corrupt record counted and removed, the store empty");
    let mut ts = received_ts(&broker);
    ts.sort();
    assert_eq!(ts, (0..10).collect::<Vec<_>>());
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_file_is_moved_aside_and_a_new_store_is_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("store.redb"), vec![0x5A; 64 * 1024]).expect("garbage");
    let store = RedbStore::open(dir.path()).expect("a new store");
    let aside = store.moved_aside().expect("moved aside").to_path_buf();
    assert_eq!(std::fs::read(&aside).expect("kept"), vec![0x5A; 64 * 1024]);
    assert_eq!(store.stats().records, 0);
    drop(store);

    // The device on a corrupt file: the file is moved aside, replay works.
    std::fs::write(dir.path().join("store.redb"), b"not a database at all").expect("garbage");
    store_offline(dir.path(), 0..3).await;
    let broker = TestBroker::start().await;
    let dev = launch(device(broker.target(), dir.path())).await;
    assert_eq!(dev.mir.status().store, StoreHealth::Durable);
    dev.mir
        .wait_for_status(WAIT, |s| s.connected && s.stored_records == 0)
        .await
        .expect("replayed");
    let mut ts = received_ts(&broker);
    ts.sort();
    assert_eq!(ts, vec![0, 1, 2]);
    let moved = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("store.redb.corrupt-")
        })
        .count();
    assert_eq!(moved, 2, "both corrupt files kept aside");
    dev.stop().await;
}
