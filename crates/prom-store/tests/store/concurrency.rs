//! Concurrent writers: conditional updates make racing changes land once, and on SQLite the
//! single-writer pool queues writers instead of failing them with `SQLITE_BUSY`.

use prom_core::audit::AuditAction;
use prom_core::store::{AuditStore, KeyStore, StoreError};
use prom_core::time::Timestamp;
use prom_store::SqlStore;
use tokio::task::JoinSet;

use crate::support::{by_key_and_action, hasher, insert_key, new_key, owner_of, shift};

const RACERS: i64 = 20;

async fn concurrent_revocations_write_one_audit_row(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let t0 = Timestamp::now();
    let (_, key) = insert_key(&store, &hasher(), &owner, "agent", t0).await;

    let mut racers = JoinSet::new();
    for n in 1..=RACERS {
        let (store, tenant, id, ctx) = (store.clone(), owner.tenant.id.clone(), key.id.clone(), owner.ctx());
        racers.spawn(async move { store.revoke_key(&tenant, &id, shift(t0, n), &ctx).await });
    }
    let results = racers.join_all().await;

    let records: Vec<_> = results.into_iter().map(|result| result.unwrap()).collect();
    assert_eq!(records.len(), RACERS as usize);
    let winner = records[0].revoked_at.unwrap();
    assert!(records.iter().all(|record| record.revoked_at == Some(winner)), "all callers see the one revocation");

    let events = store.list_audit(owner.tenant_id(), &by_key_and_action(&key.id, AuditAction::ApiKeyRevoke)).await;
    let events = events.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].at, winner);
    assert_eq!(store.get_key(owner.tenant_id(), &key.id).await.unwrap().unwrap().revoked_at, Some(winner));
}

async fn concurrent_deletions_succeed_once(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let t0 = Timestamp::now();
    let (_, key) = insert_key(&store, &hasher(), &owner, "agent", t0).await;

    let mut racers = JoinSet::new();
    for n in 1..=RACERS {
        let (store, tenant, id, ctx) = (store.clone(), owner.tenant.id.clone(), key.id.clone(), owner.ctx());
        racers.spawn(async move { store.delete_key(&tenant, &id, shift(t0, n), &ctx).await });
    }
    let results = racers.join_all().await;

    let deleted = results.iter().filter(|result| result.is_ok()).count();
    let not_found = results.iter().filter(|result| matches!(result, Err(StoreError::NotFound))).count();
    assert_eq!((deleted, not_found), (1, RACERS as usize - 1), "{results:?}");
    let events = store.list_audit(owner.tenant_id(), &by_key_and_action(&key.id, AuditAction::ApiKeyDelete)).await;
    assert_eq!(events.unwrap().len(), 1);
}

async fn concurrent_inserts_all_land(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let hasher = hasher();
    let t0 = Timestamp::now();

    let mut writers = JoinSet::new();
    for n in 0..RACERS {
        let (_, key) = new_key(&hasher, &owner, &format!("agent {n}"), shift(t0, n));
        let (store, ctx) = (store.clone(), owner.ctx());
        writers.spawn(async move { store.insert_key(key, &ctx).await });
    }
    // Readers alongside the writers must neither fail nor block them.
    let mut readers = JoinSet::new();
    for _ in 0..RACERS {
        let (store, tenant) = (store.clone(), owner.tenant.id.clone());
        readers.spawn(async move { store.list_keys(&tenant).await.map(|keys| keys.len()) });
    }

    let inserted: Vec<_> = writers.join_all().await.into_iter().map(|result| result.unwrap()).collect();
    for seen in readers.join_all().await {
        assert!(seen.unwrap() <= RACERS as usize);
    }
    let mut listed = store.list_keys(owner.tenant_id()).await.unwrap();
    assert_eq!(listed.len(), RACERS as usize);
    listed.reverse();
    let mut expected = inserted;
    expected.sort_by_key(|key| key.created_at);
    assert_eq!(listed, expected);
}

store_tests!(
    concurrent_revocations_write_one_audit_row,
    concurrent_deletions_succeed_once,
    concurrent_inserts_all_land,
);
