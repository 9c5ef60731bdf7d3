//! Sign-in sessions: login and logout are audited, and a session always carries the member's
//! current role.

use prom_core::access::Role;
use prom_core::audit::{AuditAction, AuditContext};
use prom_core::id::SessionId;
use prom_core::session::{SessionDigest, SessionToken};
use prom_core::store::{AuditStore, NewSession, SessionStore, UserStore};
use prom_core::time::Timestamp;
use prom_store::SqlStore;
use serde_json::json;

use crate::support::{Owner, actions, by_action, everything, owner_of, provision};

/// Signs the owner in; returns the session id and the digest the session is found by.
async fn sign_in(store: &SqlStore, owner: &Owner, created_at: Timestamp) -> (SessionId, SessionDigest) {
    let token = SessionToken::mint();
    let session = NewSession {
        id: SessionId::new(),
        digest: token.digest(),
        user_id: owner.user.id.clone(),
        tenant_id: owner.tenant.id.clone(),
        created_at,
        expires_at: created_at.plus_seconds(3600),
    };
    let id = session.id.clone();
    store.create_session(session, &owner.ctx()).await.unwrap();
    (id, token.digest())
}

async fn create_session_logs_in(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let now = Timestamp::now();
    let (id, digest) = sign_in(&store, &owner, now).await;

    let session = store.find_session(&digest).await.unwrap().unwrap();
    assert_eq!(session.id, id);
    assert_eq!(session.user_id, owner.user.id);
    assert_eq!(session.email, owner.user.email);
    assert_eq!(session.tenant, owner.tenant);
    assert_eq!(session.role, Role::Owner);
    assert_eq!(session.expires_at, now.plus_seconds(3600));
    assert_eq!(session.revoked_at, None);
    assert_eq!(session.last_seen_at, now, "a new session was last seen when it was created");

    let events = store.list_audit(owner.tenant_id(), &by_action(AuditAction::UserLogin)).await.unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.at, now);
    assert_eq!(event.actor.kind, "user");
    assert_eq!(event.actor.id.as_deref(), Some(owner.user.id.as_str()));
    assert_eq!(event.actor.name.as_deref(), Some(owner.user.email.as_str()));
    assert_eq!(event.ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(event.user_agent.as_deref(), Some("prom-store-tests"));
    assert_eq!(event.details["session_id"], json!(id.as_str()));
}

async fn find_session_reads_the_current_role(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let (_, digest) = sign_in(&store, &owner, Timestamp::now()).await;
    assert_eq!(store.find_session(&digest).await.unwrap().unwrap().role, Role::Owner);

    let demote = provision(owner.user.email.as_str(), "acme", Role::Member, None);
    store.provision_member(demote, &AuditContext::admin_cli()).await.unwrap();

    let session = store.find_session(&digest).await.unwrap().unwrap();
    assert_eq!(session.role, Role::Member, "a role change must apply to sessions already open");
}

async fn unknown_digest_finds_nothing(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    sign_in(&store, &owner, Timestamp::now()).await;
    assert!(store.find_session(&SessionToken::mint().digest()).await.unwrap().is_none());
}

async fn revoke_session_logs_out_once(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let now = Timestamp::now();
    let (_, digest) = sign_in(&store, &owner, now).await;
    let session = store.find_session(&digest).await.unwrap().unwrap();

    let logout_at = now.plus_seconds(60);
    store.revoke_session(&session, logout_at, &owner.ctx()).await.unwrap();
    store.revoke_session(&session, now.plus_seconds(120), &owner.ctx()).await.unwrap();

    let revoked = store.find_session(&digest).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(logout_at), "the second logout must not move revoked_at");

    let events = store.list_audit(owner.tenant_id(), &by_action(AuditAction::UserLogout)).await.unwrap();
    assert_eq!(events.len(), 1, "revoking twice writes one user.logout: {events:?}");
    assert_eq!(events[0].at, logout_at);
    assert_eq!(events[0].details["session_id"], json!(session.id.as_str()));
}

async fn touch_session_moves_last_seen_forward_only(store: SqlStore) {
    let owner = owner_of(&store, "acme").await;
    let now = Timestamp::now();
    let (id, digest) = sign_in(&store, &owner, now).await;

    store.touch_session(&id, now.plus_seconds(30)).await.unwrap();
    assert_eq!(store.find_session(&digest).await.unwrap().unwrap().last_seen_at, now.plus_seconds(30));
    store.touch_session(&id, now.plus_seconds(10)).await.unwrap();
    assert_eq!(
        store.find_session(&digest).await.unwrap().unwrap().last_seen_at,
        now.plus_seconds(30),
        "a late touch must not move it back"
    );
    store.touch_session(&SessionId::new(), now).await.unwrap();

    let events = store.list_audit(owner.tenant_id(), &everything()).await.unwrap();
    assert_eq!(actions(&events), ["user.login", "member.add"], "touching is not audited");
}

async fn revoke_user_sessions_ends_that_tenants_sessions_only(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let now = Timestamp::now();
    let (_, first) = sign_in(&store, &acme, now).await;
    let (_, second) = sign_in(&store, &acme, now).await;
    // The same person in a second tenant, signed in there too.
    let other = provision(acme.user.email.as_str(), "zeta", Role::Admin, None);
    let zeta = store.provision_member(other, &AuditContext::admin_cli()).await.unwrap();
    let in_zeta = Owner { tenant: zeta.tenant, user: acme.user.clone() };
    let (_, elsewhere) = sign_in(&store, &in_zeta, now).await;
    let first_session = store.find_session(&first).await.unwrap().unwrap();
    store.revoke_session(&first_session, now.plus_seconds(5), &acme.ctx()).await.unwrap();

    let at = now.plus_seconds(60);
    assert_eq!(store.revoke_user_sessions(&acme.user.id, acme.tenant_id(), at).await.unwrap(), 1);
    assert_eq!(store.revoke_user_sessions(&acme.user.id, acme.tenant_id(), at).await.unwrap(), 0);

    let revoked = |digest| {
        let store = store.clone();
        async move { store.find_session(&digest).await.unwrap().unwrap().revoked_at }
    };
    assert_eq!(revoked(first).await, Some(now.plus_seconds(5)), "an ended session keeps its end");
    assert_eq!(revoked(second).await, Some(at));
    assert_eq!(revoked(elsewhere).await, None, "sessions in another tenant stay");
    let logouts = store.list_audit(acme.tenant_id(), &by_action(AuditAction::UserLogout)).await.unwrap();
    assert_eq!(logouts.len(), 1, "only the explicit logout is audited: {logouts:?}");
}

store_tests!(
    touch_session_moves_last_seen_forward_only,
    revoke_user_sessions_ends_that_tenants_sessions_only,
    create_session_logs_in,
    find_session_reads_the_current_role,
    unknown_digest_finds_nothing,
    revoke_session_logs_out_once,
);
