//! Settlement bookkeeping: batches of captured charges recorded before the ledger is called,
//! completed when it confirms. The ledger call itself lives in the server (`settlement.rs`).

use async_trait::async_trait;
use prom_core::charge::{Budget, Settlement};
use prom_core::id::{SettlementId, TenantId};
use prom_core::money::Amount;
use prom_core::service::ServiceSlug;
use prom_core::store::{BudgetStore, SettlementStore, SettlementView, StoreError, StoreResult};
use prom_core::time::Timestamp;

use crate::charges::lock_budget;
use crate::{SqlStore, db_err, with_read, with_write};

#[derive(sqlx::FromRow)]
struct SettlementRow {
    id: String,
    tenant_id: String,
    service: String,
    amount: String,
    created_at_time: String,
    in_doubt: bool,
}

fn parse<T: std::str::FromStr>(raw: &str, what: &str) -> StoreResult<T> {
    raw.parse().map_err(|_| StoreError::Corrupt(format!("stored {what} {raw:?} is unreadable")))
}

impl TryFrom<SettlementRow> for Settlement {
    type Error = StoreError;

    fn try_from(row: SettlementRow) -> StoreResult<Self> {
        Ok(Settlement {
            amount: parse(&row.amount, "amount")?,
            created_at_time: parse(&row.created_at_time, "created_at_time")?,
            in_doubt: row.in_doubt,
            id: SettlementId::from_trusted(row.id),
            tenant_id: TenantId::from_trusted(row.tenant_id),
            service: ServiceSlug::from_trusted(row.service),
        })
    }
}

const SETTLEMENT_COLUMNS: &str = "id, tenant_id, service, amount, created_at_time, in_doubt";

pub(crate) async fn budgets_to_settle(store: &SqlStore) -> StoreResult<Vec<Budget>> {
    store.fold_journal().await?;
    let keys: Vec<(String, String)> = with_read!(store, pool => {
        sqlx::query_as(
            "SELECT tenant_id, service FROM budgets WHERE unsettled <> '0' OR held <> '0' OR approved <> settled \
             ORDER BY tenant_id, service",
        )
            .fetch_all(pool)
            .await
            .map_err(db_err)?
    });
    let mut budgets = Vec::with_capacity(keys.len());
    for (tenant, service) in keys {
        budgets.push(store.budget(&TenantId::from_trusted(tenant), &ServiceSlug::from_trusted(service)).await?);
    }
    Ok(budgets)
}

/// Most charges in one settlement batch. On PostgreSQL opening and completing a batch writes each
/// of its charges under the budget's lock, which paid calls wait for: bounded batches keep that
/// short. (On the embedded database a batch is a range and writes none of them.) The settler
/// opens batches until none is left.
const MAX_CHARGES_PER_SETTLEMENT: usize = 1_000;

/// The embedded database's oldest captured charges of a budget after `seq` $4 that no batch holds
/// (binds: tenant, service, limit, after).
const OLDEST_UNSETTLED: &str = "SELECT seq, amount FROM charges \
     WHERE tenant_id = $1 AND service = $2 AND state = 'captured' AND settlement_id IS NULL AND seq > $4 \
     ORDER BY seq LIMIT $3";

/// The embedded database's next batch of a budget: the range of its captured charges after the
/// last batch's, at most `MAX_CHARGES_PER_SETTLEMENT` of them and as many as `max_amount` covers;
/// evaluates to its total and the `seq` it ends at. The total is read as a few (price, count)
/// rows, not a row per charge, unless the whole range would exceed `max_amount`.
macro_rules! oldest_range {
    ($tx:expr, $tenant:expr, $service:expr, $max_amount:expr) => {{
        let after: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(upto), 0) FROM settlements WHERE tenant_id = $1 AND service = $2")
                .bind($tenant.as_str())
                .bind($service.as_str())
                .fetch_one(&mut *$tx)
                .await
                .map_err(db_err)?;
        let priced: Vec<(String, i64, i64)> =
            sqlx::query_as(&format!("SELECT amount, COUNT(*), MAX(seq) FROM ({OLDEST_UNSETTLED}) GROUP BY amount"))
                .bind($tenant.as_str())
                .bind($service.as_str())
                .bind(MAX_CHARGES_PER_SETTLEMENT as i64)
                .bind(after)
                .fetch_all(&mut *$tx)
                .await
                .map_err(db_err)?;
        let mut total = Amount::ZERO;
        let mut upto = after;
        for (raw, count, last) in &priced {
            let count = u128::try_from(*count).map_err(|_| StoreError::Corrupt("a negative count".into()))?;
            total = parse::<Amount>(raw, "amount")?
                .units()
                .checked_mul(count)
                .and_then(|sum| total.checked_add(Amount::new(sum)))
                .ok_or_else(|| StoreError::Corrupt("a settlement overflowed".into()))?;
            upto = upto.max(*last);
        }
        if total > $max_amount {
            // The ledger cannot pay the whole range: its longest prefix that fits.
            let charges: Vec<(i64, String)> = sqlx::query_as(OLDEST_UNSETTLED)
                .bind($tenant.as_str())
                .bind($service.as_str())
                .bind(MAX_CHARGES_PER_SETTLEMENT as i64)
                .bind(after)
                .fetch_all(&mut *$tx)
                .await
                .map_err(db_err)?;
            (total, upto) = (Amount::ZERO, after);
            for (seq, raw) in &charges {
                let with = total
                    .checked_add(parse(raw, "amount")?)
                    .ok_or_else(|| StoreError::Corrupt("a settlement overflowed".into()))?;
                if with > $max_amount {
                    break;
                }
                (total, upto) = (with, *seq);
            }
        }
        (total, upto)
    }};
}

/// Chooses a batch's charges one by one (PostgreSQL, whose charges have no write order: a hold
/// written early may be captured late), as many as `max_amount` covers; evaluates to their total
/// and their ids. A macro, as the transaction's type differs by database; inside the transaction
/// holding the budget's lock.
macro_rules! mark_one_by_one {
    ($tx:expr, $tenant:expr, $service:expr, $max_amount:expr) => {{
        let charges: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, amount FROM charges \
             WHERE tenant_id = $1 AND service = $2 AND state = 'captured' AND settlement_id IS NULL LIMIT $3",
        )
        .bind($tenant.as_str())
        .bind($service.as_str())
        .bind(MAX_CHARGES_PER_SETTLEMENT as i64)
        .fetch_all(&mut *$tx)
        .await
        .map_err(db_err)?;
        let mut total = Amount::ZERO;
        let mut chosen = Vec::with_capacity(charges.len());
        for (id, raw) in &charges {
            let with = total
                .checked_add(parse(raw, "amount")?)
                .ok_or_else(|| StoreError::Corrupt("a settlement overflowed".into()))?;
            if with > $max_amount {
                break;
            }
            total = with;
            chosen.push(id.as_str());
        }
        (total, chosen.into_iter().map(str::to_owned).collect::<Vec<String>>())
    }};
}

pub(crate) async fn open_settlement(
    store: &SqlStore,
    tenant: &TenantId,
    service: &ServiceSlug,
    created_at_time: u64,
    at: Timestamp,
    max_amount: Amount,
) -> StoreResult<Option<Settlement>> {
    store.fold_journal().await?;
    with_write!(store, pool => {
        let mut tx = pool.begin().await.map_err(db_err)?;
        // One batch at a time per budget: lock it, then look for a pending one.
        lock_budget!(&mut *tx, tenant.as_str(), service.as_str())?;
        let pending: Option<SettlementRow> = sqlx::query_as(&format!(
            "SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE tenant_id = $1 AND service = $2 AND state = 'pending'"
        ))
        .bind(tenant.as_str())
        .bind(service.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if let Some(row) = pending {
            tx.commit().await.map_err(db_err)?;
            return Ok(Some(row.try_into()?));
        }
        // The batch: the budget's oldest captured charges not yet in one, as many as `max_amount`
        // covers (a batch the ledger cannot pay would be refused whole).
        let (total, upto, chosen) = match &store.backend {
            // The one writer: the batch is a range of the budget's captured charges in the order
            // they were written (`seq`), after the last batch's, which the budget/state index
            // yields without sorting; its charges are not updated (migration 0011).
            crate::Backend::Sqlite { .. } => {
                let (total, upto) = oldest_range!(tx, tenant, service, max_amount);
                (total, Some(upto), Vec::new())
            }
            crate::Backend::Postgres(_) => {
                let (total, chosen) = mark_one_by_one!(tx, tenant, service, max_amount);
                (total, None, chosen)
            }
        };
        if total == Amount::ZERO {
            tx.commit().await.map_err(db_err)?;
            return Ok(None);
        }
        let settlement = Settlement {
            id: SettlementId::new(),
            tenant_id: tenant.clone(),
            service: service.clone(),
            amount: total,
            created_at_time,
            in_doubt: false,
        };
        let insert = sqlx::query(if upto.is_some() {
            "INSERT INTO settlements (id, tenant_id, service, amount, created_at_time, state, created_at, upto) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7)"
        } else {
            "INSERT INTO settlements (id, tenant_id, service, amount, created_at_time, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6)"
        })
        .bind(settlement.id.as_str())
        .bind(tenant.as_str())
        .bind(service.as_str())
        .bind(total.to_string())
        .bind(created_at_time.to_string())
        .bind(at.as_millis());
        let insert = match upto {
            Some(upto) => insert.bind(upto),
            None => insert,
        };
        insert.execute(&mut *tx).await.map_err(db_err)?;
        if !chosen.is_empty() {
            let mut update = sqlx::QueryBuilder::new("UPDATE charges SET settlement_id = ");
            update.push_bind(settlement.id.as_str()).push(" WHERE id IN (");
            let mut ids = update.separated(", ");
            for id in &chosen {
                ids.push_bind(id.as_str());
            }
            update.push(")");
            update.build().execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(Some(settlement))
    })
}

pub(crate) async fn set_settlement_in_doubt(store: &SqlStore, id: &SettlementId, in_doubt: bool) -> StoreResult<()> {
    with_write!(store, pool => {
        sqlx::query("UPDATE settlements SET in_doubt = $2 WHERE id = $1 AND state = 'pending'")
            .bind(id.as_str())
            .bind(in_doubt)
            .execute(pool)
            .await
            .map_err(db_err)?;
    });
    Ok(())
}

pub(crate) async fn redate_settlement(
    store: &SqlStore,
    settlement: &Settlement,
    created_at_time: u64,
) -> StoreResult<bool> {
    let redated = with_write!(store, pool => {
        sqlx::query(
            "UPDATE settlements SET created_at_time = $2, in_doubt = FALSE \
             WHERE id = $1 AND state = 'pending' AND created_at_time = $3",
        )
        .bind(settlement.id.as_str())
        .bind(created_at_time.to_string())
        .bind(settlement.created_at_time.to_string())
        .execute(pool)
        .await
        .map_err(db_err)?
        .rows_affected()
    });
    Ok(redated == 1)
}

pub(crate) async fn pending_settlements(store: &SqlStore) -> StoreResult<Vec<Settlement>> {
    let rows: Vec<SettlementRow> = with_read!(store, pool => {
        sqlx::query_as(&format!("SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE state = 'pending' ORDER BY created_at"))
            .fetch_all(pool)
            .await
            .map_err(db_err)?
    });
    rows.into_iter().map(Settlement::try_from).collect()
}

pub(crate) async fn complete_settlement(
    store: &SqlStore,
    settlement: &Settlement,
    block: u64,
    at: Timestamp,
    fee: Amount,
) -> StoreResult<()> {
    with_write!(store, pool => {
        let mut tx = pool.begin().await.map_err(db_err)?;
        let row = crate::charges::lock_and_read_budget!(&mut *tx, settlement.tenant_id.as_str(), settlement.service.as_str())?;
        let mut budget: Budget = row
            .ok_or_else(|| StoreError::Corrupt(format!("settlement {} has no budget", settlement.id)))?
            .try_into()?;
        let done = sqlx::query(
            "UPDATE settlements SET state = 'done', block = $1, settled_at = $2, fee = $4 WHERE id = $3 AND state = 'pending'",
        )
            .bind(block.to_string())
            .bind(at.as_millis())
            .bind(settlement.id.as_str())
            .bind(fee.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 1 {
            sqlx::query("UPDATE charges SET state = 'settled' WHERE settlement_id = $1 AND state = 'captured'")
                .bind(settlement.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            budget.settle(settlement.amount, fee).map_err(crate::charges::corrupt)?;
            sqlx::query(
                "UPDATE budgets SET unsettled = $1, settled = $2, updated_at = $3, ledger_cap = $6 \
                 WHERE tenant_id = $4 AND service = $5",
            )
                .bind(budget.unsettled.to_string())
                .bind(budget.settled.to_string())
                .bind(at.as_millis())
                .bind(settlement.tenant_id.as_str())
                .bind(settlement.service.as_str())
                .bind(budget.ledger_cap.map(|cap| cap.to_string()))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    })
}

#[async_trait]
impl SettlementStore for SqlStore {
    async fn budgets_to_settle(&self) -> StoreResult<Vec<Budget>> {
        crate::settlement::budgets_to_settle(self).await
    }

    async fn open_settlement(
        &self,
        tenant: &TenantId,
        service: &ServiceSlug,
        created_at_time: u64,
        at: Timestamp,
        max_amount: Amount,
    ) -> StoreResult<Option<prom_core::charge::Settlement>> {
        crate::settlement::open_settlement(self, tenant, service, created_at_time, at, max_amount).await
    }

    async fn pending_settlements(&self) -> StoreResult<Vec<prom_core::charge::Settlement>> {
        crate::settlement::pending_settlements(self).await
    }

    async fn set_settlement_in_doubt(&self, id: &prom_core::id::SettlementId, in_doubt: bool) -> StoreResult<()> {
        crate::settlement::set_settlement_in_doubt(self, id, in_doubt).await
    }

    async fn redate_settlement(
        &self,
        settlement: &prom_core::charge::Settlement,
        created_at_time: u64,
    ) -> StoreResult<bool> {
        crate::settlement::redate_settlement(self, settlement, created_at_time).await
    }

    async fn complete_settlement(
        &self,
        settlement: &prom_core::charge::Settlement,
        block: u64,
        at: Timestamp,
        fee: Amount,
    ) -> StoreResult<()> {
        crate::settlement::complete_settlement(self, settlement, block, at, fee).await
    }

    async fn list_settlements(&self, tenant: &TenantId, limit: u32) -> StoreResult<Vec<SettlementView>> {
        crate::history::list_settlements(self, tenant, limit).await
    }
}
