//! Key rotation: a new key replaces an old one, which stops working now or after a grace period.

use prom_core::audit::AuditAction;
use prom_core::id::KeyId;
use prom_core::store::{AuditStore, KeyStatus, KeyStore, StoreError};
use prom_core::time::Timestamp;
use prom_store::SqlStore;
use serde_json::json;

use crate::support::{actions, by_action, by_key, hasher, insert_key, new_key, owner_of, shift};

async fn rotation_without_grace_expires_the_old_key_now(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let hasher = hasher();
    let t0 = Timestamp::now();
    let (old_plain, old) = insert_key(&store, &hasher, &owner, "agent", t0).await;
    let now = shift(t0, 1_000);
    let (new_plain, replacement) = new_key(&hasher, &owner, "agent (rotated)", now);

    let (old_after, new) = store.rotate_key(owner.tenant_id(), &old.id, replacement, now, &owner.ctx()).await.unwrap();

    assert_eq!(old_after.id, old.id);
    assert_eq!(old_after.expires_at, Some(now));
    assert_eq!(old_after.status(now), KeyStatus::Expired);
    assert_eq!(new.rotated_from, Some(old.id.clone()));
    assert_eq!(new.status(now), KeyStatus::Active);
    assert_eq!(new.display(), new_plain.display());

    assert_eq!(store.get_key(owner.tenant_id(), &old.id).await.unwrap(), Some(old_after.clone()));
    assert_eq!(store.find_key_by_digest(&hasher.digest(&old_plain).unwrap()).await.unwrap(), Some(old_after.clone()));
    assert_eq!(store.find_key_by_digest(&hasher.digest(&new_plain).unwrap()).await.unwrap(), Some(new.clone()));
    assert_eq!(store.list_keys(owner.tenant_id()).await.unwrap(), vec![new.clone(), old_after]);

    let new_events = store.list_audit(owner.tenant_id(), &by_key(&new.id)).await.unwrap();
    assert_eq!(actions(&new_events), ["api_key.create"]);
    assert_eq!(new_events[0].details["rotated_from"], json!(old.id.as_str()));
    let old_events = store.list_audit(owner.tenant_id(), &by_key(&old.id)).await.unwrap();
    assert_eq!(actions(&old_events), ["api_key.rotate", "api_key.create"]);
    assert_eq!(old_events[0].details["new_key_id"], json!(new.id.as_str()));
    assert_eq!(old_events[0].at, now);
}

async fn rotation_with_grace_keeps_the_old_key_until_then(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let hasher = hasher();
    let now = Timestamp::now();
    let (_, old) = insert_key(&store, &hasher, &owner, "agent", shift(now, -1_000)).await;
    let grace_end = now.plus_seconds(3600);
    let (_, replacement) = new_key(&hasher, &owner, "agent (rotated)", now);

    let (old_after, new) =
        store.rotate_key(owner.tenant_id(), &old.id, replacement, grace_end, &owner.ctx()).await.unwrap();

    assert_eq!(old_after.expires_at, Some(grace_end));
    assert_eq!(old_after.status(now), KeyStatus::Active);
    assert_eq!(old_after.status(shift(grace_end, -1)), KeyStatus::Active);
    assert_eq!(old_after.status(grace_end), KeyStatus::Expired);
    assert_eq!(new.status(now), KeyStatus::Active);
    let stored = store.get_key(owner.tenant_id(), &old.id).await.unwrap().unwrap();
    assert_eq!(stored.status(Timestamp::now()), KeyStatus::Active);
    assert_eq!(stored.expires_at, Some(grace_end));
}

async fn rotating_a_revoked_key_is_a_conflict(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let hasher = hasher();
    let t0 = Timestamp::now();
    let (_, old) = insert_key(&store, &hasher, &owner, "agent", t0).await;
    let revoked = store.revoke_key(owner.tenant_id(), &old.id, shift(t0, 1), &owner.ctx()).await.unwrap();
    let (_, replacement) = new_key(&hasher, &owner, "agent (rotated)", shift(t0, 2));

    let result = store.rotate_key(owner.tenant_id(), &old.id, replacement, shift(t0, 2), &owner.ctx()).await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");

    assert_eq!(store.list_keys(owner.tenant_id()).await.unwrap(), vec![revoked], "no replacement was stored");
    let rotations = store.list_audit(owner.tenant_id(), &by_action(AuditAction::ApiKeyRotate)).await.unwrap();
    assert!(rotations.is_empty(), "{rotations:?}");
}

async fn rotating_an_unknown_or_deleted_key_is_not_found(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let hasher = hasher();
    let t0 = Timestamp::now();

    let (_, replacement) = new_key(&hasher, &owner, "replacement", t0);
    let result = store.rotate_key(owner.tenant_id(), &KeyId::new(), replacement, t0, &owner.ctx()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");

    let (_, old) = insert_key(&store, &hasher, &owner, "agent", t0).await;
    store.delete_key(owner.tenant_id(), &old.id, shift(t0, 1), &owner.ctx()).await.unwrap();
    let (_, replacement) = new_key(&hasher, &owner, "replacement", shift(t0, 2));
    let result = store.rotate_key(owner.tenant_id(), &old.id, replacement, shift(t0, 2), &owner.ctx()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");

    assert!(store.list_keys(owner.tenant_id()).await.unwrap().is_empty());
    let rotations = store.list_audit(owner.tenant_id(), &by_action(AuditAction::ApiKeyRotate)).await.unwrap();
    assert!(rotations.is_empty(), "{rotations:?}");
}

store_tests!(
    rotation_without_grace_expires_the_old_key_now,
    rotation_with_grace_keeps_the_old_key_until_then,
    rotating_a_revoked_key_is_a_conflict,
    rotating_an_unknown_or_deleted_key_is_not_found,
);
