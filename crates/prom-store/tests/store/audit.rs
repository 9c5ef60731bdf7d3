//! Listing the audit log: filters, paging with `before`, the page-size clamp, and events written
//! directly with `record_audit`.

use prom_core::audit::{
    Actor, ActorView, AuditAction, AuditContext, AuditFilter, AuditTarget, MAX_AUDIT_PAGE, NewAuditEvent,
};
use prom_core::id::KeyId;
use prom_core::store::{AuditStore, KeyRecord, KeyStore};
use prom_core::time::Timestamp;
use prom_store::SqlStore;
use serde_json::json;

use crate::support::{Owner, actions, by_action, by_key, everything, hasher, insert_key, owner_of, shift, target_ids};

/// A tenant with six events: member.add, three api_key.create, one revoke (first key) and one
/// delete (second key).
async fn busy_tenant(store: &SqlStore) -> (Owner, [KeyRecord; 3]) {
    let owner = owner_of(store, "acme").await;
    let hasher = hasher();
    let t0 = Timestamp::now();
    let (_, first) = insert_key(store, &hasher, &owner, "first", t0).await;
    let (_, second) = insert_key(store, &hasher, &owner, "second", shift(t0, 1)).await;
    let (_, third) = insert_key(store, &hasher, &owner, "third", shift(t0, 2)).await;
    store.revoke_key(owner.tenant_id(), &first.id, shift(t0, 3), &owner.ctx()).await.unwrap();
    store.delete_key(owner.tenant_id(), &second.id, shift(t0, 4), &owner.ctx()).await.unwrap();
    (owner, [first, second, third])
}

async fn filters_by_action(store: SqlStore) {
    let (owner, [first, second, third]) = busy_tenant(&store).await;

    let created = store.list_audit(owner.tenant_id(), &by_action(AuditAction::ApiKeyCreate)).await.unwrap();
    assert_eq!(actions(&created), ["api_key.create"; 3]);
    assert_eq!(target_ids(&created), [third.id.as_str(), second.id.as_str(), first.id.as_str()], "newest first");

    let revoked = store.list_audit(owner.tenant_id(), &by_action(AuditAction::ApiKeyRevoke)).await.unwrap();
    assert_eq!(target_ids(&revoked), [first.id.as_str()]);
    let logins = store.list_audit(owner.tenant_id(), &by_action(AuditAction::UserLogin)).await.unwrap();
    assert!(logins.is_empty(), "{logins:?}");
}

async fn filters_by_key(store: SqlStore) {
    let (owner, [first, second, third]) = busy_tenant(&store).await;

    let events = store.list_audit(owner.tenant_id(), &by_key(&first.id)).await.unwrap();
    assert_eq!(actions(&events), ["api_key.revoke", "api_key.create"]);
    assert_eq!(target_ids(&events), [first.id.as_str(); 2]);
    let events = store.list_audit(owner.tenant_id(), &by_key(&second.id)).await.unwrap();
    assert_eq!(actions(&events), ["api_key.delete", "api_key.create"]);
    let events = store.list_audit(owner.tenant_id(), &by_key(&third.id)).await.unwrap();
    assert_eq!(actions(&events), ["api_key.create"]);
    assert!(store.list_audit(owner.tenant_id(), &by_key(&KeyId::new())).await.unwrap().is_empty());

    let both = AuditFilter { action: Some(AuditAction::ApiKeyCreate), ..by_key(&first.id) };
    assert_eq!(actions(&store.list_audit(owner.tenant_id(), &both).await.unwrap()), ["api_key.create"]);
}

async fn before_pages_through_without_gaps_or_repeats(store: SqlStore) {
    let (owner, _) = busy_tenant(&store).await;
    let all = store.list_audit(owner.tenant_id(), &everything()).await.unwrap();
    assert_eq!(all.len(), 6);

    let mut paged = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let filter = AuditFilter { before, limit: 4, ..AuditFilter::default() };
        let page = store.list_audit(owner.tenant_id(), &filter).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 4, "{page:?}");
        pages += 1;
        before = page.last().map(|event| event.id);
        paged.extend(page);
        assert!(pages <= 3, "paging does not end");
    }

    assert_eq!(pages, 2);
    let ids: Vec<i64> = paged.iter().map(|event| event.id).collect();
    assert!(ids.windows(2).all(|pair| pair[0] > pair[1]), "ids strictly decrease across pages: {ids:?}");
    assert_eq!(paged, all, "the pages together are the whole log, once");

    let filtered = AuditFilter { before: Some(all[1].id), ..by_action(AuditAction::ApiKeyCreate) };
    let older_creates = store.list_audit(owner.tenant_id(), &filtered).await.unwrap();
    assert!(older_creates.iter().all(|event| event.id < all[1].id && event.action == "api_key.create"));
}

async fn limit_is_clamped_to_one_page(store: SqlStore) {
    let (owner, _) = busy_tenant(&store).await;
    let all = store.list_audit(owner.tenant_id(), &everything()).await.unwrap();

    let zero = AuditFilter { limit: 0, ..AuditFilter::default() };
    let newest = store.list_audit(owner.tenant_id(), &zero).await.unwrap();
    assert_eq!(newest, all[..1], "a zero limit still returns the newest event");

    // More events than one page holds: a huge limit is cut to the page size.
    let extra = MAX_AUDIT_PAGE as usize + 5 - all.len();
    for n in 0..extra {
        store.record_audit(use_event(&owner, &KeyId::new(), n)).await.unwrap();
    }
    let huge = AuditFilter { limit: u32::MAX, ..AuditFilter::default() };
    let page = store.list_audit(owner.tenant_id(), &huge).await.unwrap();
    assert_eq!(page.len(), MAX_AUDIT_PAGE as usize);
    let rest = AuditFilter { before: page.last().map(|event| event.id), ..huge };
    assert_eq!(store.list_audit(owner.tenant_id(), &rest).await.unwrap().len(), 5);
}

fn use_event(owner: &Owner, key_id: &KeyId, n: usize) -> NewAuditEvent {
    NewAuditEvent {
        at: Timestamp::now(),
        tenant_id: Some(owner.tenant.id.clone()),
        action: AuditAction::ApiKeyUse,
        context: AuditContext {
            actor: Actor::ApiKey { id: key_id.clone(), display: "prom_live_...ab12".into() },
            ip: Some("198.51.100.4".into()),
            user_agent: Some("agent/1.0".into()),
        },
        target: Some(AuditTarget::api_key(key_id, "agent")),
        details: json!({ "tool": "search", "n": n, "nested": { "ok": true } }),
    }
}

async fn recorded_events_read_back_whole(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let key_id = KeyId::new();
    let event = use_event(&owner, &key_id, 7);
    store.record_audit(event.clone()).await.unwrap();

    let listed = store.list_audit(owner.tenant_id(), &by_action(AuditAction::ApiKeyUse)).await.unwrap();
    assert_eq!(listed.len(), 1);
    let stored = &listed[0];
    assert_eq!(stored.at, event.at);
    assert_eq!(stored.tenant_id.as_ref(), Some(owner.tenant_id()));
    assert_eq!(stored.action, "api_key.use");
    let actor =
        ActorView { kind: "api_key".into(), id: Some(key_id.to_string()), name: Some("prom_live_...ab12".into()) };
    assert_eq!(stored.actor, actor);
    assert_eq!(stored.target, event.target);
    assert_eq!(stored.ip.as_deref(), Some("198.51.100.4"));
    assert_eq!(stored.user_agent.as_deref(), Some("agent/1.0"));
    assert_eq!(stored.details, event.details);
}

store_tests!(
    filters_by_action,
    filters_by_key,
    before_pages_through_without_gaps_or_repeats,
    limit_is_clamped_to_one_page,
    recorded_events_read_back_whole,
);
