//! Provisioning members (`prom admin create-user`): tenants, users, memberships and roles.

use prom_core::access::Role;
use prom_core::audit::{AuditAction, AuditContext, AuditTarget};
use prom_core::store::{AuditStore, Membership, StoreError, UserStore};
use prom_store::SqlStore;
use serde_json::json;

use crate::support::{PASSWORD_HASH, actions, by_action, email, everything, provision, slug};

async fn provision_creates_tenant_user_and_membership(store: SqlStore) {
    let request = provision("Ada@Example.com", "acme", Role::Owner, Some(PASSWORD_HASH));
    let outcome = store.provision_member(request, &AuditContext::admin_cli()).await.unwrap();

    assert!(outcome.user_created);
    assert!(outcome.tenant_created);
    assert_eq!(outcome.tenant.slug.as_str(), "acme");
    assert_eq!(outcome.user.email.as_str(), "ada@example.com");
    assert_eq!(outcome.user.password_hash, PASSWORD_HASH);

    let found = store.find_user_by_email(&email("ada@example.com")).await.unwrap().unwrap();
    assert_eq!(found.id, outcome.user.id);
    assert_eq!(found.email, outcome.user.email);
    assert_eq!(found.password_hash, PASSWORD_HASH);
    assert_eq!(found.created_at, outcome.user.created_at);
    assert!(store.find_user_by_email(&email("nobody@example.com")).await.unwrap().is_none());

    let memberships = store.memberships(&outcome.user.id).await.unwrap();
    assert_eq!(memberships, vec![Membership { tenant: outcome.tenant.clone(), role: Role::Owner }]);

    let events = store.list_audit(&outcome.tenant.id, &everything()).await.unwrap();
    assert_eq!(actions(&events), ["member.add"]);
    let event = &events[0];
    assert_eq!(event.tenant_id.as_ref(), Some(&outcome.tenant.id));
    assert_eq!(event.actor.kind, "admin_cli");
    assert_eq!(event.target, Some(AuditTarget::user(&outcome.user.id, &outcome.user.email)));
    assert_eq!(event.details, json!({ "role": "owner", "user_created": true }));
}

async fn new_user_without_password_is_a_conflict(store: SqlStore) {
    let request = provision("ada@example.com", "acme", Role::Owner, None);
    let result = store.provision_member(request, &AuditContext::admin_cli()).await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");

    // Nothing of the failed attempt remains: no user, and the tenant is still new afterwards.
    assert!(store.find_user_by_email(&email("ada@example.com")).await.unwrap().is_none());
    let request = provision("ada@example.com", "acme", Role::Owner, Some(PASSWORD_HASH));
    let outcome = store.provision_member(request, &AuditContext::admin_cli()).await.unwrap();
    assert!(outcome.tenant_created, "the failed attempt must not have left its tenant behind");
    assert!(outcome.user_created);
    let events = store.list_audit(&outcome.tenant.id, &everything()).await.unwrap();
    assert_eq!(actions(&events), ["member.add"]);
}

async fn existing_user_joins_a_second_tenant(store: SqlStore) {
    let admin = AuditContext::admin_cli();
    let first = store
        .provision_member(provision("ada@example.com", "zeta-labs", Role::Owner, Some(PASSWORD_HASH)), &admin)
        .await
        .unwrap();
    let second =
        store.provision_member(provision("ada@example.com", "acme", Role::Member, None), &admin).await.unwrap();

    assert!(!second.user_created);
    assert!(second.tenant_created);
    assert_eq!(second.user.id, first.user.id);
    assert_eq!(second.user.password_hash, PASSWORD_HASH, "no new password given: the old one stays");
    assert_ne!(second.tenant.id, first.tenant.id);

    let memberships = store.memberships(&first.user.id).await.unwrap();
    assert_eq!(
        memberships,
        vec![
            Membership { tenant: second.tenant.clone(), role: Role::Member },
            Membership { tenant: first.tenant.clone(), role: Role::Owner },
        ],
        "memberships are sorted by tenant slug"
    );

    let events = store.list_audit(&second.tenant.id, &by_action(AuditAction::MemberAdd)).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].details, json!({ "role": "member", "user_created": false }));
}

async fn reprovisioning_updates_role_and_password(store: SqlStore) {
    let admin = AuditContext::admin_cli();
    let first = store
        .provision_member(provision("ada@example.com", "acme", Role::Member, Some(PASSWORD_HASH)), &admin)
        .await
        .unwrap();
    let again = store.provision_member(provision("ada@example.com", "acme", Role::Admin, None), &admin).await.unwrap();

    assert!(!again.tenant_created);
    assert!(!again.user_created);
    assert_eq!(again.tenant, first.tenant);
    let memberships = store.memberships(&first.user.id).await.unwrap();
    assert_eq!(memberships, vec![Membership { tenant: first.tenant.clone(), role: Role::Admin }]);

    let new_hash = "$argon2id$v=19$m=64,t=1,p=1$bmV3c2FsdA$bmV3aGFzaA";
    let reset = store
        .provision_member(provision("ada@example.com", "acme", Role::Admin, Some(new_hash)), &admin)
        .await
        .unwrap();
    assert_eq!(reset.user.password_hash, new_hash);
    let found = store.find_user_by_email(&email("ada@example.com")).await.unwrap().unwrap();
    assert_eq!(found.password_hash, new_hash);

    let events = store.list_audit(&first.tenant.id, &by_action(AuditAction::MemberAdd)).await.unwrap();
    let roles: Vec<_> = events.iter().map(|event| event.details["role"].clone()).collect();
    assert_eq!(roles, [json!("admin"), json!("admin"), json!("member")], "newest first");
}

async fn tenants_are_found_by_slug_and_id(store: SqlStore) {
    let request = provision("ada@example.com", "acme", Role::Owner, Some(PASSWORD_HASH));
    let outcome = store.provision_member(request, &AuditContext::admin_cli()).await.unwrap();
    let by_slug = store.find_tenant_by_slug(&slug("acme")).await.unwrap();
    assert_eq!(by_slug.as_ref(), Some(&outcome.tenant));
    assert_eq!(store.get_tenant(&outcome.tenant.id).await.unwrap(), by_slug);
    assert_eq!(store.find_tenant_by_slug(&slug("acme-two")).await.unwrap(), None);
}

store_tests!(
    tenants_are_found_by_slug_and_id,
    provision_creates_tenant_user_and_membership,
    new_user_without_password_is_a_conflict,
    existing_user_joins_a_second_tenant,
    reprovisioning_updates_role_and_password,
);
