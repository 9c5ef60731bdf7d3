//! The charge book in the database: batches of holds, captures and releases applied in order
//! against each budget (never past what was approved), and charges resolved in memory written once
//! in their final state, merged with what others changed in the budget row meanwhile.

use prom_core::charge::{ChargeOp, ChargeOpResult, ChargeState, ExpiryMargins, NewCharge, ResolvedCharge};
use prom_core::id::{ChargeId, KeyId};
use prom_core::money::Amount;
use prom_core::oauth::OAuthStore;
use prom_core::store::{BudgetStore, ChargeStore, SettlementStore};
use prom_core::time::Timestamp;
use prom_store::SqlStore;

use crate::support::{hasher, insert_key, owner_of, service_slug, shift};

/// 2^100: amounts this large prove the arithmetic is exact.
const BIG: u128 = 1 << 100;

fn t0() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-27T10:00:00Z").unwrap()
}

fn hold(tenant: &prom_core::id::TenantId, key: &KeyId, amount: u128) -> NewCharge {
    NewCharge {
        id: ChargeId::new(),
        tenant_id: tenant.clone(),
        service: service_slug("alpha"),
        key_id: key.clone(),
        tool: "search".into(),
        amount: Amount::new(amount),
        at: t0(),
        cap: None,
    }
}

async fn a_batch_holds_in_order_and_never_past_the_approval(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let (_, key) = insert_key(&store, &hasher(), &acme, "agent", t0()).await;
    let tenant = acme.tenant_id().clone();
    let alpha = service_slug("alpha");
    store.set_approved(&tenant, &alpha, Amount::new(3 * BIG), None, None, None, None).await.unwrap();

    let (a, b, c) = (hold(&tenant, &key.id, BIG), hold(&tenant, &key.id, 2 * BIG), hold(&tenant, &key.id, 1));
    let ops = [ChargeOp::Reserve(a.clone()), ChargeOp::Reserve(b.clone()), ChargeOp::Reserve(c.clone())];
    let results = store.apply_charges(&ops, t0(), ExpiryMargins::NONE).await.unwrap();
    assert_eq!(
        results,
        [
            ChargeOpResult::Held,
            ChargeOpResult::Held,
            ChargeOpResult::Refused { available: Amount::ZERO, expiring: false }
        ]
    );

    // Capture one, release the other, and resolve the first again in the same batch: no effect.
    let ops = [ChargeOp::Capture(a.id.clone()), ChargeOp::Release(b.id.clone()), ChargeOp::Release(a.id.clone())];
    let results = store.apply_charges(&ops, shift(t0(), 5), ExpiryMargins::NONE).await.unwrap();
    assert_eq!(results, [ChargeOpResult::Done, ChargeOpResult::Done, ChargeOpResult::NotHeld]);
    assert_eq!(
        store.apply_charges(&[ChargeOp::Capture(c.id)], t0(), ExpiryMargins::NONE).await.unwrap(),
        [ChargeOpResult::NotHeld]
    );
    let budget = store.budget(&tenant, &alpha).await.unwrap();
    assert_eq!((budget.held, budget.unsettled), (Amount::ZERO, Amount::new(BIG)));
    assert_eq!(budget.available(t0(), ExpiryMargins::NONE), Ok(Amount::new(2 * BIG)));
}

async fn charges_resolved_in_memory_are_written_once_with_the_budget(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let (_, key) = insert_key(&store, &hasher(), &acme, "agent", t0()).await;
    let tenant = acme.tenant_id().clone();
    let alpha = service_slug("alpha");
    store.set_approved(&tenant, &alpha, Amount::new(10 * BIG), None, None, None, None).await.unwrap();

    let captured = hold(&tenant, &key.id, 2 * BIG);
    let released = hold(&tenant, &key.id, BIG);
    let resolved = [
        ResolvedCharge { charge: captured.clone(), state: ChargeState::Captured, resolved_at: shift(t0(), 7) },
        ResolvedCharge { charge: released.clone(), state: ChargeState::Released, resolved_at: shift(t0(), 8) },
    ];
    // Another call of the same budget is still in flight, holding 3 in memory.
    let after =
        store.record_resolved(&resolved, &[(tenant.clone(), alpha.clone(), Amount::new(3))], t0()).await.unwrap();
    // A charge counts once: written again in the next batch, PostgreSQL refuses it; the embedded
    // database journals it and its fold skips it (a fold is idempotent), before and after the
    // first write was folded.
    let twice = [ResolvedCharge { charge: captured.clone(), state: ChargeState::Captured, resolved_at: t0() }];
    assert_eq!(store.record_resolved(&twice, &[], t0()).await.is_ok(), store.single_process());
    let budget = store.budget(&tenant, &alpha).await.unwrap();
    assert_eq!(store.record_resolved(&twice, &[], t0()).await.is_ok(), store.single_process());
    assert_eq!(store.budget(&tenant, &alpha).await.unwrap(), budget);
    assert_eq!(budget.unsettled, Amount::new(2 * BIG));
    if store.single_process() {
        // The embedded database logs the charges; its budgets take them when the log is folded
        // (which every read of a budget does first), and never store holds kept in memory.
        assert!(after.is_empty());
        assert_eq!(budget.held, Amount::ZERO);
    } else {
        // PostgreSQL writes the budget at once, with the holds in memory, and returns it.
        assert_eq!(after, std::slice::from_ref(&budget));
        assert_eq!(budget.held, Amount::new(3));
    }

    // The rows are final: neither can be captured or released again, and only the capture settles.
    let again = [ChargeOp::Release(captured.id.clone()), ChargeOp::Capture(released.id.clone())];
    assert_eq!(
        store.apply_charges(&again, t0(), ExpiryMargins::NONE).await.unwrap(),
        [ChargeOpResult::NotHeld, ChargeOpResult::NotHeld]
    );
    let batch =
        store.open_settlement(&tenant, &alpha, 1, t0(), Amount::new(u128::MAX)).await.unwrap().expect("a batch");
    assert_eq!(batch.amount, Amount::new(2 * BIG));

    // An approval made meanwhile (settled restarts at zero) is what the next write builds on.
    store.set_approved(&tenant, &alpha, Amount::new(20 * BIG), None, None, None, None).await.unwrap();
    let more = hold(&tenant, &key.id, BIG);
    let resolved = [ResolvedCharge { charge: more, state: ChargeState::Captured, resolved_at: t0() }];
    let after = store.record_resolved(&resolved, &[], t0()).await.unwrap();
    let budget = store.budget(&tenant, &alpha).await.unwrap();
    assert_eq!(budget.approved, Amount::new(20 * BIG));
    assert_eq!(budget.unsettled, Amount::new(3 * BIG), "added to what the row held, not to a stale copy");
    if !store.single_process() {
        assert_eq!(after, std::slice::from_ref(&budget));
        assert_eq!(budget.held, Amount::new(3), "held is only ever set from memory, not by others");
    }

    // Nothing to write for a budget that was never approved.
    let stray = prom_core::charge::ResolvedCharge {
        charge: NewCharge { service: service_slug("nowhere"), ..hold(&tenant, &key.id, 1) },
        state: ChargeState::Captured,
        resolved_at: t0(),
    };
    assert!(store.record_resolved(std::slice::from_ref(&stray), &[], t0()).await.is_err());

    // A batch that fails half-way (a charge of no budget) changes nothing, and the next batch is
    // written normally: the failed write was rolled back (or never journaled), not left open.
    let before = store.budget(&tenant, &alpha).await.unwrap();
    let fresh = hold(&tenant, &key.id, BIG);
    let failing =
        [ResolvedCharge { charge: fresh.clone(), state: ChargeState::Captured, resolved_at: t0() }, stray.clone()];
    assert!(store.record_resolved(&failing, &[], t0()).await.is_err());
    assert_eq!(store.budget(&tenant, &alpha).await.unwrap(), before, "the failed batch left no trace");
    let retry = [ResolvedCharge { charge: fresh, state: ChargeState::Captured, resolved_at: t0() }];
    store.record_resolved(&retry, &[], t0()).await.unwrap();
    assert_eq!(store.budget(&tenant, &alpha).await.unwrap().unsettled, add(before.unsettled, BIG));
}

fn add(amount: Amount, more: u128) -> Amount {
    amount.checked_add(Amount::new(more)).expect("no overflow")
}

/// Settlement batches are bounded (1,000 charges), so a big backlog settles as several batches,
/// each opened after the last completed, covering every captured charge exactly once.
async fn a_backlog_settles_in_bounded_batches_covering_each_charge_once(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let (_, key) = insert_key(&store, &hasher(), &acme, "agent", t0()).await;
    let tenant = acme.tenant_id().clone();
    let alpha = service_slug("alpha");
    store.set_approved(&tenant, &alpha, Amount::new(10 * BIG), None, None, None, None).await.unwrap();
    // 2,500 captured charges: 2,499 of 1 and one of 2^100.
    let mut resolved: Vec<ResolvedCharge> = (0..2_499)
        .map(|_| ResolvedCharge { charge: hold(&tenant, &key.id, 1), state: ChargeState::Captured, resolved_at: t0() })
        .collect();
    resolved.push(ResolvedCharge {
        charge: hold(&tenant, &key.id, BIG),
        state: ChargeState::Captured,
        resolved_at: t0(),
    });
    store.record_resolved(&resolved, &[], t0()).await.unwrap();

    let mut batches = Vec::new();
    while let Some(batch) =
        store.open_settlement(&tenant, &alpha, 1 + batches.len() as u64, t0(), Amount::new(u128::MAX)).await.unwrap()
    {
        store.complete_settlement(&batch, batches.len() as u64, t0(), Amount::ZERO).await.unwrap();
        batches.push(batch.amount);
        assert!(batches.len() <= 3, "more batches than 2,500 charges need: {batches:?}");
    }
    assert_eq!(batches.len(), 3, "{batches:?}");
    let total = batches.iter().fold(Amount::ZERO, |sum, amount| sum.checked_add(*amount).unwrap());
    assert_eq!(total, Amount::new(BIG + 2_499), "every charge settled, none twice");
    let budget = store.budget(&tenant, &alpha).await.unwrap();
    assert_eq!((budget.unsettled, budget.settled), (Amount::ZERO, Amount::new(BIG + 2_499)));
}

async fn an_approval_and_its_audit_row_are_written_together_or_not_at_all(store: SqlStore) {
    use prom_core::audit::{AuditAction, AuditFilter, AuditTarget, NewAuditEvent};
    use prom_core::store::AuditStore;
    let acme = owner_of(&store, "acme").await;
    let tenant = acme.tenant_id().clone();
    let alpha = service_slug("alpha");
    let approval = |tenant: prom_core::id::TenantId, amount: u128| NewAuditEvent {
        at: t0(),
        tenant_id: Some(tenant),
        action: AuditAction::AllowanceApprove,
        context: acme.ctx(),
        target: Some(AuditTarget::service("alpha", "Alpha")),
        details: serde_json::json!({ "amount": amount.to_string() }),
    };
    store
        .set_approved(&tenant, &alpha, Amount::new(500), None, None, None, Some(&approval(tenant.clone(), 500)))
        .await
        .unwrap();
    // An audit row that cannot be written (its tenant does not exist) takes the approval with it.
    let nobody = prom_core::id::TenantId::new();
    let failed =
        store.set_approved(&tenant, &alpha, Amount::new(900), None, None, None, Some(&approval(nobody, 900))).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(store.budget(&tenant, &alpha).await.unwrap().approved, Amount::new(500), "the approval was undone");
    let filter = AuditFilter { action: Some(AuditAction::AllowanceApprove), ..crate::support::everything() };
    let rows = store.list_audit(&tenant, &filter).await.unwrap();
    let amounts: Vec<&serde_json::Value> = rows.iter().map(|row| &row.details["amount"]).collect();
    assert_eq!(amounts, [&serde_json::json!("500")], "one row per approval that happened");
}

async fn a_batch_takes_only_what_the_ledger_can_pay(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let (_, key) = insert_key(&store, &hasher(), &acme, "agent", t0()).await;
    let tenant = acme.tenant_id().clone();
    let alpha = service_slug("alpha");
    store.set_approved(&tenant, &alpha, Amount::new(1_000), None, None, None, None).await.unwrap();
    let resolved: Vec<ResolvedCharge> = (0..3)
        .map(|_| ResolvedCharge {
            charge: hold(&tenant, &key.id, 100),
            state: ChargeState::Captured,
            resolved_at: t0(),
        })
        .collect();
    store.record_resolved(&resolved, &[], t0()).await.unwrap();

    // Nothing fits in 99: no batch, nothing recorded.
    assert_eq!(store.open_settlement(&tenant, &alpha, 1, t0(), Amount::new(99)).await.unwrap(), None);
    assert!(store.pending_settlements().await.unwrap().is_empty());
    // 250 pays two of the three.
    let first = store.open_settlement(&tenant, &alpha, 2, t0(), Amount::new(250)).await.unwrap().expect("a batch");
    assert_eq!(first.amount, Amount::new(200));
    store.complete_settlement(&first, 1, t0(), Amount::ZERO).await.unwrap();
    let rest =
        store.open_settlement(&tenant, &alpha, 3, t0(), Amount::new(u128::MAX)).await.unwrap().expect("the rest");
    assert_eq!(rest.amount, Amount::new(100), "each charge in one batch only");
}

/// A spend cap on a credential (an OAuth grant's) bounds its holds together with the budget, in
/// the same batch; captures count against it for good, releases (a call that failed, or a hold
/// left by a crashed node and released as stale) give it back.
async fn a_spend_cap_bounds_holds_and_stale_holds_give_it_back(store: SqlStore) {
    let acme = owner_of(&store, "acme").await;
    let (_, key) = insert_key(&store, &hasher(), &acme, "agent", t0()).await;
    let tenant = acme.tenant_id().clone();
    let alpha = service_slug("alpha");
    store.set_approved(&tenant, &alpha, Amount::new(10 * BIG), None, None, None, None).await.unwrap();
    let capped = |amount| NewCharge { cap: Some(Amount::new(3 * BIG)), ..hold(&tenant, &key.id, amount) };

    let (a, b, c) = (capped(BIG), capped(BIG), capped(2 * BIG));
    let ops = [ChargeOp::Reserve(a.clone()), ChargeOp::Reserve(b.clone()), ChargeOp::Reserve(c)];
    let results = store.apply_charges(&ops, t0(), ExpiryMargins::NONE).await.unwrap();
    assert_eq!(
        results,
        [
            ChargeOpResult::Held,
            ChargeOpResult::Held,
            ChargeOpResult::CapReached { cap: Amount::new(3 * BIG), available: Amount::new(BIG) }
        ]
    );
    // An uncapped charge of the same key is not held to the cap.
    let free = hold(&tenant, &key.id, 5 * BIG);
    assert_eq!(
        store.apply_charges(&[ChargeOp::Reserve(free.clone())], t0(), ExpiryMargins::NONE).await.unwrap(),
        [ChargeOpResult::Held]
    );
    let ops = [ChargeOp::Capture(a.id.clone()), ChargeOp::Release(free.id.clone())];
    store.apply_charges(&ops, t0(), ExpiryMargins::NONE).await.unwrap();

    // `b` dies with its node: released as stale, its share of the cap comes back.
    assert_eq!(store.release_stale_holds(shift(t0(), 1)).await.unwrap(), 1);
    let d = capped(2 * BIG);
    assert_eq!(
        store
            .apply_charges(&[ChargeOp::Reserve(d.clone()), ChargeOp::Reserve(capped(1))], t0(), ExpiryMargins::NONE)
            .await
            .unwrap(),
        [ChargeOpResult::Held, ChargeOpResult::CapReached { cap: Amount::new(3 * BIG), available: Amount::ZERO }]
    );
    store.apply_charges(&[ChargeOp::Capture(d.id)], t0(), ExpiryMargins::NONE).await.unwrap();
    assert_eq!(store.spent_by_key(&key.id).await.unwrap(), Amount::new(3 * BIG));
}

store_tests!(
    a_spend_cap_bounds_holds_and_stale_holds_give_it_back,
    a_batch_takes_only_what_the_ledger_can_pay,
    an_approval_and_its_audit_row_are_written_together_or_not_at_all,
    a_batch_holds_in_order_and_never_past_the_approval,
    charges_resolved_in_memory_are_written_once_with_the_budget,
    a_backlog_settles_in_bounded_batches_covering_each_charge_once
);

/// Migration 0011 rebuilds the embedded database's `charges` with an explicit write order (`seq`)
/// and settles ranges of it: charges written before it keep their order and state, a batch
/// recorded before it (its charges named one by one) still completes as before, and the next
/// batch covers the captured charges after it without updating them — which `charges_settled`
/// shows as settled once the batch is done.
#[tokio::test]
async fn charges_and_batches_from_before_range_settlement_survive_its_migration() {
    use prom_core::id::TenantId;
    use prom_core::service::ServiceSlug;
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("store.sqlite3");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
    // Written by the previous version: a batch of 3 pending on the ledger, two captures of 4 and 6
    // owed, a release, and the budget they left.
    let old = crate::support::sqlite_before_migration(&options, 11).await;
    sqlx::query(
        "INSERT INTO tenants (id, slug, name, created_at) VALUES ('tenant', 'acme', 'Acme', 0); \
         INSERT INTO api_keys (id, tenant_id, label, environment, digest, last4, scopes, created_at) \
         VALUES ('key', 'tenant', 'agent', 'live', x'00', 'abcd', 'agent:connect', 0); \
         INSERT INTO budgets (tenant_id, service, approved, expires_at, held, unsettled, settled, updated_at) \
         VALUES ('tenant', 'alpha', '100', NULL, '0', '13', '0', 0); \
         INSERT INTO settlements (id, tenant_id, service, amount, created_at_time, state, created_at) \
         VALUES ('legacy', 'tenant', 'alpha', '3', '1', 'pending', 0); \
         INSERT INTO charges (id, tenant_id, service, key_id, tool, amount, state, created_at, resolved_at, settlement_id) VALUES \
         ('c1', 'tenant', 'alpha', 'key', 'fortune', '3', 'captured', 1, 1, 'legacy'), \
         ('c2', 'tenant', 'alpha', 'key', 'fortune', '5', 'released', 2, 2, NULL), \
         ('c3', 'tenant', 'alpha', 'key', 'fortune', '4', 'captured', 3, 3, NULL), \
         ('c4', 'tenant', 'alpha', 'key', 'fortune', '6', 'captured', 4, 4, NULL)",
    )
    .execute(&old)
    .await
    .unwrap();
    old.close().await;

    let store = SqlStore::open(&prom_store::Database::Sqlite { path: path.clone() }).await.unwrap();
    let (tenant, alpha) = (TenantId::from_trusted("tenant".into()), ServiceSlug::from_trusted("alpha".into()));
    let pending = store.pending_settlements().await.unwrap();
    assert_eq!(pending.len(), 1);
    store.complete_settlement(&pending[0], 1, t0(), Amount::ZERO).await.unwrap();
    // The next batch: the two captures after it, not the release, nor the charge already settled.
    let next = store.open_settlement(&tenant, &alpha, 2, t0(), Amount::new(u128::MAX)).await.unwrap().expect("a batch");
    assert_eq!(next.amount, Amount::new(10));
    let db = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let states = || {
        let db = db.clone();
        async move {
            sqlx::query_as::<_, (i64, String, String, Option<String>)>(
                "SELECT seq, id, state, settlement_id FROM charges_settled ORDER BY seq",
            )
            .fetch_all(&db)
            .await
            .unwrap()
        }
    };
    let batch = Some(next.id.as_str().to_owned());
    let legacy = Some("legacy".to_owned());
    let row = |seq, id: &str, state: &str, settlement: &Option<String>| {
        (seq, id.to_owned(), state.to_owned(), settlement.clone())
    };
    assert_eq!(
        states().await,
        [
            row(1, "c1", "settled", &legacy),
            row(2, "c2", "released", &None),
            row(3, "c3", "captured", &batch),
            row(4, "c4", "captured", &batch)
        ],
        "a pending batch's charges are not settled yet"
    );
    store.complete_settlement(&next, 2, t0(), Amount::ZERO).await.unwrap();
    assert_eq!(
        states().await,
        [
            row(1, "c1", "settled", &legacy),
            row(2, "c2", "released", &None),
            row(3, "c3", "settled", &batch),
            row(4, "c4", "settled", &batch)
        ]
    );
    let untouched: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT state, settlement_id FROM charges WHERE id IN ('c3', 'c4')")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(untouched, [("captured".to_owned(), None), ("captured".to_owned(), None)], "a range marks no charge");
    assert!(store.open_settlement(&tenant, &alpha, 3, t0(), Amount::new(u128::MAX)).await.unwrap().is_none());
    let budget = store.budget(&tenant, &alpha).await.unwrap();
    assert_eq!((budget.unsettled, budget.settled), (Amount::ZERO, Amount::new(13)));
    store.close().await;
    db.close().await;
}
