//! The charge book: budgets and charges, changed in batches (group commit).
//!
//! `apply_charges` runs a whole batch in one transaction. It first locks every budget the batch
//! touches, in a fixed order (a no-op `UPDATE` takes PostgreSQL's row lock; SQLite's single writer
//! already serialises), reads them, applies the operations in memory with exact `u128`
//! arithmetic, then writes the charges and the changed budgets back. The no-overspend invariant
//! `held + unsettled + settled <= approved` is checked for every hold against the locked, current
//! budget.

use std::collections::BTreeMap;

use async_trait::async_trait;
use prom_core::charge::{
    Budget, ChargeOp, ChargeOpResult, ChargeState, ExpiryMargins, HoldEnd, HoldOutcome, MoneyError, NewCharge,
    ResolvedCharge,
};
use prom_core::id::TenantId;
use prom_core::limit::SpendLimit;
use prom_core::money::Amount;
use prom_core::service::ServiceSlug;
use prom_core::store::{ChargeStore, StoreError, StoreResult};
use prom_core::time::Timestamp;

use crate::limits::{insert_limit, lock_and_read_limit, spent_amounts, write_limit};
use crate::{SqlStore, db_err, with_read, with_write};

#[derive(sqlx::FromRow)]
pub(crate) struct BudgetRow {
    tenant_id: String,
    service: String,
    approved: String,
    expires_at: Option<i64>,
    held: String,
    unsettled: String,
    settled: String,
    ceiling: Option<String>,
    ledger_cap: Option<String>,
    prices: Option<String>,
}

/// A budget whose arithmetic does not add up is a corrupt store.
pub(crate) fn corrupt(err: MoneyError) -> StoreError {
    StoreError::Corrupt(err.to_string())
}

fn amount(raw: &str) -> StoreResult<Amount> {
    raw.parse().map_err(|_| StoreError::Corrupt(format!("stored amount {raw:?} is not a decimal")))
}

impl TryFrom<BudgetRow> for Budget {
    type Error = StoreError;

    fn try_from(row: BudgetRow) -> StoreResult<Self> {
        Ok(Budget {
            approved: amount(&row.approved)?,
            held: amount(&row.held)?,
            unsettled: amount(&row.unsettled)?,
            settled: amount(&row.settled)?,
            ceiling: row.ceiling.as_deref().map(amount).transpose()?,
            ledger_cap: row.ledger_cap.as_deref().map(amount).transpose()?,
            prices: row
                .prices
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|err| StoreError::Corrupt(format!("a budget's approved prices: {err}")))?,
            expires_at: row.expires_at.map(Timestamp::from_millis),
            tenant_id: TenantId::from_trusted(row.tenant_id),
            service: ServiceSlug::from_trusted(row.service),
        })
    }
}

#[derive(sqlx::FromRow)]
struct ChargeRow {
    id: String,
    tenant_id: String,
    service: String,
    key_id: String,
    amount: String,
    capped: bool,
}

/// Takes a budget's row lock for the rest of the transaction (PostgreSQL; SQLite's single writer
/// already serialises), with any executor of either backend. Always lock before reading a budget
/// that is about to change.
macro_rules! lock_budget {
    ($executor:expr, $tenant:expr, $service:expr) => {
        sqlx::query("UPDATE budgets SET updated_at = updated_at WHERE tenant_id = $1 AND service = $2")
            .bind($tenant)
            .bind($service)
            .execute($executor)
            .await
            .map_err($crate::db_err)
    };
}
pub(crate) use lock_budget;

/// Most rows bound in one statement (each row binds at most 9 values: far below both databases'
/// limits on bound parameters).
const ROWS_PER_STATEMENT: usize = 256;

pub(crate) const BUDGET_COLUMNS: &str =
    "tenant_id, service, approved, expires_at, held, unsettled, settled, ceiling, ledger_cap, prices";

/// Locks a budget's row for the rest of the transaction and reads it, in one round trip: the
/// no-op update takes PostgreSQL's row lock (SQLite's single writer already serialises) and
/// returns the row (`None` when nothing was ever approved).
macro_rules! lock_and_read_budget {
    ($executor:expr, $tenant:expr, $service:expr) => {
        sqlx::query_as::<_, $crate::charges::BudgetRow>(&format!(
            "UPDATE budgets SET updated_at = updated_at WHERE tenant_id = $1 AND service = $2 RETURNING {}",
            $crate::charges::BUDGET_COLUMNS
        ))
        .bind($tenant)
        .bind($service)
        .fetch_optional($executor)
        .await
        .map_err($crate::db_err)
    };
}
pub(crate) use lock_and_read_budget;

/// Writes a locked budget's `held` and `unsettled` back.
macro_rules! write_budget_totals {
    ($executor:expr, $budget:expr, $at:expr) => {{
        let budget: &Budget = $budget;
        sqlx::query(
            "UPDATE budgets SET held = $1, unsettled = $2, updated_at = $3 WHERE tenant_id = $4 AND service = $5",
        )
        .bind(budget.held.to_string())
        .bind(budget.unsettled.to_string())
        .bind($at.as_millis())
        .bind(budget.tenant_id.as_str())
        .bind(budget.service.as_str())
        .execute($executor)
        .await
        .map_err($crate::db_err)
    }};
}

/// Appends the column list and the values of charges in their final state to an insert into
/// `charges` (PostgreSQL; the embedded database journals them, see `journal.rs`).
macro_rules! push_resolved_values {
    ($builder:expr, $chunk:expr) => {
        $builder.push("(id, tenant_id, service, key_id, tool, amount, state, created_at, resolved_at) ").push_values(
            $chunk,
            |mut row, resolved: &ResolvedCharge| {
                let charge = &resolved.charge;
                row.push_bind(charge.id.as_str())
                    .push_bind(charge.tenant_id.as_str())
                    .push_bind(charge.service.as_str())
                    .push_bind(charge.key_id.as_str())
                    .push_bind(charge.tool.as_str())
                    .push_bind(charge.amount.to_string())
                    .push_bind(resolved.state.as_str())
                    .push_bind(charge.at.as_millis())
                    .push_bind(resolved.resolved_at.as_millis());
            },
        )
    };
}

/// Moves what a previous version left in the charge log (migration 0008; this version journals
/// charges in a file instead, see `journal.rs`) into `charges` and the budgets, in one
/// transaction, when the embedded database is opened. Returns how many charges were folded.
pub(crate) async fn fold_charge_log(read: &sqlx::SqlitePool, write: &sqlx::SqlitePool) -> StoreResult<usize> {
    let logged: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM charge_log)").fetch_one(read).await.map_err(db_err)?;
    if !logged {
        return Ok(0);
    }
    // The write lock first: another process may fold or write meanwhile, and a read transaction
    // could not then become a write one.
    let mut tx = write.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT tenant_id, service, state, amount FROM charge_log")
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
    let captured = captured_by_budget(
        rows.iter().map(|(t, s, state, raw)| (t.as_str(), s.as_str(), state.as_str(), raw.as_str())),
    )?;
    add_captured_to_budgets(&mut tx, &captured, Timestamp::now()).await?;
    sqlx::query(
        "INSERT INTO charges (id, tenant_id, service, key_id, tool, amount, state, created_at, resolved_at) \
         SELECT id, tenant_id, service, key_id, tool, amount, state, created_at, resolved_at FROM charge_log; \
         DELETE FROM charge_log",
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(rows.len())
}

/// What the captures among resolved charges, given as `(tenant, service, state, amount)`, add to
/// each budget (a fold of the embedded database).
pub(crate) fn captured_by_budget<'a>(
    charges: impl IntoIterator<Item = (&'a str, &'a str, &'a str, &'a str)>,
) -> StoreResult<BTreeMap<(TenantId, ServiceSlug), Amount>> {
    let mut captured: BTreeMap<(TenantId, ServiceSlug), Amount> = BTreeMap::new();
    for (tenant, service, state, raw) in charges {
        if state == ChargeState::Captured.as_str() {
            let key = (TenantId::from_trusted(tenant.to_owned()), ServiceSlug::from_trusted(service.to_owned()));
            let total = captured.entry(key).or_insert(Amount::ZERO);
            *total = add(*total, amount(raw)?)?;
        }
    }
    Ok(captured)
}

/// Adds what was captured to each budget's `unsettled`, under its lock, in a fixed order (a fold
/// of the embedded database).
pub(crate) async fn add_captured_to_budgets(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    captured: &BTreeMap<(TenantId, ServiceSlug), Amount>,
    at: Timestamp,
) -> StoreResult<()> {
    for (key, delta) in captured {
        let row = lock_and_read_budget!(&mut **tx, key.0.as_str(), key.1.as_str())?;
        let budget = after_resolved(row, key, *delta, &[])?;
        write_budget_totals!(&mut **tx, &budget, at)?;
    }
    Ok(())
}

/// A budget's row as a batch of resolved charges leaves it: `delta` more unsettled, and the
/// holds the book has in memory (`held`), when it named this budget.
fn after_resolved(
    row: Option<BudgetRow>,
    (tenant, service): &(TenantId, ServiceSlug),
    delta: Amount,
    held: &[(TenantId, ServiceSlug, Amount)],
) -> StoreResult<Budget> {
    let Some(row) = row else {
        return Err(StoreError::Corrupt(format!("charges resolved for {tenant}/{service}, which has no budget")));
    };
    let mut budget: Budget = row.try_into()?;
    budget.add_unsettled(delta).map_err(corrupt)?;
    if let Some((_, _, total)) = held.iter().find(|(t, s, _)| t == tenant && s == service) {
        budget.held = *total;
    }
    Ok(budget)
}

/// Adds or subtracts, refusing to go below zero or past u128 (a corrupt book, never a user error).
fn add(a: Amount, b: Amount) -> StoreResult<Amount> {
    a.checked_add(b).ok_or_else(|| StoreError::Corrupt("an amount overflowed".into()))
}

#[async_trait]
impl ChargeStore for SqlStore {
    fn single_process(&self) -> bool {
        matches!(self.backend, crate::Backend::Sqlite { .. })
    }

    async fn apply_charges(
        &self,
        ops: &[ChargeOp],
        at: Timestamp,
        margins: ExpiryMargins,
    ) -> StoreResult<Vec<ChargeOpResult>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        // A constant number of statements per batch, however many operations it carries: one read
        // of the charges being resolved, one lock-and-read per budget, one multi-row insert of the
        // new holds, one update per resolved state, one write per changed budget.
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;

            // The held charges that captures and releases refer to (with the key id of those held
            // under a spend limit).
            let mut held: BTreeMap<String, (TenantId, ServiceSlug, Option<String>, Amount)> = BTreeMap::new();
            let resolving: Vec<&str> = ops
                .iter()
                .filter_map(|op| match op {
                    ChargeOp::Capture(id) | ChargeOp::Release(id) => Some(id.as_str()),
                    ChargeOp::Reserve(_) => None,
                })
                .collect();
            for chunk in resolving.chunks(ROWS_PER_STATEMENT) {
                let mut select = sqlx::QueryBuilder::new(
                    "SELECT id, tenant_id, service, key_id, amount, capped FROM charges WHERE state = 'held' AND id IN (",
                );
                let mut ids = select.separated(", ");
                for id in chunk {
                    ids.push_bind(*id);
                }
                select.push(")");
                let rows: Vec<ChargeRow> = select.build_query_as().fetch_all(&mut *tx).await.map_err(db_err)?;
                for row in rows {
                    let charge = (
                        TenantId::from_trusted(row.tenant_id),
                        ServiceSlug::from_trusted(row.service),
                        row.capped.then_some(row.key_id),
                        amount(&row.amount)?,
                    );
                    held.insert(row.id, charge);
                }
            }

            // Every budget touched, locked and read in a fixed order (no deadlock between nodes).
            let mut keys: Vec<(TenantId, ServiceSlug)> = ops
                .iter()
                .filter_map(|op| match op {
                    ChargeOp::Reserve(new) => Some((new.tenant_id.clone(), new.service.clone())),
                    _ => None,
                })
                .chain(held.values().map(|(tenant, service, _, _)| (tenant.clone(), service.clone())))
                .collect();
            keys.sort();
            keys.dedup();
            let mut budgets: BTreeMap<(TenantId, ServiceSlug), Budget> = BTreeMap::new();
            for (tenant, service) in keys {
                let row = lock_and_read_budget!(&mut *tx, tenant.as_str(), service.as_str())?;
                let budget = match row {
                    Some(row) => row.try_into()?,
                    None => Budget::empty(tenant.clone(), service.clone()),
                };
                budgets.insert((tenant, service), budget);
            }

            // The spend limits of the credentials involved, locked after the budgets, in key order.
            let capped: Vec<&str> = ops
                .iter()
                .filter_map(|op| match op {
                    ChargeOp::Reserve(new) if new.cap.is_some() => Some(new.key_id.as_str()),
                    _ => None,
                })
                .collect();
            let mut limit_keys: Vec<&str> =
                capped.iter().copied().chain(held.values().filter_map(|(_, _, key, _)| key.as_deref())).collect();
            limit_keys.sort_unstable();
            limit_keys.dedup();
            let mut limits: BTreeMap<String, SpendLimit> = BTreeMap::new();
            for key in limit_keys {
                let mut row = lock_and_read_limit!(&mut *tx, key)?;
                if row.is_none() && capped.contains(&key) {
                    let spent = crate::limits::sum(&spent_amounts!(&mut *tx, key)?)?;
                    insert_limit!(&mut *tx, key, spent)?;
                    row = lock_and_read_limit!(&mut *tx, key)?;
                }
                if let Some(row) = row {
                    let (held_amount, spent) = crate::limits::parse(&row)?;
                    limits.insert(key.to_owned(), SpendLimit { cap: Amount::ZERO, held: held_amount, spent });
                }
            }
            let mut limits_changed: Vec<String> = Vec::new();

            // The operations, in order, in memory.
            let mut results = Vec::with_capacity(ops.len());
            let mut holds: Vec<NewCharge> = Vec::new();
            let mut captured: Vec<&str> = Vec::new();
            let mut released: Vec<&str> = Vec::new();
            let mut changed: Vec<(TenantId, ServiceSlug)> = Vec::new();
            for op in ops {
                let result = match op {
                    ChargeOp::Reserve(new) => {
                        let key = (new.tenant_id.clone(), new.service.clone());
                        let Some(budget) = budgets.get_mut(&key) else {
                            results.push(ChargeOpResult::Refused { available: Amount::ZERO, expiring: false });
                            continue;
                        };
                        let Some(price) = budget.price_in_force(&new.tool, new.amount) else {
                            results.push(ChargeOpResult::PriceNotApproved);
                            continue;
                        };
                        let mut limit = None;
                        if let Some(cap) = new.cap {
                            let Some(found) = limits.get_mut(new.key_id.as_str()) else {
                                return Err(StoreError::Corrupt(format!("no spend limit row for {}", new.key_id)));
                            };
                            found.cap = cap;
                            if !found.fits(price) {
                                results.push(ChargeOpResult::CapReached { cap, available: found.available() });
                                continue;
                            }
                            limit = Some(found);
                        }
                        match budget.hold(price, at, margins).map_err(corrupt)? {
                            HoldOutcome::Refused { available, expiring } => ChargeOpResult::Refused { available, expiring },
                            HoldOutcome::Held => {
                                if let Some(limit) = limit {
                                    limit.hold(price).map_err(corrupt)?;
                                    limits_changed.push(new.key_id.to_string());
                                }
                                holds.push(NewCharge { amount: price, ..new.clone() });
                                changed.push(key);
                                ChargeOpResult::Held
                            }
                        }
                    }
                    ChargeOp::Capture(id) | ChargeOp::Release(id) => match held.remove(id.as_str()) {
                        None => ChargeOpResult::NotHeld,
                        Some((tenant, service, key_id, charged)) => {
                            let key = (tenant, service);
                            let budget = budgets
                                .get_mut(&key)
                                .ok_or_else(|| StoreError::Corrupt(format!("charge {id} has no budget")))?;
                            let capture = matches!(op, ChargeOp::Capture(_));
                            changed.push(key);
                            let ended = budget.end_hold(charged, capture, at, margins).map_err(corrupt)?;
                            if let Some(key_id) = key_id {
                                let limit = limits.get_mut(&key_id).ok_or_else(|| {
                                    StoreError::Corrupt(format!("charge {id} was held under a limit that is gone"))
                                })?;
                                limit.end_hold(charged, ended == HoldEnd::Captured).map_err(corrupt)?;
                                limits_changed.push(key_id);
                            }
                            match ended {
                                HoldEnd::Captured => {
                                    captured.push(id.as_str());
                                    ChargeOpResult::Done
                                }
                                HoldEnd::Released => {
                                    released.push(id.as_str());
                                    ChargeOpResult::Done
                                }
                                // Too late to settle before the allowance expires: released.
                                HoldEnd::Expired => {
                                    released.push(id.as_str());
                                    ChargeOpResult::Expired
                                }
                            }
                        }
                    },
                };
                results.push(result);
            }

            // Written back in a few statements.
            for chunk in holds.chunks(ROWS_PER_STATEMENT) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO charges (id, tenant_id, service, key_id, tool, amount, state, created_at, capped) ",
                );
                insert.push_values(chunk, |mut row, new| {
                    row.push_bind(new.id.as_str())
                        .push_bind(new.tenant_id.as_str())
                        .push_bind(new.service.as_str())
                        .push_bind(new.key_id.as_str())
                        .push_bind(new.tool.as_str())
                        .push_bind(new.amount.to_string())
                        .push_bind(ChargeState::Held.as_str())
                        .push_bind(new.at.as_millis())
                        .push_bind(new.cap.is_some());
                });
                insert.build().execute(&mut *tx).await.map_err(db_err)?;
            }
            for (state, ids) in [(ChargeState::Captured, &captured), (ChargeState::Released, &released)] {
                for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                    let mut update = sqlx::QueryBuilder::new("UPDATE charges SET state = ");
                    update.push_bind(state.as_str()).push(", resolved_at = ").push_bind(at.as_millis());
                    update.push(" WHERE state = 'held' AND id IN (");
                    let mut list = update.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    update.push(")");
                    update.build().execute(&mut *tx).await.map_err(db_err)?;
                }
            }
            changed.sort();
            changed.dedup();
            for key in changed {
                if let Some(budget) = budgets.get(&key) {
                    write_budget_totals!(&mut *tx, budget, at)?;
                }
            }
            limits_changed.sort_unstable();
            limits_changed.dedup();
            for key in &limits_changed {
                if let Some(limit) = limits.get(key) {
                    write_limit!(&mut *tx, key.as_str(), limit)?;
                }
            }
            tx.commit().await.map_err(db_err)?;
            Ok(results)
        })
    }

    async fn record_resolved(
        &self,
        charges: &[ResolvedCharge],
        held: &[(TenantId, ServiceSlug, Amount)],
        at: Timestamp,
    ) -> StoreResult<Vec<Budget>> {
        let pool = match &self.backend {
            crate::Backend::Sqlite { read, journal, .. } => {
                return journal.record(read, charges).await.map(|()| Vec::new());
            }
            crate::Backend::Postgres(pool) => pool,
        };
        let mut captured: BTreeMap<(TenantId, ServiceSlug), Amount> = BTreeMap::new();
        for resolved in charges {
            let key = (resolved.charge.tenant_id.clone(), resolved.charge.service.clone());
            let total = captured.entry(key).or_insert(Amount::ZERO);
            if resolved.state == ChargeState::Captured {
                *total = add(*total, resolved.charge.amount)?;
            }
        }
        for (tenant, service, _) in held {
            captured.entry((tenant.clone(), service.clone())).or_insert(Amount::ZERO);
        }
        let mut tx = pool.begin().await.map_err(db_err)?;
        let mut after = Vec::with_capacity(captured.len());
        // Budgets in a fixed order; the no-op update takes each one's row lock and returns it.
        for (key, delta) in &captured {
            let row = lock_and_read_budget!(&mut *tx, key.0.as_str(), key.1.as_str())?;
            let budget = after_resolved(row, key, *delta, held)?;
            write_budget_totals!(&mut *tx, &budget, at)?;
            after.push(budget);
        }
        for chunk in charges.chunks(ROWS_PER_STATEMENT) {
            let mut insert = sqlx::QueryBuilder::new("INSERT INTO charges ");
            push_resolved_values!(insert, chunk);
            insert.build().execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(after)
    }

    async fn release_stale_holds(&self, before: Timestamp) -> StoreResult<u64> {
        let stale: Vec<String> = with_read!(self, pool => {
            sqlx::query_scalar("SELECT id FROM charges WHERE state = 'held' AND created_at < $1")
                .bind(before.as_millis())
                .fetch_all(pool)
                .await
                .map_err(db_err)?
        });
        let ops: Vec<ChargeOp> =
            stale.into_iter().map(|id| ChargeOp::Release(prom_core::id::ChargeId::from_trusted(id))).collect();
        let mut released = 0;
        for chunk in ops.chunks(500) {
            let results = self.apply_charges(chunk, Timestamp::now(), ExpiryMargins::NONE).await?;
            released += results.iter().filter(|r| **r == ChargeOpResult::Done).count() as u64;
        }
        Ok(released)
    }

    async fn publisher_earnings(
        &self,
        payee: &TenantId,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<prom_core::store::EarningRow>> {
        crate::history::publisher_earnings(self, payee, from, to).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_refuses_to_corrupt() {
        assert!(add(Amount::new(u128::MAX), Amount::new(1)).is_err());
        assert_eq!(add(Amount::new(2), Amount::new(3)).ok(), Some(Amount::new(5)));
    }
}
