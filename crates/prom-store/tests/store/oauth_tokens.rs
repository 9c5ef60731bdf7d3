//! OAuth codes and tokens in the database: a code or refresh token exchanged once however many
//! requests race, revocation of a grant with all its tokens (audited once), single tokens
//! revoked, and expired ones purged.

use prom_core::audit::{AuditAction, AuditTarget};
use prom_core::id::GrantId;
use prom_core::oauth::{
    CODE_PREFIX, GrantRecord, OAuthSecret, OAuthStore, REFRESH_PREFIX, RevokeReason, TokenDigest, TokenKind,
};
use prom_core::store::AuditStore;
use prom_store::SqlStore;
use serde_json::json;
use tokio::task::JoinSet;

use crate::oauth::{CLIENT_ID, DAY, MINUTE, RACERS, grant_for, oauth_events, signed_in, t0, tokens};
use crate::support::{actions, by_action, owner_of, shift};

async fn a_code_is_redeemed_once_however_many_race(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let (grant, code) = grant_for(&store, &acme, CLIENT_ID, t0()).await;
    let digest = code.digest();

    let mut racers = JoinSet::new();
    let mut issued = Vec::new();
    for n in 0..RACERS {
        let at = shift(t0(), 1_000 + n as i64);
        let (secrets, new) = tokens(&grant, at);
        issued.push(secrets);
        let (store, digest, ctx) = (store.clone(), digest.clone(), acme.ctx());
        racers.spawn(async move { (n, store.redeem_code(&digest, at, &new, &ctx).await.unwrap()) });
    }
    let results = racers.join_all().await;
    let winners: Vec<usize> = results.iter().filter(|(_, won)| *won).map(|(n, _)| *n).collect();
    assert_eq!(winners.len(), 1, "{results:?}");

    // Only the winner's tokens were stored; the code is spent at the winner's instant.
    for (n, [access, refresh]) in issued.iter().enumerate() {
        let found = store.find_token(&access.digest()).await.unwrap();
        assert_eq!(found.is_some(), n == winners[0]);
        assert_eq!(store.find_token(&refresh.digest()).await.unwrap().is_some(), n == winners[0]);
    }
    let [access, refresh] = &issued[winners[0]];
    let access = store.find_token(&access.digest()).await.unwrap().expect("the access token");
    assert_eq!(
        (access.kind, access.expires_at),
        (TokenKind::Access, shift(t0(), 1_000 + winners[0] as i64 + 60 * MINUTE))
    );
    assert_eq!((access.used_at, access.revoked_at), (None, None));
    assert_eq!(access.grant.id, grant.id);
    let refresh = store.find_token(&refresh.digest()).await.unwrap().expect("the refresh token");
    assert_eq!((refresh.kind, refresh.expires_at), (TokenKind::Refresh, grant.expires_at));
    let used = store.find_code(&digest).await.unwrap().expect("the code").used_at;
    assert_eq!(used, Some(shift(t0(), 1_000 + winners[0] as i64)));

    let (_, new) = tokens(&grant, shift(t0(), 5_000));
    assert!(!store.redeem_code(&digest, shift(t0(), 5_000), &new, &acme.ctx()).await.unwrap());
    assert!(!store.redeem_code(&OAuthSecret::mint(CODE_PREFIX).digest(), t0(), &new, &acme.ctx()).await.unwrap());
    let events = store.list_audit(acme.tenant_id(), &by_action(AuditAction::OAuthTokenIssue)).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].target, Some(AuditTarget::grant(&grant.id, "Claude Desktop")));
    assert_eq!(events[0].details, json!({ "kind": "authorization_code" }));
}

async fn a_refresh_token_rotates_once_however_many_race(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let (grant, access, refresh) = signed_in(&store, &acme).await;
    let digest = refresh.digest();

    let mut racers = JoinSet::new();
    for n in 0..RACERS {
        let at = shift(t0(), 10_000 + n as i64);
        let (_, new) = tokens(&grant, at);
        let (store, digest, ctx) = (store.clone(), digest.clone(), acme.ctx());
        racers.spawn(async move { store.rotate_refresh(&digest, at, &new, &ctx).await.unwrap() });
    }
    let results = racers.join_all().await;
    assert_eq!(results.iter().filter(|won| **won).count(), 1, "{results:?}");
    let used = store.find_token(&digest).await.unwrap().expect("the refresh token");
    assert!(used.used_at.is_some() && used.revoked_at.is_none());

    // An access token is not a refresh token, and an unknown one rotates nothing.
    let (_, new) = tokens(&grant, shift(t0(), 20_000));
    assert!(!store.rotate_refresh(&access.digest(), shift(t0(), 20_000), &new, &acme.ctx()).await.unwrap());
    let unknown = OAuthSecret::mint(REFRESH_PREFIX).digest();
    assert!(!store.rotate_refresh(&unknown, shift(t0(), 20_000), &new, &acme.ctx()).await.unwrap());
    assert!(store.find_token(&new[0].digest).await.unwrap().is_none(), "nothing was written");

    let events = store.list_audit(acme.tenant_id(), &by_action(AuditAction::OAuthTokenIssue)).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|event| event.details["kind"].clone()).collect();
    assert_eq!(kinds, [json!("refresh_token"), json!("authorization_code")]);
}

async fn revoking_a_grant_revokes_its_credential_and_tokens_once(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let (grant, access, refresh) = signed_in(&store, &acme).await;
    // A token revoked before keeps its instant.
    let early = shift(t0(), 2_000);
    assert!(store.revoke_token(&access.digest(), early).await.unwrap());

    let mut racers = JoinSet::new();
    for n in 0..RACERS {
        let (store, id, ctx) = (store.clone(), grant.id.clone(), acme.ctx());
        let at = shift(t0(), MINUTE + n as i64);
        racers.spawn(async move { store.revoke_grant(&id, at, RevokeReason::Revoked, &ctx).await.unwrap() });
    }
    let results: Vec<GrantRecord> = racers.join_all().await.into_iter().map(|r| r.expect("the grant")).collect();
    let revoked_at = results[0].revoked_at.expect("revoked");
    assert!(results.iter().all(|record| record.revoked_at == Some(revoked_at)), "all see the one revocation");
    assert!(!results[0].is_live(revoked_at));
    assert_eq!(store.get_grant(acme.tenant_id(), &grant.id).await.unwrap().as_ref(), Some(&results[0]));

    let credential = store.grant_credential(&grant.id).await.unwrap().expect("the credential row");
    assert_eq!(credential.revoked_at, Some(revoked_at));
    let access = store.find_token(&access.digest()).await.unwrap().expect("the access token");
    assert_eq!(access.revoked_at, Some(early));
    assert_eq!(access.grant.revoked_at, Some(revoked_at));
    assert_eq!(store.find_token(&refresh.digest()).await.unwrap().unwrap().revoked_at, Some(revoked_at));
    let (_, new) = tokens(&grant, shift(t0(), 2 * MINUTE));
    assert!(!store.rotate_refresh(&refresh.digest(), shift(t0(), 2 * MINUTE), &new, &acme.ctx()).await.unwrap());

    // Again, for whatever reason: unchanged, and no second row.
    let again = store.revoke_grant(&grant.id, shift(t0(), DAY), RevokeReason::ReuseDetected, &acme.ctx()).await;
    assert_eq!(again.unwrap().as_ref(), Some(&results[0]));
    assert_eq!(store.revoke_grant(&GrantId::new(), t0(), RevokeReason::Revoked, &acme.ctx()).await.unwrap(), None);
    let events = oauth_events(&store, &acme).await;
    assert_eq!(actions(&events), ["oauth.revoke", "oauth.token_issue", "oauth.consent"]);
    assert_eq!((events[0].at, &events[0].target), (revoked_at, &Some(AuditTarget::grant(&grant.id, "Claude Desktop"))));
    assert_eq!(events[0].details, json!({ "client_id": CLIENT_ID, "service": "alpha" }));
}

async fn a_code_of_a_revoked_grant_is_spent(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let (grant, code) = grant_for(&store, &acme, CLIENT_ID, t0()).await;
    let ctx = acme.ctx();
    let detected = store.revoke_grant(&grant.id, shift(t0(), 1_000), RevokeReason::ReuseDetected, &ctx).await;
    assert!(detected.unwrap().is_some());
    let (secrets, new) = tokens(&grant, shift(t0(), 2_000));
    assert!(!store.redeem_code(&code.digest(), shift(t0(), 2_000), &new, &ctx).await.unwrap());
    assert!(store.find_token(&secrets[0].digest()).await.unwrap().is_none());

    let events = oauth_events(&store, &acme).await;
    assert_eq!(actions(&events), ["oauth.reuse_detected", "oauth.consent"]);
    assert_eq!(events[0].details, json!({ "client_id": CLIENT_ID, "service": "alpha" }));
}

async fn tokens_are_revoked_one_by_one_and_purged_once_expired(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let (grant, access, refresh) = signed_in(&store, &acme).await;
    let at = shift(t0(), 3_000);
    assert!(store.revoke_token(&access.digest(), at).await.unwrap());
    assert!(store.revoke_token(&access.digest(), shift(at, 1)).await.unwrap(), "known, if revoked already");
    assert!(!store.revoke_token(&TokenDigest([7; 32]), at).await.unwrap());
    assert_eq!(store.find_token(&access.digest()).await.unwrap().unwrap().revoked_at, Some(at));
    assert_eq!(store.find_token(&refresh.digest()).await.unwrap().unwrap().revoked_at, None);
    assert!(store.get_grant(acme.tenant_id(), &grant.id).await.unwrap().unwrap().is_live(at));

    // The code expired a minute in, the access token an hour in; the refresh token lives on.
    let (_, code) = grant_for(&store, &acme, CLIENT_ID, shift(t0(), DAY)).await;
    assert_eq!(store.purge_expired_tokens(shift(t0(), 2 * MINUTE)).await.unwrap(), 1);
    assert_eq!(store.purge_expired_tokens(shift(t0(), 2 * 60 * MINUTE)).await.unwrap(), 1);
    assert!(store.find_token(&access.digest()).await.unwrap().is_none());
    assert!(store.find_token(&refresh.digest()).await.unwrap().is_some());
    assert!(store.find_code(&code.digest()).await.unwrap().is_some());
    assert_eq!(store.purge_expired_tokens(shift(t0(), 60 * DAY)).await.unwrap(), 2);
    assert!(store.find_token(&refresh.digest()).await.unwrap().is_none());
    assert!(store.get_grant(acme.tenant_id(), &grant.id).await.is_ok_and(|grant| grant.is_some()), "grants stay");
}

store_tests!(
    a_code_is_redeemed_once_however_many_race,
    a_refresh_token_rotates_once_however_many_race,
    revoking_a_grant_revokes_its_credential_and_tokens_once,
    a_code_of_a_revoked_grant_is_spent,
    tokens_are_revoked_one_by_one_and_purged_once_expired,
);
