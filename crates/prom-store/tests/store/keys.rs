//! API key lifecycle: insert and read back, list, revoke, delete, duplicate digests.

use prom_core::access::Scope;
use prom_core::audit::{AuditAction, AuditTarget};
use prom_core::id::KeyId;
use prom_core::key::{Environment, PlainKey};
use prom_core::store::{AuditStore, KeyRecord, KeyStatus, KeyStore, StoreError};
use prom_core::time::Timestamp;
use prom_store::SqlStore;
use serde_json::json;

use crate::support::{actions, by_key, by_key_and_action, everything, hasher, insert_key, new_key, owner_of, shift};

async fn inserted_key_reads_back_the_same_everywhere(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let hasher = hasher();
    let now = Timestamp::now();
    let (plain, record) = insert_key(&store, &hasher, &owner, "claude-desktop laptop", now).await;

    assert!(record.display().starts_with("prom_live_..."), "{}", record.display());
    assert_eq!(record.display(), plain.display());
    assert_eq!(record.last4, plain.last4());
    assert_eq!(record.tenant_id, owner.tenant.id);
    assert_eq!(record.label.as_str(), "claude-desktop laptop");
    assert_eq!(record.environment, Environment::Live);
    assert_eq!(record.scopes, vec![Scope::AgentConnect]);
    assert_eq!(record.created_by.as_ref(), Some(&owner.user.id));
    assert_eq!(record.created_at, now);
    assert_eq!(record.status(now), KeyStatus::Active);

    assert_eq!(store.get_key(owner.tenant_id(), &record.id).await.unwrap(), Some(record.clone()));
    assert_eq!(store.list_keys(owner.tenant_id()).await.unwrap(), vec![record.clone()]);
    assert_eq!(store.find_key_by_digest(&hasher.digest(&plain).unwrap()).await.unwrap(), Some(record.clone()));
    let stranger = PlainKey::mint(Environment::Live);
    assert_eq!(store.find_key_by_digest(&hasher.digest(&stranger).unwrap()).await.unwrap(), None);
    assert_eq!(store.get_key(owner.tenant_id(), &KeyId::new()).await.unwrap(), None);

    let events = store.list_audit(owner.tenant_id(), &by_key(&record.id)).await.unwrap();
    assert_eq!(actions(&events), ["api_key.create"]);
    assert_eq!(events[0].target, Some(AuditTarget::api_key(&record.id, "claude-desktop laptop")));
    assert_eq!(events[0].details["display"], json!(plain.display()));
    assert_eq!(events[0].actor.id.as_deref(), Some(owner.user.id.as_str()));
    let everything_logged = format!("{:?}", store.list_audit(owner.tenant_id(), &everything()).await.unwrap());
    assert!(
        !everything_logged.contains(&plain.expose()["prom_live_".len()..]),
        "the audit log must never hold key material"
    );
}

async fn list_is_newest_first_and_skips_deleted(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let hasher = hasher();
    let t0 = Timestamp::now();
    let (_, oldest) = insert_key(&store, &hasher, &owner, "oldest", t0).await;
    let (_, middle) = insert_key(&store, &hasher, &owner, "middle", shift(t0, 1_000)).await;
    let (_, newest) = insert_key(&store, &hasher, &owner, "newest", shift(t0, 2_000)).await;
    let ids = |keys: Vec<KeyRecord>| keys.into_iter().map(|k| k.id).collect::<Vec<_>>();

    let listed = store.list_keys(owner.tenant_id()).await.unwrap();
    assert_eq!(ids(listed), [newest.id.clone(), middle.id.clone(), oldest.id.clone()]);

    store.revoke_key(owner.tenant_id(), &oldest.id, shift(t0, 3_000), &owner.ctx()).await.unwrap();
    store.delete_key(owner.tenant_id(), &middle.id, shift(t0, 3_000), &owner.ctx()).await.unwrap();
    let listed = store.list_keys(owner.tenant_id()).await.unwrap();
    assert_eq!(ids(listed), [newest.id, oldest.id], "revoked keys stay listed, deleted ones do not");
}

async fn revoke_is_idempotent(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let hasher = hasher();
    let t0 = Timestamp::now();
    let (plain, key) = insert_key(&store, &hasher, &owner, "agent", t0).await;
    let revoked_at = shift(t0, 1_000);

    let revoked = store.revoke_key(owner.tenant_id(), &key.id, revoked_at, &owner.ctx()).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(revoked_at));
    assert_eq!(revoked.status(revoked_at), KeyStatus::Revoked);
    assert_eq!(revoked.id, key.id);

    let again = store.revoke_key(owner.tenant_id(), &key.id, shift(t0, 2_000), &owner.ctx()).await.unwrap();
    assert_eq!(again, revoked, "a second revocation changes nothing");
    assert_eq!(store.get_key(owner.tenant_id(), &key.id).await.unwrap(), Some(revoked.clone()));
    assert_eq!(store.find_key_by_digest(&hasher.digest(&plain).unwrap()).await.unwrap(), Some(revoked));

    let events = store.list_audit(owner.tenant_id(), &by_key(&key.id)).await.unwrap();
    assert_eq!(actions(&events), ["api_key.revoke", "api_key.create"]);
    assert_eq!(events[0].at, revoked_at);
    assert_eq!(events[0].details["display"], json!(plain.display()));
}

async fn delete_hides_the_key_but_digest_lookup_explains(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let hasher = hasher();
    let t0 = Timestamp::now();
    let (plain, key) = insert_key(&store, &hasher, &owner, "agent", t0).await;
    let deleted_at = shift(t0, 1_000);

    let deleted = store.delete_key(owner.tenant_id(), &key.id, deleted_at, &owner.ctx()).await.unwrap();
    assert_eq!(deleted.deleted_at, Some(deleted_at));
    assert_eq!(deleted.status(deleted_at), KeyStatus::Deleted);

    assert_eq!(store.get_key(owner.tenant_id(), &key.id).await.unwrap(), None);
    assert!(store.list_keys(owner.tenant_id()).await.unwrap().is_empty());
    let found = store.find_key_by_digest(&hasher.digest(&plain).unwrap()).await.unwrap().unwrap();
    assert_eq!(found, deleted, "a presented deleted key is found, so the caller can say why it is refused");
    assert_eq!(found.status(Timestamp::now()), KeyStatus::Deleted);

    let later = shift(t0, 2_000);
    let second = store.delete_key(owner.tenant_id(), &key.id, later, &owner.ctx()).await;
    assert!(matches!(second, Err(StoreError::NotFound)), "{second:?}");
    let revoke = store.revoke_key(owner.tenant_id(), &key.id, later, &owner.ctx()).await;
    assert!(matches!(revoke, Err(StoreError::NotFound)), "{revoke:?}");
    let found = store.find_key_by_digest(&hasher.digest(&plain).unwrap()).await.unwrap().unwrap();
    assert_eq!(found.deleted_at, Some(deleted_at));
    assert_eq!(found.revoked_at, None);

    let events = store.list_audit(owner.tenant_id(), &by_key(&key.id)).await.unwrap();
    assert_eq!(actions(&events), ["api_key.delete", "api_key.create"], "the key's history stays after deletion");
    assert_eq!(events[0].details, json!({ "display": plain.display(), "was_revoked": false }));
}

async fn duplicate_digest_is_a_conflict(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let hasher = hasher();
    let t0 = Timestamp::now();
    let (plain, first) = insert_key(&store, &hasher, &owner, "first", t0).await;

    let (_, mut copy) = new_key(&hasher, &owner, "copy", shift(t0, 1_000));
    copy.digest = hasher.digest(&plain).unwrap();
    let copy_id = copy.id.clone();
    let result = store.insert_key(copy, &owner.ctx()).await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");

    assert_eq!(store.list_keys(owner.tenant_id()).await.unwrap(), vec![first.clone()]);
    assert_eq!(store.find_key_by_digest(&hasher.digest(&plain).unwrap()).await.unwrap(), Some(first));
    let events = store.list_audit(owner.tenant_id(), &by_key_and_action(&copy_id, AuditAction::ApiKeyCreate)).await;
    assert!(events.unwrap().is_empty(), "the refused key's audit row must roll back with it");
}

async fn keys_page_newest_first_with_their_count(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let rival = owner_of(&store, "rival").await;
    let hasher = hasher();
    let t0 = Timestamp::now();
    let mut keys = Vec::new();
    for n in 0..7 {
        // Two keys share each instant: the order between them is by id, newest first still.
        let (_, key) = insert_key(&store, &hasher, &acme, &format!("key {n}"), shift(t0, n / 2)).await;
        keys.push(key);
    }
    insert_key(&store, &hasher, &rival, "rival", t0).await;
    store.delete_key(acme.tenant_id(), &keys[3].id, t0, &acme.ctx()).await.unwrap();
    store.revoke_key(acme.tenant_id(), &keys[4].id, t0, &acme.ctx()).await.unwrap();

    let listed = store.list_keys(acme.tenant_id()).await.unwrap();
    assert_eq!(listed.len(), 6);
    let mut paged = Vec::new();
    for offset in [0, 4, 8] {
        let (page, total) = store.list_keys_page(acme.tenant_id(), offset, 4).await.unwrap();
        assert_eq!(total, 6, "the count of live keys, whatever the page");
        paged.extend(page);
    }
    assert_eq!(paged, listed, "the pages are the list, in its order");
    assert!(paged.windows(2).all(|pair| (pair[0].created_at, &pair[0].id) > (pair[1].created_at, &pair[1].id)));
    assert!(paged.iter().all(|key| key.id != keys[3].id), "deleted keys are not listed");

    let (empty, total) = store.list_keys_page(acme.tenant_id(), 0, 0).await.unwrap();
    assert_eq!((empty.len(), total), (0, 6));
    let (none, total) = store.list_keys_page(&prom_core::id::TenantId::new(), 0, 10).await.unwrap();
    assert_eq!((none.len(), total), (0, 0));
}

store_tests!(
    keys_page_newest_first_with_their_count,
    inserted_key_reads_back_the_same_everywhere,
    list_is_newest_first_and_skips_deleted,
    revoke_is_idempotent,
    delete_hides_the_key_but_digest_lookup_explains,
    duplicate_digest_is_a_conflict,
);
