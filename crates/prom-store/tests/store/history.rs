//! Money that moved, as the dashboard shows it: a tenant's settlement batches (with the ledger's
//! block and fee), and a publisher's earnings by service and UTC day, from every paying tenant.

use prom_core::charge::{ChargeOp, ChargeOpResult, ChargeState, ExpiryMargins, NewCharge, ResolvedCharge};
use prom_core::id::ChargeId;
use prom_core::money::Amount;
use prom_core::store::{BudgetStore, ChargeStore, EarningRow, KeyRecord, ServiceStore, SettlementStore};
use prom_core::time::Timestamp;
use prom_store::SqlStore;

use crate::support::{Owner, hasher, insert_key, new_service, owner_of, service_slug, shift};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2^100: sums this large prove the arithmetic is exact.
const BIG: u128 = 1 << 100;

fn t0() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-23T10:00:00Z").unwrap()
}

/// How a charge ends up.
#[derive(Clone, Copy)]
enum End {
    Captured,
    Released,
    StillHeld,
    /// Captured, and written once in its final state (journaled, on the embedded database).
    Resolved,
}

fn new_charge(key: &KeyRecord, service: &str, amount: u128, at: Timestamp) -> NewCharge {
    NewCharge {
        id: ChargeId::new(),
        tenant_id: key.tenant_id.clone(),
        service: service_slug(service),
        key_id: key.id.clone(),
        tool: "search".into(),
        amount: Amount::new(amount),
        at,
        cap: None,
    }
}

async fn charge(store: &SqlStore, key: &KeyRecord, service: &str, amount: u128, at: Timestamp, end: End) {
    let charge = new_charge(key, service, amount, at);
    if let End::Resolved = end {
        let resolved = ResolvedCharge { charge, state: ChargeState::Captured, resolved_at: shift(at, 10) };
        store.record_resolved(&[resolved], &[], at).await.unwrap();
        return;
    }
    let id = charge.id.clone();
    let held = store.apply_charges(&[ChargeOp::Reserve(charge)], at, ExpiryMargins::NONE).await.unwrap();
    assert_eq!(held, [ChargeOpResult::Held]);
    let resolve = match end {
        End::Captured => ChargeOp::Capture(id),
        End::Released => ChargeOp::Release(id),
        End::StillHeld | End::Resolved => return,
    };
    let done = store.apply_charges(&[resolve], shift(at, 10), ExpiryMargins::NONE).await.unwrap();
    assert_eq!(done, [ChargeOpResult::Done]);
}

/// A tenant with a key and an unlimited approval for each of `services`.
async fn payer(store: &SqlStore, tenant: &str, services: &[&str]) -> (Owner, KeyRecord) {
    let owner = owner_of(store, tenant).await;
    let (_, key) = insert_key(store, &hasher(), &owner, "agent", t0()).await;
    for service in services {
        store
            .set_approved(owner.tenant_id(), &service_slug(service), Amount::new(u128::MAX), None, None, None, None)
            .await
            .unwrap();
    }
    (owner, key)
}

/// Settles everything `tenant` owes for `service` in one batch, done at `at`.
async fn settle(store: &SqlStore, owner: &Owner, service: &str, at: Timestamp, block: u64, fee: u128) -> Amount {
    let batch = store
        .open_settlement(owner.tenant_id(), &service_slug(service), block, at, Amount::new(u128::MAX))
        .await
        .unwrap()
        .expect("something to settle");
    store.complete_settlement(&batch, block, shift(at, 1_000), Amount::new(fee)).await.unwrap();
    batch.amount
}

fn earning(service: &str, day: &str, calls: u64, charged: u128, settled: u128) -> EarningRow {
    EarningRow {
        service: service_slug(service),
        day: day.into(),
        calls,
        charged: Amount::new(charged),
        settled: Amount::new(settled),
    }
}

async fn settlements_are_listed_newest_first_with_block_and_fee(store: SqlStore) {
    let publisher = owner_of(&store, "publisher").await;
    for slug in ["alpha", "beta"] {
        store.create_service(new_service(&publisher, slug, shift(t0(), -DAY)), &publisher.ctx()).await.unwrap();
    }
    let (acme, key) = payer(&store, "acme", &["alpha", "beta"]).await;
    let (rival, rival_key) = payer(&store, "rival", &["alpha"]).await;
    charge(&store, &key, "alpha", 100, t0(), End::Captured).await;
    charge(&store, &key, "alpha", 250, t0(), End::Captured).await;
    charge(&store, &key, "beta", 7, t0(), End::Captured).await;
    charge(&store, &rival_key, "alpha", 1, t0(), End::Captured).await;

    assert_eq!(settle(&store, &acme, "alpha", shift(t0(), HOUR), 7, 10).await, Amount::new(350));
    let beta = store
        .open_settlement(acme.tenant_id(), &service_slug("beta"), 8, shift(t0(), 2 * HOUR), Amount::new(u128::MAX))
        .await
        .unwrap()
        .unwrap();
    settle(&store, &rival, "alpha", shift(t0(), 3 * HOUR), 9, 10).await;

    let listed = store.list_settlements(acme.tenant_id(), 10).await.unwrap();
    let summary: Vec<_> = listed
        .iter()
        .map(|s| (s.service.as_str(), s.amount, s.fee, s.state.as_str(), s.ledger_ref.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("beta", Amount::new(7), Amount::ZERO, "pending", None),
            ("alpha", Amount::new(350), Amount::new(10), "done", Some("7")),
        ]
    );
    assert_eq!(listed[0].id, beta.id.as_str());
    assert_eq!((listed[0].created_at, listed[0].completed_at), (shift(t0(), 2 * HOUR), None));
    assert_eq!((listed[1].created_at, listed[1].completed_at), (shift(t0(), HOUR), Some(shift(t0(), HOUR + 1_000))));

    store.set_settlement_in_doubt(&beta.id, true).await.unwrap();
    let newest = store.list_settlements(acme.tenant_id(), 1).await.unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].state, "in_doubt");
    assert_eq!(store.list_settlements(rival.tenant_id(), 10).await.unwrap().len(), 1, "each tenant its own");
}

async fn a_publisher_earns_from_every_payer_by_service_and_day(store: SqlStore) {
    let publisher = owner_of(&store, "publisher").await;
    let other = owner_of(&store, "other").await;
    for slug in ["alpha", "beta"] {
        store.create_service(new_service(&publisher, slug, shift(t0(), -DAY)), &publisher.ctx()).await.unwrap();
    }
    store.create_service(new_service(&other, "gamma", shift(t0(), -DAY)), &other.ctx()).await.unwrap();
    let (acme, key) = payer(&store, "acme", &["alpha", "beta", "gamma"]).await;
    let (_, zeta_key) = payer(&store, "zeta", &["alpha"]).await;

    charge(&store, &key, "alpha", 100, t0(), End::Captured).await;
    charge(&store, &key, "alpha", 100, shift(t0(), HOUR), End::Captured).await;
    charge(&store, &key, "alpha", 100, shift(t0(), HOUR), End::Released).await;
    charge(&store, &key, "alpha", 100, shift(t0(), HOUR), End::StillHeld).await;
    charge(&store, &zeta_key, "alpha", 100, shift(t0(), 2 * HOUR), End::Captured).await;
    charge(&store, &key, "beta", BIG, shift(t0(), 3 * HOUR), End::Captured).await;
    charge(&store, &key, "beta", BIG, shift(t0(), 4 * HOUR), End::Captured).await;
    charge(&store, &key, "gamma", 999, t0(), End::Captured).await;
    charge(&store, &key, "alpha", 250, shift(t0(), DAY), End::Captured).await;
    // acme's alpha charges so far are settled; later ones are not.
    assert_eq!(settle(&store, &acme, "alpha", shift(t0(), DAY + HOUR), 1, 0).await, Amount::new(450));
    charge(&store, &key, "alpha", 5, shift(t0(), DAY + 2 * HOUR), End::Resolved).await;
    charge(&store, &key, "alpha", 5, shift(t0(), 2 * DAY), End::Captured).await;

    let earnings = store.publisher_earnings(publisher.tenant_id(), t0(), shift(t0(), 2 * DAY)).await.unwrap();
    assert_eq!(
        earnings,
        [
            earning("alpha", "2026-11-24", 2, 255, 250),
            earning("alpha", "2026-11-23", 3, 300, 200),
            earning("beta", "2026-11-23", 2, 2 * BIG, 0),
        ],
        "newest day first, then by service; the range ends before its end"
    );
    let one_day =
        store.publisher_earnings(publisher.tenant_id(), shift(t0(), DAY), shift(t0(), 2 * DAY)).await.unwrap();
    assert_eq!(one_day, [earning("alpha", "2026-11-24", 2, 255, 250)]);
    let others = store.publisher_earnings(other.tenant_id(), t0(), shift(t0(), 2 * DAY)).await.unwrap();
    assert_eq!(others, [earning("gamma", "2026-11-23", 1, 999, 0)]);
    assert!(store.publisher_earnings(acme.tenant_id(), t0(), shift(t0(), 2 * DAY)).await.unwrap().is_empty());
}

async fn a_slug_that_changes_publisher_keeps_each_ones_earnings(store: SqlStore) {
    let first = owner_of(&store, "first").await;
    let second = owner_of(&store, "second").await;
    store.create_service(new_service(&first, "delta", shift(t0(), -DAY)), &first.ctx()).await.unwrap();
    let (acme, key) = payer(&store, "acme", &["delta"]).await;
    charge(&store, &key, "delta", 100, t0(), End::Captured).await;
    settle(&store, &acme, "delta", shift(t0(), HOUR), 1, 0).await;
    store.delete_service(first.tenant_id(), &service_slug("delta"), shift(t0(), 2 * HOUR), &first.ctx()).await.unwrap();

    store.create_service(new_service(&second, "delta", shift(t0(), 3 * HOUR)), &second.ctx()).await.unwrap();
    store
        .set_approved(acme.tenant_id(), &service_slug("delta"), Amount::new(u128::MAX), None, None, None, None)
        .await
        .unwrap();
    // The wallet is cut again for the new service (the old one's slice ended with it).
    let seen = store.tenant_budgets(acme.tenant_id()).await.unwrap();
    let caps = [(service_slug("delta"), Amount::new(u128::MAX))];
    assert!(store.set_ledger_caps(acme.tenant_id(), &seen, &caps).await.unwrap());
    charge(&store, &key, "delta", 300, shift(t0(), 4 * HOUR), End::Captured).await;

    let range = (t0(), shift(t0(), DAY));
    let earned = store.publisher_earnings(first.tenant_id(), range.0, range.1).await.unwrap();
    assert_eq!(earned, [earning("delta", "2026-11-23", 1, 100, 100)]);
    let earned = store.publisher_earnings(second.tenant_id(), range.0, range.1).await.unwrap();
    assert_eq!(earned, [earning("delta", "2026-11-23", 1, 300, 0)]);
}

store_tests!(
    settlements_are_listed_newest_first_with_block_and_fee,
    a_publisher_earns_from_every_payer_by_service_and_day,
    a_slug_that_changes_publisher_keeps_each_ones_earnings,
);
