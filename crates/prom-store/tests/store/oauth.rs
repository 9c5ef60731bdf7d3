//! OAuth grants and clients in the database: a grant's credential row that the keys pages never
//! show, clients kept and purged, what a grant spent, and grants revoked with their member; and
//! the fixtures of the OAuth tests (codes and tokens are in `oauth_tokens.rs`).

use prom_core::access::{Role, Scope};
use prom_core::audit::{AuditAction, AuditEvent, AuditTarget};
use prom_core::charge::{ChargeOp, ChargeOpResult, ChargeState, ExpiryMargins, NewCharge, ResolvedCharge};
use prom_core::id::{ChargeId, GrantId, KeyId};
use prom_core::key::Environment;
use prom_core::money::Amount;
use prom_core::oauth::{
    ACCESS_PREFIX, CODE_PREFIX, ClientSource, GrantRecord, NewCode, NewGrant, NewToken, OAuthClient, OAuthSecret,
    OAuthStore, REFRESH_PREFIX, TokenKind,
};
use prom_core::store::{AuditStore, BudgetStore, ChargeStore, KeyStore, SettlementStore, StoreError, UserStore};
use prom_core::time::Timestamp;
use prom_store::SqlStore;
use serde_json::json;

use crate::support::{Owner, by_action, email, everything, hasher, insert_key, owner_of, service_slug, shift};

pub const MINUTE: i64 = 60_000;
pub const DAY: i64 = 24 * 60 * MINUTE;
pub const RACERS: usize = 8;
pub const CLIENT_ID: &str = "https://agent.example/oauth/client.json";

pub fn t0() -> Timestamp {
    Timestamp::parse_rfc3339("2026-12-01T10:00:00Z").unwrap()
}

fn client(id: &str, source: ClientSource, created_at: Timestamp) -> OAuthClient {
    OAuthClient {
        id: id.to_owned(),
        name: "Claude Desktop".into(),
        redirect_uris: vec!["http://127.0.0.1:33418/callback".into(), "com.example.agent:/cb".into()],
        client_uri: Some("https://agent.example".into()),
        source,
        created_at,
        last_used_at: None,
    }
}

/// Makes a grant of service `alpha` for `client_id`, by `owner`'s user, with its code.
pub async fn grant_for(store: &SqlStore, owner: &Owner, client_id: &str, at: Timestamp) -> (GrantRecord, OAuthSecret) {
    let id = GrantId::new();
    let grant = NewGrant {
        id: id.clone(),
        key_id: KeyId::new(),
        tenant_id: owner.tenant_id().clone(),
        user_id: owner.user.id.clone(),
        client_id: client_id.to_owned(),
        client_name: "Claude Desktop".into(),
        service: service_slug("alpha"),
        resource: "https://prom.example/mcp/alpha".into(),
        scopes: vec!["agent:connect".into()],
        spend_cap: Amount::new(5_000),
        expires_at: shift(at, 30 * DAY),
        created_at: at,
    };
    let secret = OAuthSecret::mint(CODE_PREFIX);
    let code = NewCode {
        digest: secret.digest(),
        grant_id: id,
        client_id: client_id.to_owned(),
        redirect_uri: "http://127.0.0.1:33418/callback".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        created_at: at,
        expires_at: shift(at, MINUTE),
    };
    let record = store.create_grant(&grant, &code, &owner.ctx()).await.unwrap();
    (record, secret)
}

/// A fresh access and refresh token of `grant`, ready to store.
pub fn tokens(grant: &GrantRecord, at: Timestamp) -> ([OAuthSecret; 2], Vec<NewToken>) {
    let (access, refresh) = (OAuthSecret::mint(ACCESS_PREFIX), OAuthSecret::mint(REFRESH_PREFIX));
    let new = |secret: &OAuthSecret, kind, expires_at| NewToken {
        digest: secret.digest(),
        grant_id: grant.id.clone(),
        kind,
        created_at: at,
        expires_at,
    };
    let stored = vec![
        new(&access, TokenKind::Access, shift(at, 60 * MINUTE)),
        new(&refresh, TokenKind::Refresh, grant.expires_at),
    ];
    ([access, refresh], stored)
}

/// Makes a grant and exchanges its code; returns the grant, its access and its refresh token.
pub async fn signed_in(store: &SqlStore, owner: &Owner) -> (GrantRecord, OAuthSecret, OAuthSecret) {
    let (grant, code) = grant_for(store, owner, CLIENT_ID, t0()).await;
    let ([access, refresh], new) = tokens(&grant, shift(t0(), 1_000));
    assert!(store.redeem_code(&code.digest(), shift(t0(), 1_000), &new, &owner.ctx()).await.unwrap());
    (grant, access, refresh)
}

/// The OAuth events of `owner`'s tenant, newest first.
pub async fn oauth_events(store: &SqlStore, owner: &Owner) -> Vec<AuditEvent> {
    let events = store.list_audit(owner.tenant_id(), &everything()).await.unwrap();
    events.into_iter().filter(|event| event.action.starts_with("oauth.")).collect()
}

async fn a_grant_is_a_credential_row_the_keys_pages_never_show(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let (_, key) = insert_key(&store, &hasher(), &acme, "agent", shift(t0(), -DAY)).await;
    store.save_client(&client(CLIENT_ID, ClientSource::MetadataDocument, shift(t0(), -MINUTE))).await.unwrap();
    let (grant, code) = grant_for(&store, &acme, CLIENT_ID, t0()).await;
    assert_eq!((grant.revoked_at, grant.last_used_at), (None, None));
    assert!(grant.is_live(t0()));

    // The grant's own row: labelled with the client, created by the person, never a key.
    let credential = store.grant_credential(&grant.id).await.unwrap().expect("the grant's credential row");
    assert_eq!((&credential.id, &credential.tenant_id), (&grant.key_id, acme.tenant_id()));
    assert_eq!(credential.label.as_str(), "Claude Desktop");
    assert_eq!(credential.environment, Environment::Live);
    assert_eq!(credential.scopes, [Scope::AgentConnect]);
    assert_eq!(credential.created_by.as_ref(), Some(&acme.user.id));
    assert_eq!(credential.last4, grant.id.as_str().replace('-', "")[28..]);

    assert_eq!(store.list_keys(acme.tenant_id()).await.unwrap(), std::slice::from_ref(&key));
    assert_eq!(store.list_keys_page(acme.tenant_id(), 0, 50).await.unwrap(), (vec![key.clone()], 1));
    assert_eq!(store.get_key(acme.tenant_id(), &grant.key_id).await.unwrap(), None);
    // Nor can the keys API change it: a grant is revoked as a grant.
    let ctx = acme.ctx();
    let revoked = store.revoke_key(acme.tenant_id(), &grant.key_id, t0(), &ctx).await;
    assert!(matches!(revoked, Err(StoreError::NotFound)), "{revoked:?}");
    let deleted = store.delete_key(acme.tenant_id(), &grant.key_id, t0(), &ctx).await;
    assert!(matches!(deleted, Err(StoreError::NotFound)), "{deleted:?}");
    assert_eq!(store.grant_credential(&grant.id).await.unwrap(), Some(credential));

    // Its uses are recorded like a key's, and shown on the grant.
    store.touch_keys(&[(grant.key_id.clone(), shift(t0(), 5 * MINUTE))]).await.unwrap();
    let read = store.get_grant(acme.tenant_id(), &grant.id).await.unwrap().expect("the grant");
    assert_eq!(read, GrantRecord { last_used_at: Some(shift(t0(), 5 * MINUTE)), ..grant.clone() });
    let globex = owner_of(&store, "globex").await;
    assert_eq!(store.get_grant(globex.tenant_id(), &grant.id).await.unwrap(), None);
    assert!(store.list_grants(globex.tenant_id()).await.unwrap().is_empty());

    // The code is stored with its grant; the client is marked used.
    let stored = store.find_code(&code.digest()).await.unwrap().expect("the code");
    assert_eq!(stored.grant, read);
    assert_eq!(
        (stored.client_id.as_str(), stored.redirect_uri.as_str()),
        (CLIENT_ID, "http://127.0.0.1:33418/callback")
    );
    assert_eq!(stored.code_challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    assert_eq!((stored.expires_at, stored.used_at), (shift(t0(), MINUTE), None));
    assert!(store.find_code(&OAuthSecret::mint(CODE_PREFIX).digest()).await.unwrap().is_none());
    assert_eq!(store.get_client(CLIENT_ID).await.unwrap().unwrap().last_used_at, Some(t0()));

    let events = store.list_audit(acme.tenant_id(), &by_action(AuditAction::OAuthConsent)).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].target, Some(AuditTarget::grant(&grant.id, "Claude Desktop")));
    assert_eq!((events[0].at, events[0].actor.id.as_deref()), (t0(), Some(acme.user.id.as_str())));
    assert_eq!(
        events[0].details,
        json!({
            "client_id": CLIENT_ID,
            "service": "alpha",
            "resource": "https://prom.example/mcp/alpha",
            "spend_cap": "5000",
            "expires_at": shift(t0(), 30 * DAY).as_millis(),
            "scopes": ["agent:connect"],
        })
    );
}

async fn a_code_for_another_grant_makes_nothing(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let (grant, _) = grant_for(&store, &acme, CLIENT_ID, t0()).await;
    let new = NewGrant {
        id: GrantId::new(),
        key_id: KeyId::new(),
        tenant_id: grant.tenant_id.clone(),
        user_id: grant.user_id.clone(),
        client_id: grant.client_id.clone(),
        client_name: grant.client_name.clone(),
        service: grant.service.clone(),
        resource: grant.resource.clone(),
        scopes: grant.scopes.clone(),
        spend_cap: grant.spend_cap,
        expires_at: grant.expires_at,
        created_at: t0(),
    };
    let code = NewCode {
        digest: OAuthSecret::mint(CODE_PREFIX).digest(),
        grant_id: grant.id.clone(),
        client_id: CLIENT_ID.into(),
        redirect_uri: "http://127.0.0.1:1/cb".into(),
        code_challenge: "x".into(),
        created_at: t0(),
        expires_at: shift(t0(), MINUTE),
    };
    let refused = store.create_grant(&new, &code, &acme.ctx()).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    assert_eq!(store.list_grants(acme.tenant_id()).await.unwrap().len(), 1);
}

async fn saving_a_client_again_keeps_when_it_was_made_and_used(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let first = client(CLIENT_ID, ClientSource::MetadataDocument, shift(t0(), -DAY));
    store.save_client(&first).await.unwrap();
    assert_eq!(store.get_client(CLIENT_ID).await.unwrap(), Some(first.clone()));
    grant_for(&store, &acme, CLIENT_ID, t0()).await;

    // Fetched again later: new metadata, same history.
    let fetched = OAuthClient {
        name: "Claude Desktop 2".into(),
        redirect_uris: vec!["https://agent.example/cb".into()],
        client_uri: None,
        created_at: shift(t0(), DAY),
        ..first.clone()
    };
    store.save_client(&fetched).await.unwrap();
    let stored = store.get_client(CLIENT_ID).await.unwrap().expect("the client");
    assert_eq!(stored, OAuthClient { created_at: first.created_at, last_used_at: Some(t0()), ..fetched });
    assert_eq!(store.get_client("https://other.example/client.json").await.unwrap(), None);
}

async fn only_unused_registrations_are_purged(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let old = shift(t0(), -2 * DAY);
    let clients = [
        client("registered-unused-old", ClientSource::Registered, old),
        client("registered-used-old", ClientSource::Registered, old),
        client("registered-unused-new", ClientSource::Registered, t0()),
        client("https://agent.example/client.json", ClientSource::MetadataDocument, old),
        client("configured", ClientSource::Configured, old),
    ];
    for client in &clients {
        store.save_client(client).await.unwrap();
    }
    grant_for(&store, &acme, "registered-used-old", shift(t0(), -DAY)).await;

    assert_eq!(store.purge_unused_clients(shift(t0(), -DAY)).await.unwrap(), 1);
    let mut left = Vec::new();
    for client in &clients {
        if store.get_client(&client.id).await.unwrap().is_some() {
            left.push(client.id.as_str());
        }
    }
    assert_eq!(
        left,
        ["registered-used-old", "registered-unused-new", "https://agent.example/client.json", "configured"]
    );
    assert_eq!(store.purge_unused_clients(shift(t0(), -DAY)).await.unwrap(), 0);
}

/// How a charge ends up.
#[derive(Clone, Copy)]
enum End {
    Captured,
    Released,
    StillHeld,
    /// Captured, and written once in its final state (journaled, on the embedded database).
    Journaled,
}

/// Charges `amount` to `key` (of service `alpha`).
async fn charge(store: &SqlStore, owner: &Owner, key: &KeyId, amount: u128, end: End) {
    let charge = NewCharge {
        id: ChargeId::new(),
        tenant_id: owner.tenant_id().clone(),
        service: service_slug("alpha"),
        key_id: key.clone(),
        tool: "search".into(),
        amount: Amount::new(amount),
        at: t0(),
        cap: None,
    };
    if let End::Journaled = end {
        let resolved = ResolvedCharge { charge, state: ChargeState::Captured, resolved_at: t0() };
        store.record_resolved(&[resolved], &[], t0()).await.unwrap();
        return;
    }
    let id = charge.id.clone();
    let held = store.apply_charges(&[ChargeOp::Reserve(charge)], t0(), ExpiryMargins::NONE).await.unwrap();
    assert_eq!(held, [ChargeOpResult::Held]);
    let end = match end {
        End::Captured => ChargeOp::Capture(id),
        End::Released => ChargeOp::Release(id),
        End::StillHeld | End::Journaled => return,
    };
    assert_eq!(store.apply_charges(&[end], t0(), ExpiryMargins::NONE).await.unwrap(), [ChargeOpResult::Done]);
}

async fn a_grant_spent_what_was_captured_or_settled(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let (_, key) = insert_key(&store, &hasher(), &acme, "agent", t0()).await;
    let (alpha, approved) = (service_slug("alpha"), Amount::new(u128::MAX));
    store.set_approved(acme.tenant_id(), &alpha, approved, None, None, None, None).await.unwrap();
    store.save_client(&client("registered", ClientSource::Registered, t0())).await.unwrap();
    let (older, _) = grant_for(&store, &acme, "registered", t0()).await;
    let (newer, _) = grant_for(&store, &acme, "https://gone.example/client.json", shift(t0(), 1)).await;
    assert_eq!(store.spent_by_key(&older.key_id).await.unwrap(), Amount::ZERO);

    // Settled: captured (one through the journal, on the embedded database), then in a done batch.
    let big = 1u128 << 100;
    charge(&store, &acme, &older.key_id, big, End::Journaled).await;
    charge(&store, &acme, &older.key_id, 3, End::Captured).await;
    let batch = store.open_settlement(acme.tenant_id(), &alpha, 1, t0(), approved).await.unwrap().expect("a batch");
    assert_eq!(batch.amount, Amount::new(big + 3));
    store.complete_settlement(&batch, 1, t0(), Amount::ZERO).await.unwrap();
    // Captured since, and what never counts: released and held charges, and other credentials'.
    for (amount, end) in [
        (big, End::Captured),
        (250, End::Captured),
        (250, End::Captured),
        (7, End::Journaled),
        (1_000, End::Released),
        (10_000, End::StillHeld),
    ] {
        charge(&store, &acme, &older.key_id, amount, end).await;
    }
    charge(&store, &acme, &newer.key_id, 40, End::Captured).await;
    charge(&store, &acme, &key.id, 90_000, End::Captured).await;

    let spent = Amount::new(2 * big + 510);
    assert_eq!(store.spent_by_key(&older.key_id).await.unwrap(), spent);
    assert_eq!(store.spent_by_key(&newer.key_id).await.unwrap(), Amount::new(40));
    let listed = store.list_grants(acme.tenant_id()).await.unwrap();
    let summary: Vec<_> = listed.iter().map(|view| (&view.grant.id, view.client_source, view.spent)).collect();
    assert_eq!(
        summary,
        [(&newer.id, None, Amount::new(40)), (&older.id, Some(ClientSource::Registered), spent)],
        "newest first; a client no longer stored has no source"
    );
    assert_eq!(listed[1].grant, older);
}

async fn removing_a_member_revokes_the_grants_they_made(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let (bob, _) =
        store.add_member(acme.tenant_id(), &email("bob@acme.example"), Role::Member, &acme.ctx()).await.unwrap();
    let bob = Owner { tenant: acme.tenant.clone(), user: bob };
    let (owners, _) = grant_for(&store, &acme, CLIENT_ID, t0()).await;
    let (bobs, code) = grant_for(&store, &bob, CLIENT_ID, t0()).await;
    let ([_, refresh], new) = tokens(&bobs, t0());
    assert!(store.redeem_code(&code.digest(), t0(), &new, &bob.ctx()).await.unwrap());

    store.remove_member(acme.tenant_id(), &bob.user.id, &acme.ctx()).await.unwrap();
    let revoked = store.get_grant(acme.tenant_id(), &bobs.id).await.unwrap().expect("bob's grant");
    assert!(revoked.revoked_at.is_some());
    assert_eq!(store.grant_credential(&bobs.id).await.unwrap().unwrap().revoked_at, revoked.revoked_at);
    assert_eq!(store.find_token(&refresh.digest()).await.unwrap().unwrap().revoked_at, revoked.revoked_at);
    assert_eq!(store.get_grant(acme.tenant_id(), &owners.id).await.unwrap().unwrap().revoked_at, None);

    let events = store.list_audit(acme.tenant_id(), &by_action(AuditAction::OAuthRevoke)).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].target, Some(AuditTarget::grant(&bobs.id, "Claude Desktop")));
    assert_eq!(events[0].actor.id.as_deref(), Some(acme.user.id.as_str()));
    assert_eq!(events[0].details, json!({ "client_id": CLIENT_ID, "service": "alpha", "reason": "member_removed" }));
}

store_tests!(
    a_grant_is_a_credential_row_the_keys_pages_never_show,
    a_code_for_another_grant_makes_nothing,
    saving_a_client_again_keeps_when_it_was_made_and_used,
    only_unused_registrations_are_purged,
    a_grant_spent_what_was_captured_or_settled,
    removing_a_member_revokes_the_grants_they_made,
);
