//! Tenant isolation: no key id, however obtained, reaches into another tenant's keys or audit log.

use prom_core::store::{AuditStore, KeyStore, StoreError};
use prom_core::time::Timestamp;
use prom_store::SqlStore;

use crate::support::{actions, by_key, everything, hasher, insert_key, new_key, owner_of, shift};

async fn other_tenant_cannot_reach_a_key_by_id(store: SqlStore) {
    let hasher = hasher();
    let alice = owner_of(&store, "alice-co").await;
    let bob = owner_of(&store, "bob-co").await;
    let t0 = Timestamp::now();
    let (plain, key) = insert_key(&store, &hasher, &alice, "alice agent", t0).await;
    let at = shift(t0, 1_000);

    assert_eq!(store.get_key(bob.tenant_id(), &key.id).await.unwrap(), None);
    let revoke = store.revoke_key(bob.tenant_id(), &key.id, at, &bob.ctx()).await;
    assert!(matches!(revoke, Err(StoreError::NotFound)), "{revoke:?}");
    let delete = store.delete_key(bob.tenant_id(), &key.id, at, &bob.ctx()).await;
    assert!(matches!(delete, Err(StoreError::NotFound)), "{delete:?}");
    let (_, replacement) = new_key(&hasher, &bob, "bob replacement", at);
    let rotate = store.rotate_key(bob.tenant_id(), &key.id, replacement, at, &bob.ctx()).await;
    assert!(matches!(rotate, Err(StoreError::NotFound)), "{rotate:?}");

    assert_eq!(store.get_key(alice.tenant_id(), &key.id).await.unwrap(), Some(key.clone()), "alice's key is untouched");
    assert_eq!(store.find_key_by_digest(&hasher.digest(&plain).unwrap()).await.unwrap(), Some(key.clone()));
    assert_eq!(store.list_keys(alice.tenant_id()).await.unwrap(), vec![key.clone()]);
    assert!(store.list_keys(bob.tenant_id()).await.unwrap().is_empty(), "the failed rotation added no key");

    let alice_events = store.list_audit(alice.tenant_id(), &everything()).await.unwrap();
    assert_eq!(actions(&alice_events), ["api_key.create", "member.add"], "bob's attempts left no trace on alice's log");
}

async fn listings_never_cross_tenants(store: SqlStore) {
    let hasher = hasher();
    let alice = owner_of(&store, "alice-co").await;
    let bob = owner_of(&store, "bob-co").await;
    let t0 = Timestamp::now();
    let (_, alice_key) = insert_key(&store, &hasher, &alice, "alice agent", t0).await;
    let (_, bob_key) = insert_key(&store, &hasher, &bob, "bob agent", shift(t0, 1)).await;
    store.revoke_key(alice.tenant_id(), &alice_key.id, shift(t0, 2), &alice.ctx()).await.unwrap();

    assert_eq!(store.list_keys(bob.tenant_id()).await.unwrap(), vec![bob_key.clone()]);
    assert_eq!(store.list_keys(alice.tenant_id()).await.unwrap().len(), 1);

    let bob_events = store.list_audit(bob.tenant_id(), &everything()).await.unwrap();
    assert_eq!(actions(&bob_events), ["api_key.create", "member.add"]);
    assert!(bob_events.iter().all(|event| event.tenant_id.as_ref() == Some(bob.tenant_id())), "{bob_events:?}");
    let alice_key_in_bob_log = store.list_audit(bob.tenant_id(), &by_key(&alice_key.id)).await.unwrap();
    assert!(alice_key_in_bob_log.is_empty(), "{alice_key_in_bob_log:?}");

    let alice_events = store.list_audit(alice.tenant_id(), &everything()).await.unwrap();
    assert_eq!(actions(&alice_events), ["api_key.revoke", "api_key.create", "member.add"]);
    assert!(alice_events.iter().all(|event| event.tenant_id.as_ref() == Some(alice.tenant_id())));
}

store_tests!(other_tenant_cannot_reach_a_key_by_id, listings_never_cross_tenants);
