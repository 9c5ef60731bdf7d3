//! The embedded database's background work: it copies its write-ahead log into the database file
//! (commits no longer checkpoint, and fsync, themselves; they only would past a large fallback),
//! and folds the charge journal into the charges and budgets.

use prom_core::charge::{ChargeState, NewCharge, ResolvedCharge};
use prom_core::id::{ChargeId, KeyId, TenantId};
use prom_core::money::Amount;
use prom_core::service::ServiceSlug;
use prom_core::store::{BudgetStore, ChargeStore};
use prom_core::time::Timestamp;
use prom_store::{Database, SqlStore};

use crate::support::{hasher, insert_key, owner_of, service_slug};

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

/// Charges of the embedded database are journaled (a line per batch, in a file beside it) and
/// folded into `charges` and the budgets in the background, with no read needed; a journal left
/// by a process that died before folding it is folded when the database is next opened, without
/// its torn last batch and without counting anything twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charge_journal_is_folded_in_the_background_and_at_the_next_start() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("store.sqlite3");
    let database = Database::Sqlite { path: path.clone() };
    let journal = dir.path().join("store.sqlite3-charges");
    let store = SqlStore::open(&database).await.unwrap();
    let (tenant, alpha, key) = approved_budget(&store, 100).await;
    let resolved = |amount, state| ended(&tenant, &alpha, &key, amount, state);
    let raw = sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&path)).await.unwrap();
    let count = || {
        let raw = raw.clone();
        async move { sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM charges").fetch_one(&raw).await.unwrap() }
    };
    let unsettled = || {
        let raw = raw.clone();
        async move { sqlx::query_scalar::<_, String>("SELECT unsettled FROM budgets").fetch_one(&raw).await.unwrap() }
    };

    // In the background: the journal is folded into the charges without anyone reading a budget.
    let batch = [resolved(3, ChargeState::Captured), resolved(2, ChargeState::Released)];
    store.record_resolved(&batch, &[], Timestamp::now()).await.unwrap();
    assert!(std::fs::metadata(&journal).unwrap().len() > 0, "the batch is in the journal");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while count().await < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the charge journal was not folded within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(unsettled().await, "3", "only the capture is owed");

    // A process killed with charges in its journal: a batch already folded (a fold commits, then
    // the process dies before cutting the journal), its last complete batch (one capture of 4),
    // then the start of a batch it was writing when it died (no newline: never answered).
    store.close().await;
    drop(store);
    assert_eq!(std::fs::metadata(&journal).unwrap().len(), 0, "a journal folded up to its end is cut");
    let line = |id: &str, amount: u128| {
        format!(
            "[{{\"id\":\"{id}\",\"tenant\":\"{tenant}\",\"service\":\"alpha\",\"key\":\"{key}\",\
             \"tool\":\"fortune\",\"amount\":\"{amount}\",\"state\":\"captured\",\"at\":0,\"resolved_at\":0}}]\n"
        )
    };
    let last = ended(&tenant, &alpha, &key, 4, ChargeState::Captured);
    let killed = line(batch[0].charge.id.as_str(), 3) + &line(last.charge.id.as_str(), 4) + "[{\"id\":\"torn";
    std::fs::write(&journal, killed).unwrap();

    // The next open folds it before anything else runs: the old batches count nothing again, the
    // last one counts once, the torn one not at all.
    let store = SqlStore::open(&database).await.unwrap();
    assert_eq!((count().await, unsettled().await), (3, "7".to_owned()));
    assert_eq!(store.budget(&tenant, &alpha).await.unwrap().unsettled, Amount::new(7));
    // And the journal takes new batches on lines of their own.
    store.record_resolved(&[resolved(5, ChargeState::Captured)], &[], Timestamp::now()).await.unwrap();
    assert_eq!(store.budget(&tenant, &alpha).await.unwrap().unsettled, Amount::new(12));
    store.close().await;
    drop(store);
    let store = SqlStore::open(&database).await.unwrap();
    assert_eq!(store.budget(&tenant, &alpha).await.unwrap().unsettled, Amount::new(12), "nothing counted twice");
    assert_eq!(count().await, 4);
    store.close().await;
    raw.close().await;
}

/// A journal past its size limit is renamed aside, folded and deleted, and a new one started; a
/// journal renamed aside by a process that died before deleting it is folded at the next open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_journal_is_rotated_without_losing_or_repeating_a_charge() {
    let dir = tempfile::TempDir::new().unwrap();
    let database = Database::Sqlite { path: dir.path().join("store.sqlite3") };
    let journal = dir.path().join("store.sqlite3-charges");
    let old = dir.path().join("store.sqlite3-charges.old");
    let store = SqlStore::open(&database).await.unwrap();
    store.rotate_journal_at(1_000);
    let (tenant, alpha, key) = approved_budget(&store, 1_000_000).await;
    let mut total = 0;
    for round in 1..=20u128 {
        let batch: Vec<ResolvedCharge> =
            (0..5).map(|_| ended(&tenant, &alpha, &key, round, ChargeState::Captured)).collect();
        store.record_resolved(&batch, &[], Timestamp::now()).await.unwrap();
        total += 5 * round;
        if round % 3 == 0 {
            assert_eq!(store.budget(&tenant, &alpha).await.unwrap().unsettled, Amount::new(total));
            assert!(!old.exists(), "a rotated journal is deleted once folded");
        }
    }
    // A process that died between renaming a journal aside and deleting it (here: the live one,
    // copied aside after its fold, plus one more batch appended to the new one).
    store
        .record_resolved(&[ended(&tenant, &alpha, &key, 7, ChargeState::Captured)], &[], Timestamp::now())
        .await
        .unwrap();
    total += 7;
    assert_eq!(store.budget(&tenant, &alpha).await.unwrap().unsettled, Amount::new(total));
    store.close().await;
    drop(store);
    std::fs::copy(&journal, &old).unwrap();
    let store = SqlStore::open(&database).await.unwrap();
    assert!(!old.exists());
    assert_eq!(store.budget(&tenant, &alpha).await.unwrap().unsettled, Amount::new(total));
    store.close().await;
}

/// Another process opening the database while the server journals charges (`prom admin …` does)
/// neither fails nor folds nor writes the journal (the server owns it), so no charge goes missing
/// or counts twice; with the server gone, the next process to open it folds what it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_the_database_during_paid_load_neither_fails_nor_loses_charges() {
    let dir = tempfile::TempDir::new().unwrap();
    let database = Database::Sqlite { path: dir.path().join("store.sqlite3") };
    let server = SqlStore::open(&database).await.unwrap();
    let (tenant, alpha, key) = approved_budget(&server, 1_000_000).await;
    const CALLS: u128 = 400;
    let writer = {
        let (server, tenant, alpha, key) = (server.clone(), tenant.clone(), alpha.clone(), key.clone());
        tokio::spawn(async move {
            for _ in 0..CALLS {
                let batch = [ended(&tenant, &alpha, &key, 1, ChargeState::Captured)];
                server.record_resolved(&batch, &[], Timestamp::now()).await.unwrap();
            }
        })
    };
    let mut opened = 0;
    while !writer.is_finished() {
        let other = SqlStore::open(&database).await.expect("opening during paid load");
        other.close().await;
        opened += 1;
    }
    writer.await.unwrap();
    assert!(opened > 0);
    let other = SqlStore::open(&database).await.unwrap();
    let batch = [ended(&tenant, &alpha, &key, 1, ChargeState::Captured)];
    assert!(other.record_resolved(&batch, &[], Timestamp::now()).await.is_err(), "only the owner journals");
    other.close().await;
    assert_eq!(server.budget(&tenant, &alpha).await.unwrap().unsettled, Amount::new(CALLS));
    server.close().await;
    let after = SqlStore::open(&database).await.unwrap();
    assert_eq!(after.budget(&tenant, &alpha).await.unwrap().unsettled, Amount::new(CALLS));
    after.close().await;
}

/// Opening the database takes the journal only for a moment: the first process to journal a
/// charge owns it, another is refused while it lives, and takes it over once it is gone — cutting
/// off the torn batch it may have left before appending its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_taking_the_journal_over_cuts_a_torn_batch_before_appending() {
    let dir = tempfile::TempDir::new().unwrap();
    let database = Database::Sqlite { path: dir.path().join("store.sqlite3") };
    let journal = dir.path().join("store.sqlite3-charges");
    // Opened first and kept open (as `prom admin …` would be), but never journaling: it does not
    // keep the journal from the others.
    let reader = SqlStore::open(&database).await.unwrap();
    let first = SqlStore::open(&database).await.unwrap();
    let (tenant, alpha, key) = approved_budget(&first, 1_000).await;
    let second = SqlStore::open(&database).await.unwrap();
    let one = |amount| [ended(&tenant, &alpha, &key, amount, ChargeState::Captured)];

    // The first journals a batch (and owns the journal from then on), then dies while writing the
    // next one.
    first.record_resolved(&one(2), &[], Timestamp::now()).await.unwrap();
    assert!(second.record_resolved(&one(1), &[], Timestamp::now()).await.is_err(), "the first owns the journal");
    let mut left = std::fs::read(&journal).unwrap();
    first.close().await;
    left.extend_from_slice(b"[{\"id\":\"torn");
    std::fs::write(&journal, &left).unwrap();

    second.record_resolved(&one(3), &[], Timestamp::now()).await.unwrap();
    assert_eq!(second.budget(&tenant, &alpha).await.unwrap().unsettled, Amount::new(5));
    second.close().await;
    reader.close().await;
}

/// A tenant with a key and an approved budget for service `alpha`.
async fn approved_budget(store: &SqlStore, approved: u128) -> (TenantId, ServiceSlug, KeyId) {
    let acme = owner_of(store, "acme").await;
    let (_, key) = insert_key(store, &hasher(), &acme, "agent", Timestamp::now()).await;
    let tenant = acme.tenant_id().clone();
    let alpha = service_slug("alpha");
    store.set_approved(&tenant, &alpha, Amount::new(approved), None, None, None, None).await.unwrap();
    (tenant, alpha, key.id)
}

/// A paid call of `fortune` that ended now, in `state`.
fn ended(tenant: &TenantId, service: &ServiceSlug, key: &KeyId, amount: u128, state: ChargeState) -> ResolvedCharge {
    let charge = NewCharge {
        id: ChargeId::new(),
        tenant_id: tenant.clone(),
        service: service.clone(),
        key_id: key.clone(),
        tool: "fortune".into(),
        amount: Amount::new(amount),
        at: Timestamp::now(),
        cap: None,
    };
    ResolvedCharge { charge, state, resolved_at: Timestamp::now() }
}
