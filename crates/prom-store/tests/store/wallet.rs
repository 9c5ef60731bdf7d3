//! A tenant's wallet cut into slices in the database: every budget of the tenant under its lock,
//! written together, and never from a read a settlement or an approval has made stale.

use prom_core::charge::{ChargeOp, ChargeOpResult, ExpiryMargins, NewCharge};
use prom_core::id::ChargeId;
use prom_core::money::Amount;
use prom_core::store::{BudgetStore, ChargeStore};
use prom_core::time::Timestamp;
use prom_core::wallet::WalletRead;
use prom_store::SqlStore;

use crate::support::{hasher, insert_key, owner_of, service_slug};

fn t0() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-27T10:00:00Z").unwrap()
}

async fn two_budgets_share_one_wallet_and_a_stale_read_writes_nothing(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let (_, key) = insert_key(&store, &hasher(), &acme, "agent", t0()).await;
    let tenant = acme.tenant_id().clone();
    let (alpha, beta) = (service_slug("alpha"), service_slug("beta"));
    // 100 approved for each; the wallet holds 100 and each settlement pays a fee of 5.
    for slug in [&alpha, &beta] {
        store.set_approved(&tenant, slug, Amount::new(100), None, Some(Amount::ZERO), None, None).await.unwrap();
    }
    let held = NewCharge {
        id: ChargeId::new(),
        tenant_id: tenant.clone(),
        service: alpha.clone(),
        key_id: key.id.clone(),
        tool: "search".into(),
        amount: Amount::new(30),
        at: t0(),
        cap: None,
    };
    // A budget never cut has no room: the first slice is 0.
    let refused = store.apply_charges(&[ChargeOp::Reserve(held.clone())], t0(), ExpiryMargins::NONE).await.unwrap();
    assert!(matches!(refused[0], ChargeOpResult::Refused { .. }), "{refused:?}");

    let seen = store.tenant_budgets(&tenant).await.unwrap();
    assert_eq!(seen.iter().map(|b| b.service.as_str()).collect::<Vec<_>>(), ["alpha", "beta"]);
    let rooms = vec![(alpha.clone(), Some(Amount::new(100))), (beta.clone(), Some(Amount::new(100)))];
    let wallet = WalletRead { balance: Amount::new(100), fee: Amount::new(5), rooms };
    assert!(store.slice_wallet(&tenant, &seen, &wallet, t0(), ExpiryMargins::NONE).await.unwrap());
    let caps: Vec<Option<Amount>> =
        store.tenant_budgets(&tenant).await.unwrap().iter().map(|budget| budget.ledger_cap).collect();
    assert_eq!(caps, [Some(Amount::new(45)), Some(Amount::new(45))], "100 less two fees, shared evenly");

    // A hold of 30 on alpha now fits; cut again with it open, alpha keeps it and the rest is shared.
    let held_now = store.apply_charges(&[ChargeOp::Reserve(held)], t0(), ExpiryMargins::NONE).await.unwrap();
    assert_eq!(held_now, [ChargeOpResult::Held]);
    let seen = store.tenant_budgets(&tenant).await.unwrap();
    // The rows count every node's holds.
    assert!(store.slice_wallet(&tenant, &seen, &wallet, t0(), ExpiryMargins::NONE).await.unwrap());
    let caps: Vec<Option<Amount>> =
        store.tenant_budgets(&tenant).await.unwrap().iter().map(|budget| budget.ledger_cap).collect();
    assert_eq!(caps, [Some(Amount::new(30 + 30)), Some(Amount::new(30))]);

    // An approval recorded after the read: the read is stale, nothing is written.
    store.set_approved(&tenant, &beta, Amount::new(1_000), None, Some(Amount::ZERO), None, None).await.unwrap();
    let rich = WalletRead { balance: Amount::new(10_000), ..wallet.clone() };
    assert!(!store.slice_wallet(&tenant, &seen, &rich, t0(), ExpiryMargins::NONE).await.unwrap());
    let caps = [(alpha.clone(), Amount::new(5_000)), (beta.clone(), Amount::new(5_000))];
    assert!(!store.set_ledger_caps(&tenant, &seen, &caps).await.unwrap());
    let after = store.tenant_budgets(&tenant).await.unwrap();
    assert!(after.iter().all(|budget| budget.ledger_cap <= Some(Amount::new(60))), "{after:?}");
    // Read again, it is written.
    assert!(store.set_ledger_caps(&tenant, &after, &caps).await.unwrap());
    store.close().await;
}

store_tests!(two_budgets_share_one_wallet_and_a_stale_read_writes_nothing);
