//! Listing the audit log: newest first by time, filters (action, key, actor, time range), paging
//! with `before`, the page-size clamp, and events written directly with `record_audit`.

use prom_core::audit::{
    Actor, ActorView, AuditAction, AuditContext, AuditEvent, AuditFilter, AuditTarget, MAX_AUDIT_PAGE, NewAuditEvent,
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

/// An event of `owner`'s tenant by the key `key_id` (shown as `display`) at `at`.
fn key_event(owner: &Owner, key_id: &KeyId, display: &str, at: Timestamp) -> NewAuditEvent {
    let mut event = use_event(owner, key_id, 0);
    event.at = at;
    event.context.actor = Actor::ApiKey { id: key_id.clone(), display: display.into() };
    event
}

async fn filters_by_actor_id_or_name(store: SqlStore) {
    let (owner, _) = busy_tenant(&store).await;
    let (laptop, ci) = (KeyId::new(), KeyId::new());
    let now = Timestamp::now();
    for (n, key) in [&laptop, &ci, &laptop].into_iter().enumerate() {
        let display = if *key == laptop { "prom_live_...aaaa" } else { "prom_live_...bbbb" };
        store.record_audit(key_event(&owner, key, display, shift(now, 10 + n as i64))).await.unwrap();
    }
    let by_actor = |actor: &str| AuditFilter { actor: Some(actor.to_owned()), ..everything() };

    let by_id = store.list_audit(owner.tenant_id(), &by_actor(owner.user.id.as_str())).await.unwrap();
    assert_eq!(
        actions(&by_id),
        ["api_key.delete", "api_key.revoke", "api_key.create", "api_key.create", "api_key.create"]
    );
    let by_email = store.list_audit(owner.tenant_id(), &by_actor(owner.user.email.as_str())).await.unwrap();
    assert_eq!(by_email, by_id, "a user's e-mail address finds the same events as their id");
    let by_display = store.list_audit(owner.tenant_id(), &by_actor("prom_live_...aaaa")).await.unwrap();
    assert_eq!(by_display.len(), 2);
    assert!(by_display.iter().all(|event| event.actor.id.as_deref() == Some(laptop.as_str())));
    assert_eq!(store.list_audit(owner.tenant_id(), &by_actor(ci.as_str())).await.unwrap().len(), 1);
    assert!(store.list_audit(owner.tenant_id(), &by_actor("prom_live_")).await.unwrap().is_empty(), "exact only");
    assert!(store.list_audit(owner.tenant_id(), &by_actor("nobody@example.com")).await.unwrap().is_empty());

    let revokes = AuditFilter { action: Some(AuditAction::ApiKeyRevoke), ..by_actor(owner.user.email.as_str()) };
    assert_eq!(actions(&store.list_audit(owner.tenant_id(), &revokes).await.unwrap()), ["api_key.revoke"]);
    let limited = AuditFilter { limit: 2, ..by_actor(owner.user.id.as_str()) };
    assert_eq!(store.list_audit(owner.tenant_id(), &limited).await.unwrap(), by_id[..2]);
    let rival = owner_of(&store, "rival").await;
    assert!(store.list_audit(rival.tenant_id(), &by_actor(owner.user.id.as_str())).await.unwrap().is_empty());
}

async fn a_time_range_includes_its_start_and_not_its_end(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let key = KeyId::new();
    let t0 = Timestamp::parse_rfc3339("2026-11-23T10:00:00Z").unwrap();
    for minutes in [0, 1, 2, 3] {
        store.record_audit(key_event(&owner, &key, "prom_live_...aaaa", shift(t0, minutes * 60_000))).await.unwrap();
    }
    let range = |from: Option<i64>, to: Option<i64>| AuditFilter {
        from: from.map(|m| shift(t0, m * 60_000)),
        to: to.map(|m| shift(t0, m * 60_000)),
        ..by_action(AuditAction::ApiKeyUse)
    };
    let minutes = |events: Vec<AuditEvent>| -> Vec<i64> {
        events.iter().map(|event| (event.at.as_millis() - t0.as_millis()) / 60_000).collect()
    };
    assert_eq!(minutes(store.list_audit(owner.tenant_id(), &range(Some(1), Some(3))).await.unwrap()), [2, 1]);
    assert_eq!(minutes(store.list_audit(owner.tenant_id(), &range(Some(2), None)).await.unwrap()), [3, 2]);
    assert_eq!(minutes(store.list_audit(owner.tenant_id(), &range(None, Some(1))).await.unwrap()), [0]);
    assert!(store.list_audit(owner.tenant_id(), &range(Some(2), Some(2))).await.unwrap().is_empty());
    let everything_in_range = AuditFilter { from: Some(t0), to: Some(shift(t0, 3 * 60_000)), ..everything() };
    assert_eq!(actions(&store.list_audit(owner.tenant_id(), &everything_in_range).await.unwrap()), ["api_key.use"; 3]);
}

async fn events_are_listed_and_paged_in_time_order(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let key = KeyId::new();
    let t0 = Timestamp::parse_rfc3339("2026-11-23T10:00:00Z").unwrap();
    // Written out of time order (as batched rows are), two at the same instant.
    for seconds in [3, 1, 2, 1, 5] {
        store.record_audit(key_event(&owner, &key, "prom_live_...aaaa", shift(t0, seconds * 1000))).await.unwrap();
    }
    let uses = store.list_audit(owner.tenant_id(), &by_action(AuditAction::ApiKeyUse)).await.unwrap();
    let seconds: Vec<i64> = uses.iter().map(|event| (event.at.as_millis() - t0.as_millis()) / 1000).collect();
    assert_eq!(seconds, [5, 3, 2, 1, 1], "newest first by time");
    assert!(uses[3].id > uses[4].id, "the same instant: the later written first");

    let mut paged = Vec::new();
    let mut before = None;
    while paged.len() <= uses.len() {
        let filter = AuditFilter { before, limit: 2, ..by_action(AuditAction::ApiKeyUse) };
        let page = store.list_audit(owner.tenant_id(), &filter).await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(paged, uses, "pages in time order, each event once");
    let unknown = AuditFilter { before: Some(i64::MAX), ..by_action(AuditAction::ApiKeyUse) };
    assert_eq!(
        store.list_audit(owner.tenant_id(), &unknown).await.unwrap(),
        uses,
        "an unknown cursor starts at the newest"
    );
}

store_tests!(
    filters_by_actor_id_or_name,
    a_time_range_includes_its_start_and_not_its_end,
    events_are_listed_and_paged_in_time_order,
    filters_by_action,
    filters_by_key,
    before_pages_through_without_gaps_or_repeats,
    limit_is_clamped_to_one_page,
    recorded_events_read_back_whole,
);
