//! The embedded database copies its write-ahead log into the database file in the background
//! (commits no longer checkpoint, and fsync, themselves; they only would past a large fallback).

use prom_store::{Database, SqlStore};

use crate::support::owner_of;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_is_checkpointed_and_reused_without_a_commit_checkpointing() {
    let dir = tempfile::TempDir::new().unwrap();
    let wal = dir.path().join("store.sqlite3-wal");
    let store = SqlStore::open(&Database::Sqlite { path: dir.path().join("store.sqlite3") }).await.unwrap();
    let wal_size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    // Two equal rounds of writes (a few thousand WAL pages each, below the commit-time fallback
    // of 16384) with a pause between them. Once the first round is checkpointed, SQLite writes the
    // second one from the start of the log again; if nothing checkpointed, the log grows by a
    // second round's worth.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for n in 0..100 {
        owner_of(&store, &format!("first-{n}")).await;
    }
    let after_first = wal_size();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    for n in 0..100 {
        owner_of(&store, &format!("second-{n}")).await;
    }
    let after_second = wal_size();
    assert!(after_first > 0);
    assert!(
        after_second < after_first + after_first / 2,
        "the log grew from {after_first} to {after_second} bytes: the first round was never checkpointed"
    );
    store.close().await;
}
