//! The members page: first-run setup, adding members by e-mail, changing roles and removing
//! members, each audited, and a tenant never left without an owner.

use prom_core::access::Role;
use prom_core::audit::{AuditAction, AuditContext, AuditTarget};
use prom_core::id::{SessionId, UserId};
use prom_core::session::SessionToken;
use prom_core::store::{AuditStore, Membership, NewSession, SessionStore, StoreError, UserStore};
use prom_core::time::Timestamp;
use prom_store::SqlStore;
use serde_json::json;

use crate::support::{Owner, PASSWORD_HASH, actions, by_action, email, everything, owner_of, provision};

async fn the_first_owner_is_created_once(store: SqlStore) {
    assert!(!store.has_users().await.unwrap());
    let request = provision("ada@example.com", "acme", Role::Owner, Some(PASSWORD_HASH));
    let outcome = store.create_first_owner(request, "Acme Labs", &AuditContext::admin_cli()).await.unwrap();
    assert!(store.has_users().await.unwrap());
    assert!(outcome.user_created && outcome.tenant_created);
    assert_eq!((outcome.tenant.slug.as_str(), outcome.tenant.name.as_str()), ("acme", "Acme Labs"));
    assert_eq!(outcome.user.password_hash, PASSWORD_HASH);
    let memberships = store.memberships(&outcome.user.id).await.unwrap();
    assert_eq!(memberships, vec![Membership { tenant: outcome.tenant.clone(), role: Role::Owner }]);
    let events = store.list_audit(&outcome.tenant.id, &everything()).await.unwrap();
    assert_eq!(actions(&events), ["member.add"]);
    assert_eq!(events[0].target, Some(AuditTarget::user(&outcome.user.id, &outcome.user.email)));
    assert_eq!(events[0].details, json!({ "role": "owner", "user_created": true }));

    let again = provision("eve@example.com", "eve", Role::Owner, Some(PASSWORD_HASH));
    let refused = store.create_first_owner(again, "Eve", &AuditContext::admin_cli()).await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict(message)) if message.starts_with("setup is done")),
        "{refused:?}"
    );
    assert!(store.find_user_by_email(&email("eve@example.com")).await.unwrap().is_none());
}

async fn setup_after_the_command_line_made_a_user_is_refused(store: SqlStore) {
    owner_of(&store, "acme").await;
    let request = provision("ada@example.com", "other", Role::Owner, Some(PASSWORD_HASH));
    let refused = store.create_first_owner(request, "Other", &AuditContext::admin_cli()).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
}

async fn the_first_owner_needs_a_password(store: SqlStore) {
    for hash in [None, Some("")] {
        let request = provision("ada@example.com", "acme", Role::Owner, hash);
        let refused = store.create_first_owner(request, "Acme", &AuditContext::admin_cli()).await;
        assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    }
    assert!(!store.has_users().await.unwrap(), "nothing of the refused setups remains");
}

async fn of_concurrent_setups_one_succeeds(store: SqlStore) {
    let attempts = (0..8).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            let request =
                provision(&format!("owner{n}@example.com"), &format!("tenant-{n}"), Role::Owner, Some(PASSWORD_HASH));
            store.create_first_owner(request, "First", &AuditContext::admin_cli()).await
        })
    });
    let mut created = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        let result = attempt.await.unwrap();
        assert!(matches!(result, Ok(_) | Err(StoreError::Conflict(_))), "{result:?}");
        created += usize::from(result.is_ok());
    }
    assert_eq!(created, 1);
    let mut users = 0;
    for n in 0..8 {
        users +=
            usize::from(store.find_user_by_email(&email(&format!("owner{n}@example.com"))).await.unwrap().is_some());
    }
    assert_eq!(users, 1);
}

async fn members_are_added_by_email_without_a_password(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let (bob, created) =
        store.add_member(acme.tenant_id(), &email("Bob@Example.com"), Role::Admin, &acme.ctx()).await.unwrap();
    assert!(created);
    assert_eq!((bob.email.as_str(), bob.password_hash.as_str()), ("bob@example.com", ""));
    assert_eq!(store.find_user_by_email(&bob.email).await.unwrap().unwrap().password_hash, "");

    // Someone with an account elsewhere joins with it.
    let zeta = owner_of(&store, "zeta").await;
    let (same, created) =
        store.add_member(zeta.tenant_id(), &acme.user.email, Role::Member, &zeta.ctx()).await.unwrap();
    assert!(!created);
    assert_eq!(same.id, acme.user.id);

    let members = store.list_members(acme.tenant_id()).await.unwrap();
    let listed: Vec<_> = members.iter().map(|m| (m.email.as_str(), m.role, m.has_password)).collect();
    assert_eq!(listed, [("bob@example.com", Role::Admin, false), ("owner@acme.example", Role::Owner, true)]);
    assert_eq!(members[0].user_id, bob.id);
    let zeta_members: Vec<_> =
        store.list_members(zeta.tenant_id()).await.unwrap().into_iter().map(|m| m.email).collect();
    assert_eq!(zeta_members, [acme.user.email.clone(), zeta.user.email.clone()], "by e-mail address");

    let twice = store.add_member(acme.tenant_id(), &bob.email, Role::Member, &acme.ctx()).await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    let unknown =
        store.add_member(&prom_core::id::TenantId::new(), &email("x@example.com"), Role::Member, &acme.ctx()).await;
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
    assert!(store.find_user_by_email(&email("x@example.com")).await.unwrap().is_none());

    let events = store.list_audit(acme.tenant_id(), &by_action(AuditAction::MemberAdd)).await.unwrap();
    assert_eq!(events.len(), 2, "the refused second add wrote nothing: {events:?}");
    assert_eq!(events[0].target, Some(AuditTarget::user(&bob.id, &bob.email)));
    assert_eq!(events[0].actor.id.as_deref(), Some(acme.user.id.as_str()));
    assert_eq!(events[0].details, json!({ "role": "admin", "user_created": true }));
}

async fn roles_change_but_the_last_owner_stays(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let tenant = acme.tenant_id();
    let (bob, _) = store.add_member(tenant, &email("bob@example.com"), Role::Member, &acme.ctx()).await.unwrap();

    store.set_member_role(tenant, &bob.id, Role::Admin, &acme.ctx()).await.unwrap();
    store.set_member_role(tenant, &bob.id, Role::Admin, &acme.ctx()).await.unwrap();
    let refused = store.set_member_role(tenant, &acme.user.id, Role::Admin, &acme.ctx()).await;
    assert!(matches!(&refused, Err(StoreError::Conflict(message)) if message.contains("last owner")), "{refused:?}");
    let stranger = store.set_member_role(tenant, &UserId::new(), Role::Admin, &acme.ctx()).await;
    assert!(matches!(stranger, Err(StoreError::NotFound)), "{stranger:?}");
    let zeta = owner_of(&store, "zeta").await;
    let elsewhere = store.set_member_role(tenant, &zeta.user.id, Role::Member, &acme.ctx()).await;
    assert!(matches!(elsewhere, Err(StoreError::NotFound)), "a member of another tenant: {elsewhere:?}");

    // With a second owner, the first may step down.
    store.set_member_role(tenant, &bob.id, Role::Owner, &acme.ctx()).await.unwrap();
    store.set_member_role(tenant, &acme.user.id, Role::Member, &acme.ctx()).await.unwrap();
    let roles: Vec<_> = store.list_members(tenant).await.unwrap().into_iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::Owner, Role::Member]);

    let events = store.list_audit(tenant, &by_action(AuditAction::MemberRoleChange)).await.unwrap();
    let changes: Vec<_> = events.iter().map(|event| event.details.clone()).collect();
    assert_eq!(
        changes,
        [
            json!({ "from": "owner", "to": "member" }),
            json!({ "from": "admin", "to": "owner" }),
            json!({ "from": "member", "to": "admin" }),
        ],
        "one row per change, none for a change to the same role or a refused one"
    );
    assert_eq!(events[0].target, Some(AuditTarget::user(&acme.user.id, &acme.user.email)));
}

async fn two_owners_demoting_each_other_at_once_leave_one(store: SqlStore) {
    for round in 0..5 {
        let acme = owner_of(&store, &format!("acme-{round}")).await;
        let tenant = acme.tenant_id().clone();
        let bob_email = email(&format!("bob{round}@example.com"));
        let (bob, _) = store.add_member(&tenant, &bob_email, Role::Owner, &acme.ctx()).await.unwrap();
        let ctx = acme.ctx();
        let (demoted, removed) = tokio::join!(
            store.set_member_role(&tenant, &bob.id, Role::Member, &ctx),
            store.remove_member(&tenant, &acme.user.id, &ctx),
        );
        assert!(demoted.is_ok() != removed.is_ok(), "exactly one of them: {demoted:?} {removed:?}");
        let owners = store.list_members(&tenant).await.unwrap().into_iter().filter(|m| m.role == Role::Owner).count();
        assert_eq!(owners, 1);
    }
}

/// Signs `owner.user` into `owner.tenant`; returns the token's digest.
async fn sign_in(store: &SqlStore, owner: &Owner) -> prom_core::session::SessionDigest {
    let token = SessionToken::mint();
    let now = Timestamp::now();
    let session = NewSession {
        id: SessionId::new(),
        digest: token.digest(),
        user_id: owner.user.id.clone(),
        tenant_id: owner.tenant.id.clone(),
        created_at: now,
        expires_at: now.plus_seconds(3600),
    };
    store.create_session(session, &owner.ctx()).await.unwrap();
    token.digest()
}

async fn a_removed_member_loses_their_sessions_there(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let tenant = acme.tenant_id();
    let (bob, _) = store.add_member(tenant, &email("bob@example.com"), Role::Admin, &acme.ctx()).await.unwrap();
    let bob_in_acme = Owner { tenant: acme.tenant.clone(), user: bob.clone() };
    let digest = sign_in(&store, &bob_in_acme).await;
    // Bob also belongs to zeta, signed in there.
    let zeta = owner_of(&store, "zeta").await;
    store.add_member(zeta.tenant_id(), &bob.email, Role::Member, &zeta.ctx()).await.unwrap();
    let in_zeta = sign_in(&store, &Owner { tenant: zeta.tenant.clone(), user: bob.clone() }).await;

    store.remove_member(tenant, &bob.id, &acme.ctx()).await.unwrap();
    assert!(store.find_session(&digest).await.unwrap().is_none(), "no longer a member: no session");
    let again = store.remove_member(tenant, &bob.id, &acme.ctx()).await;
    assert!(matches!(again, Err(StoreError::NotFound)), "{again:?}");
    let emails: Vec<_> = store.list_members(tenant).await.unwrap().into_iter().map(|m| m.email).collect();
    assert_eq!(emails, std::slice::from_ref(&acme.user.email));

    // Added back, the old session stays ended: removal revoked it.
    store.add_member(tenant, &bob.email, Role::Admin, &acme.ctx()).await.unwrap();
    assert!(store.find_session(&digest).await.unwrap().unwrap().revoked_at.is_some());
    assert_eq!(store.find_session(&in_zeta).await.unwrap().unwrap().revoked_at, None, "zeta's session stays");

    let last = store.remove_member(tenant, &acme.user.id, &acme.ctx()).await;
    assert!(matches!(&last, Err(StoreError::Conflict(message)) if message.contains("last owner")), "{last:?}");

    let events = store.list_audit(tenant, &by_action(AuditAction::MemberRemove)).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].target, Some(AuditTarget::user(&bob.id, &bob.email)));
    assert_eq!(events[0].details, json!({ "role": "admin", "sessions_revoked": 1 }));
}

store_tests!(
    the_first_owner_is_created_once,
    setup_after_the_command_line_made_a_user_is_refused,
    the_first_owner_needs_a_password,
    of_concurrent_setups_one_succeeds,
    members_are_added_by_email_without_a_password,
    roles_change_but_the_last_owner_stays,
    two_owners_demoting_each_other_at_once_leave_one,
    a_removed_member_loses_their_sessions_there,
);
