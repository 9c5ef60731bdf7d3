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

use crate::support::{Owner, by_action, owner_of, provision};

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

store_tests!(
    create_session_logs_in,
    find_session_reads_the_current_role,
    unknown_digest_finds_nothing,
    revoke_session_logs_out_once,
);
