//! Password links: a member added by e-mail sets a password with one, once, before it expires;
//! the change is audited in each of the user's tenants.

use prom_core::access::Role;
use prom_core::audit::{AuditAction, AuditTarget};
use prom_core::id::UserId;
use prom_core::store::{AuditStore, NewPasswordLink, StoreError, UserStore};
use prom_core::time::Timestamp;
use prom_store::SqlStore;

use crate::support::{PASSWORD_HASH, by_action, email, owner_of};

const NEW_HASH: &str = "$argon2id$v=19$m=64,t=1,p=1$bmV3c2FsdA$bmV3aGFzaA";

fn link(digest: &[u8], user: &UserId, created_at: Timestamp) -> NewPasswordLink {
    NewPasswordLink {
        digest: digest.to_vec(),
        user_id: user.clone(),
        created_at,
        expires_at: created_at.plus_seconds(3600),
    }
}

async fn a_link_sets_the_password_once(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let zeta = owner_of(&store, "zeta").await;
    let (bob, _) =
        store.add_member(acme.tenant_id(), &email("bob@example.com"), Role::Member, &acme.ctx()).await.unwrap();
    store.add_member(zeta.tenant_id(), &bob.email, Role::Admin, &zeta.ctx()).await.unwrap();
    let now = Timestamp::now();
    store.create_password_link(link(b"first-link", &bob.id, now)).await.unwrap();
    store.create_password_link(link(b"second-link", &bob.id, now)).await.unwrap();

    let at = now.plus_seconds(60);
    let user = store.redeem_password_link(b"first-link", NEW_HASH, at, &acme.ctx()).await.unwrap();
    assert_eq!((user.id.clone(), user.password_hash.as_str()), (bob.id.clone(), NEW_HASH));
    assert_eq!(store.find_user_by_email(&bob.email).await.unwrap().unwrap().password_hash, NEW_HASH);
    let members = store.list_members(acme.tenant_id()).await.unwrap();
    assert!(members.iter().all(|member| member.has_password), "{members:?}");

    for digest in [&b"first-link"[..], b"second-link", b"never-made"] {
        let again = store.redeem_password_link(digest, PASSWORD_HASH, at, &acme.ctx()).await;
        assert!(matches!(again, Err(StoreError::NotFound)), "{again:?}");
    }
    assert_eq!(store.find_user_by_email(&bob.email).await.unwrap().unwrap().password_hash, NEW_HASH);

    for owner in [&acme, &zeta] {
        let events = store.list_audit(owner.tenant_id(), &by_action(AuditAction::UserPasswordSet)).await.unwrap();
        assert_eq!(events.len(), 1, "one row in each of the user's tenants: {events:?}");
        assert_eq!(events[0].at, at);
        assert_eq!(events[0].target, Some(AuditTarget::user(&bob.id, &bob.email)));
    }
}

async fn an_expired_link_does_nothing(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let now = Timestamp::now();
    store.create_password_link(link(b"link", &acme.user.id, now)).await.unwrap();
    let late = store.redeem_password_link(b"link", NEW_HASH, now.plus_seconds(3600), &acme.ctx()).await;
    assert!(matches!(late, Err(StoreError::NotFound)), "{late:?}");
    assert_eq!(store.find_user_by_email(&acme.user.email).await.unwrap().unwrap().password_hash, PASSWORD_HASH);
    assert!(store.list_audit(acme.tenant_id(), &by_action(AuditAction::UserPasswordSet)).await.unwrap().is_empty());

    let unknown_user = store.create_password_link(link(b"other", &UserId::new(), now)).await;
    assert!(matches!(unknown_user, Err(StoreError::NotFound)), "{unknown_user:?}");
}

async fn of_concurrent_redemptions_one_succeeds(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    store.create_password_link(link(b"link", &acme.user.id, Timestamp::now())).await.unwrap();
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let (store, ctx) = (store.clone(), acme.ctx());
            tokio::spawn(async move { store.redeem_password_link(b"link", NEW_HASH, Timestamp::now(), &ctx).await })
        })
        .collect();
    let mut redeemed = 0;
    for attempt in attempts {
        let result = attempt.await.unwrap();
        assert!(matches!(result, Ok(_) | Err(StoreError::NotFound)), "{result:?}");
        redeemed += usize::from(result.is_ok());
    }
    assert_eq!(redeemed, 1);
    let events = store.list_audit(acme.tenant_id(), &by_action(AuditAction::UserPasswordSet)).await.unwrap();
    assert_eq!(events.len(), 1);
}

store_tests!(a_link_sets_the_password_once, an_expired_link_does_nothing, of_concurrent_redemptions_one_succeeds);
