//! What the dashboard shows of money that moved: a tenant's settlement batches (its wallet page)
//! and what a publisher earned, by service and day (its earnings page).
//!
//! Earnings are read like usage reports: the database counts the charges of each (service, day,
//! amount, settled or not) and the sums are made here, exactly (amounts are decimal text).

use std::cmp::Reverse;
use std::collections::BTreeMap;

use prom_core::id::TenantId;
use prom_core::money::Amount;
use prom_core::service::ServiceSlug;
use prom_core::store::{EarningRow, SettlementView, StoreError, StoreResult};
use prom_core::time::Timestamp;

use crate::usage::{DAY_MS, day};
use crate::{Backend, SqlStore, db_err, with_read};

#[derive(sqlx::FromRow)]
struct SettlementRow {
    id: String,
    service: String,
    amount: String,
    fee: Option<String>,
    state: String,
    in_doubt: bool,
    block: Option<String>,
    created_at: i64,
    settled_at: Option<i64>,
}

fn amount(raw: &str) -> StoreResult<Amount> {
    raw.parse().map_err(|_| StoreError::Corrupt(format!("stored amount {raw:?} is not a decimal")))
}

fn overflow() -> StoreError {
    StoreError::Corrupt("a publisher's earnings overflowed".into())
}

impl TryFrom<SettlementRow> for SettlementView {
    type Error = StoreError;

    fn try_from(row: SettlementRow) -> StoreResult<Self> {
        let state = match (row.state.as_str(), row.in_doubt) {
            ("pending", true) => "in_doubt".to_owned(),
            _ => row.state,
        };
        Ok(SettlementView {
            amount: amount(&row.amount)?,
            fee: row.fee.as_deref().map(amount).transpose()?.unwrap_or(Amount::ZERO),
            id: row.id,
            service: ServiceSlug::from_trusted(row.service),
            state,
            ledger_ref: row.block,
            created_at: Timestamp::from_millis(row.created_at),
            completed_at: row.settled_at.map(Timestamp::from_millis),
        })
    }
}

pub(crate) async fn list_settlements(
    store: &SqlStore,
    tenant: &TenantId,
    limit: u32,
) -> StoreResult<Vec<SettlementView>> {
    let rows: Vec<SettlementRow> = with_read!(store, pool => {
        sqlx::query_as(
            "SELECT id, service, amount, fee, state, in_doubt, block, created_at, settled_at FROM settlements \
             WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(tenant.as_str())
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(db_err)?
    });
    rows.into_iter().map(SettlementView::try_from).collect()
}

/// The charges a publisher (`$1`) earned in a range (`$2`, `$3`): those of the services it
/// published, each counted for the service its slug named when the call was made (between that
/// service's creation and deletion).
const EARNED: &str = "c.service IN (SELECT slug FROM services WHERE tenant_id = $1) \
     AND c.created_at >= $2 AND c.created_at < $3 AND c.state IN ('captured', 'settled') \
     AND EXISTS (SELECT 1 FROM services AS s WHERE s.tenant_id = $1 AND s.slug = c.service \
                 AND s.created_at <= c.created_at AND (s.deleted_at IS NULL OR c.created_at <= s.deleted_at))";

#[derive(sqlx::FromRow)]
struct EarningCount {
    service: String,
    day: String,
    amount: String,
    settled: bool,
    n: i64,
}

pub(crate) async fn publisher_earnings(
    store: &SqlStore,
    payee: &TenantId,
    from: Timestamp,
    to: Timestamp,
) -> StoreResult<Vec<EarningRow>> {
    store.fold_journal().await?;
    let settled = match store.backend {
        // The embedded database settles a budget's captured charges as ranges (migration 0011):
        // done batches cover a prefix of them in write order (one batch is pending at a time, the
        // latest), so a charge is settled when its `seq` is within the last done batch's.
        Backend::Sqlite { .. } => "(c.state = 'settled' OR (c.settlement_id IS NULL AND c.seq <= COALESCE(d.upto, 0)))",
        Backend::Postgres(_) => "c.state = 'settled'",
    };
    let done = match store.backend {
        Backend::Sqlite { .. } => {
            "LEFT JOIN (SELECT tenant_id, service, MAX(upto) AS upto FROM settlements \
             WHERE state = 'done' AND upto IS NOT NULL AND service IN (SELECT slug FROM services WHERE tenant_id = $1) \
             GROUP BY tenant_id, service) AS d \
             ON d.tenant_id = c.tenant_id AND d.service = c.service"
        }
        Backend::Postgres(_) => "",
    };
    let sql = format!(
        "SELECT c.service AS service, CAST(c.created_at / {DAY_MS} AS TEXT) AS day, c.amount AS amount, \
                {settled} AS settled, COUNT(*) AS n \
         FROM charges AS c {done} WHERE {EARNED} GROUP BY 1, 2, 3, 4"
    );
    let counts: Vec<EarningCount> = with_read!(store, pool => {
        sqlx::query_as(&sql)
            .bind(payee.as_str())
            .bind(from.as_millis())
            .bind(to.as_millis())
            .fetch_all(pool)
            .await
            .map_err(db_err)?
    });
    // Newest day first, then by service (`YYYY-MM-DD` strings sort as their days do).
    let mut rows: BTreeMap<(Reverse<String>, String), EarningRow> = BTreeMap::new();
    for count in counts {
        let calls =
            u64::try_from(count.n).map_err(|_| StoreError::Corrupt(format!("a negative count ({})", count.n)))?;
        let sum =
            amount(&count.amount)?.units().checked_mul(u128::from(calls)).map(Amount::new).ok_or_else(overflow)?;
        let day = day(Some(&count.day))?;
        let row = rows.entry((Reverse(day.clone()), count.service.clone())).or_insert_with(|| EarningRow {
            service: ServiceSlug::from_trusted(count.service),
            day,
            calls: 0,
            charged: Amount::ZERO,
            settled: Amount::ZERO,
        });
        row.calls = row.calls.checked_add(calls).ok_or_else(overflow)?;
        row.charged = row.charged.checked_add(sum).ok_or_else(overflow)?;
        if count.settled {
            row.settled = row.settled.checked_add(sum).ok_or_else(overflow)?;
        }
    }
    Ok(rows.into_values().collect())
}
