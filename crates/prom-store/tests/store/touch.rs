//! Recording when keys were last used: batched, and only ever forward in time.

use prom_core::id::KeyId;
use prom_core::store::KeyStore;
use prom_core::time::Timestamp;
use prom_store::SqlStore;

use crate::support::{Owner, hasher, insert_key, owner_of, shift};

async fn last_used(store: &SqlStore, owner: &Owner, id: &KeyId) -> Option<Timestamp> {
    store.get_key(owner.tenant_id(), id).await.unwrap().unwrap().last_used_at
}

async fn touch_keys_only_moves_forward(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let hasher = hasher();
    let t0 = Timestamp::now();
    let (_, first) = insert_key(&store, &hasher, &owner, "first", t0).await;
    let (_, second) = insert_key(&store, &hasher, &owner, "second", shift(t0, 1)).await;

    store.touch_keys(&[]).await.unwrap();
    assert_eq!(last_used(&store, &owner, &first.id).await, None);

    store.touch_keys(&[(first.id.clone(), shift(t0, 10_000))]).await.unwrap();
    assert_eq!(last_used(&store, &owner, &first.id).await, Some(shift(t0, 10_000)));
    assert_eq!(last_used(&store, &owner, &second.id).await, None, "only the touched key changes");

    store.touch_keys(&[(first.id.clone(), shift(t0, 5_000))]).await.unwrap();
    assert_eq!(last_used(&store, &owner, &first.id).await, Some(shift(t0, 10_000)), "an older use must not win");

    // One batch with both keys, one of them twice and out of order.
    let batch = [
        (first.id.clone(), shift(t0, 30_000)),
        (second.id.clone(), shift(t0, 2_000)),
        (first.id.clone(), shift(t0, 25_000)),
    ];
    store.touch_keys(&batch).await.unwrap();
    assert_eq!(last_used(&store, &owner, &first.id).await, Some(shift(t0, 30_000)));
    assert_eq!(last_used(&store, &owner, &second.id).await, Some(shift(t0, 2_000)));
}

async fn touching_a_vanished_key_is_harmless(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let hasher = hasher();
    let t0 = Timestamp::now();
    let (_, key) = insert_key(&store, &hasher, &owner, "agent", t0).await;

    // The flusher's batch may name keys deleted meanwhile, or never stored: the rest still lands.
    store.touch_keys(&[(KeyId::new(), shift(t0, 1_000)), (key.id.clone(), shift(t0, 1_000))]).await.unwrap();
    assert_eq!(last_used(&store, &owner, &key.id).await, Some(shift(t0, 1_000)));
}

store_tests!(touch_keys_only_moves_forward, touching_a_vanished_key_is_harmless);
