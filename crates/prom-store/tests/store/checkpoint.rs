//! The embedded database's background work: it copies its write-ahead log into the database file
//! (commits no longer checkpoint, and fsync, themselves; they only would past a large fallback),
//! and folds the charge log into the charges and budgets.

use prom_core::charge::{ChargeState, NewCharge, ResolvedCharge};
use prom_core::id::{ChargeId, KeyId, TenantId};
use prom_core::money::Amount;
use prom_core::service::ServiceSlug;
use prom_core::store::ChargeStore;
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

/// Charges of the embedded database are appended to the charge log and folded into `charges` and
/// the budgets in the background, with no read needed; a log left by a process that died before
/// folding it is folded when the database is next opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charge_log_is_folded_in_the_background_and_at_the_next_start() {
    let dir = tempfile::TempDir::new().unwrap();
    let database = Database::Sqlite { path: dir.path().join("store.sqlite3") };
    let store = SqlStore::open(&database).await.unwrap();
    let (tenant, alpha, key) = approved_budget(&store, 100).await;
    let resolved = |amount, state| ended(&tenant, &alpha, &key, amount, state);
    let raw = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("store.sqlite3")),
    )
    .await
    .unwrap();
    let count = |table: &'static str| {
        let raw = raw.clone();
        async move { sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&raw).await.unwrap() }
    };

    // In the background: the log empties into the charges without anyone reading a budget.
    let batch = [resolved(3, ChargeState::Captured), resolved(2, ChargeState::Released)];
    store.record_resolved(&batch, &[], Timestamp::now()).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while count("charge_log").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the charge log was not folded within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(count("charges").await, 2);
    let unsettled: String = sqlx::query_scalar("SELECT unsettled FROM budgets").fetch_one(&raw).await.unwrap();
    assert_eq!(unsettled, "3", "only the capture is owed");

    // A process that dies with charges in its log (a row written as its last batch was): the next
    // open folds them before anything else runs.
    drop(store);
    sqlx::query(
        "INSERT INTO charge_log (id, tenant_id, service, key_id, tool, amount, state, created_at, resolved_at) \
         VALUES ($1, $2, 'alpha', $3, 'fortune', '4', 'captured', 0, 0)",
    )
    .bind(ChargeId::new().as_str())
    .bind(tenant.as_str())
    .bind(key.as_str())
    .execute(&raw)
    .await
    .unwrap();
    let store = SqlStore::open(&database).await.unwrap();
    assert_eq!((count("charge_log").await, count("charges").await), (0, 3));
    assert_eq!(store.budget(&tenant, &alpha).await.unwrap().unsettled, Amount::new(7));
    store.close().await;
    raw.close().await;
}

/// Another process opening the database while the server logs charges (`prom admin …` does) folds
/// the log too, safely: it takes the write lock before reading the log, so a charge logged in
/// between neither fails its open nor goes missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_the_database_during_paid_load_folds_the_log_without_failing_or_losing_charges() {
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
    while !writer.is_finished() {
        let other = SqlStore::open(&database).await.expect("opening during paid load");
        other.close().await;
    }
    writer.await.unwrap();
    assert_eq!(server.budget(&tenant, &alpha).await.unwrap().unsettled, Amount::new(CALLS));
    server.close().await;
}

/// A tenant with a key and an approved budget for service `alpha`.
async fn approved_budget(store: &SqlStore, approved: u128) -> (TenantId, ServiceSlug, KeyId) {
    let acme = owner_of(store, "acme").await;
    let (_, key) = insert_key(store, &hasher(), &acme, "agent", Timestamp::now()).await;
    let tenant = acme.tenant_id().clone();
    let alpha = service_slug("alpha");
    store.set_approved(&tenant, &alpha, Amount::new(approved), None, None).await.unwrap();
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
    };
    ResolvedCharge { charge, state, resolved_at: Timestamp::now() }
}
