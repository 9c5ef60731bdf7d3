//! Budgets (`BudgetStore`): what a tenant approved for a service, its ceiling while an approval
//! is on its way, and its slice of the tenant's wallet (see `prom_core::wallet`), cut under the
//! budgets' locks.

use async_trait::async_trait;
use prom_core::charge::{Budget, ExpiryMargins};
use prom_core::id::TenantId;
use prom_core::money::Amount;
use prom_core::service::ServiceSlug;
use prom_core::store::{BudgetStore, StoreError, StoreResult};
use prom_core::time::Timestamp;
use prom_core::wallet::{WalletRead, slice_budgets, unchanged_since};

use crate::charges::{BUDGET_COLUMNS, BudgetRow, corrupt, lock_and_read_budget};
use crate::{SqlStore, db_err, with_read, with_write};

/// Sets one budget's slice (any executor of either backend).
macro_rules! write_cap {
    ($executor:expr, $tenant:expr, $service:expr, $cap:expr) => {
        sqlx::query("UPDATE budgets SET ledger_cap = $1 WHERE tenant_id = $2 AND service = $3")
            .bind($cap.to_string())
            .bind($tenant.as_str())
            .bind($service.as_str())
            .execute($executor)
            .await
            .map_err(db_err)
    };
}

pub(crate) async fn tenant_budgets(store: &SqlStore, tenant: &TenantId) -> StoreResult<Vec<Budget>> {
    store.fold_journal().await?;
    let rows: Vec<BudgetRow> = with_read!(store, pool => {
        sqlx::query_as(&format!("SELECT {BUDGET_COLUMNS} FROM budgets WHERE tenant_id = $1 ORDER BY service"))
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await
            .map_err(db_err)?
    });
    rows.into_iter().map(Budget::try_from).collect()
}

/// Locks every budget of the tenant (in service order, as paid calls lock them) and reads them.
macro_rules! lock_tenant_budgets {
    ($tx:expr, $tenant:expr) => {{
        let services: Vec<String> =
            sqlx::query_scalar("SELECT service FROM budgets WHERE tenant_id = $1 ORDER BY service")
                .bind($tenant.as_str())
                .fetch_all(&mut *$tx)
                .await
                .map_err(db_err)?;
        let mut budgets = Vec::with_capacity(services.len());
        for service in &services {
            let row = lock_and_read_budget!(&mut *$tx, $tenant.as_str(), service.as_str())?;
            let row = row.ok_or_else(|| StoreError::Corrupt(format!("budget {}/{service} vanished", $tenant)))?;
            budgets.push(Budget::try_from(row)?);
        }
        budgets
    }};
}

/// Cuts the wallet from the rows as they are (they count every node's holds), under their locks,
/// unless they are no longer as `seen`.
pub(crate) async fn slice_wallet(
    store: &SqlStore,
    tenant: &TenantId,
    seen: &[Budget],
    wallet: &WalletRead,
    now: Timestamp,
    margins: ExpiryMargins,
) -> StoreResult<bool> {
    write_slices(store, tenant, seen, |budgets| {
        let refs: Vec<&Budget> = budgets.iter().collect();
        let caps = slice_budgets(&refs, wallet, now, margins).map_err(corrupt)?;
        Ok(budgets.iter().map(|budget| budget.service.clone()).zip(caps).collect())
    })
    .await
}

/// Writes the slices the in-memory book cut, in one transaction, unless the budgets' rows are no
/// longer as `seen` (a settlement or approval was recorded since).
pub(crate) async fn set_ledger_caps(
    store: &SqlStore,
    tenant: &TenantId,
    seen: &[Budget],
    caps: &[(ServiceSlug, Amount)],
) -> StoreResult<bool> {
    write_slices(store, tenant, seen, |_| Ok(caps.to_vec())).await
}

/// Locks the tenant's budgets and, if they are still as `seen`, writes the slices `cut` makes of
/// them, in one transaction; `false` (nothing written) otherwise.
async fn write_slices(
    store: &SqlStore,
    tenant: &TenantId,
    seen: &[Budget],
    cut: impl FnOnce(&[Budget]) -> StoreResult<Vec<(ServiceSlug, Amount)>>,
) -> StoreResult<bool> {
    with_write!(store, pool => {
        let mut tx = pool.begin().await.map_err(db_err)?;
        let budgets = lock_tenant_budgets!(tx, tenant);
        if !same_budgets(seen, &budgets) {
            return Ok(false);
        }
        for (service, cap) in cut(&budgets)? {
            write_cap!(&mut *tx, tenant, &service, cap)?;
        }
        tx.commit().await.map_err(db_err)?;
    });
    Ok(true)
}

/// Whether `now` holds the same budgets as `seen`, each with the same approval and settlements.
pub(crate) fn same_budgets(seen: &[Budget], now: &[Budget]) -> bool {
    seen.len() == now.len()
        && now.iter().all(|budget| seen.iter().any(|old| old.service == budget.service && unchanged_since(old, budget)))
}

#[async_trait]
impl BudgetStore for SqlStore {
    async fn budget(&self, tenant: &TenantId, service: &ServiceSlug) -> StoreResult<Budget> {
        self.fold_journal().await?;
        let row: Option<BudgetRow> = with_read!(self, pool => {
            sqlx::query_as(&format!("SELECT {BUDGET_COLUMNS} FROM budgets WHERE tenant_id = $1 AND service = $2"))
                .bind(tenant.as_str())
                .bind(service.as_str())
                .fetch_optional(pool)
                .await
                .map_err(db_err)?
        });
        match row {
            Some(row) => row.try_into(),
            None => Ok(Budget::empty(tenant.clone(), service.clone())),
        }
    }

    async fn tenant_budgets(&self, tenant: &TenantId) -> StoreResult<Vec<Budget>> {
        crate::budgets::tenant_budgets(self, tenant).await
    }

    async fn set_approved(
        &self,
        tenant: &TenantId,
        service: &ServiceSlug,
        approved: Amount,
        expires_at: Option<Timestamp>,
        ledger_cap: Option<Amount>,
        prices: Option<&prom_core::service::Prices>,
        audit: Option<&prom_core::audit::NewAuditEvent>,
    ) -> StoreResult<Budget> {
        let prices = prices.map(serde_json::to_string).transpose().map_err(|err| StoreError::Backend(Box::new(err)))?;
        let now = Timestamp::now();
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            sqlx::query(
                "INSERT INTO budgets (tenant_id, service, approved, expires_at, held, unsettled, settled, updated_at, ledger_cap, prices) \
                 VALUES ($1, $2, $3, $4, '0', '0', '0', $5, $6, $7) \
                 ON CONFLICT (tenant_id, service) DO UPDATE SET approved = $3, expires_at = $4, settled = '0', ceiling = NULL, \
                 updated_at = $5, ledger_cap = COALESCE(budgets.ledger_cap, $6), prices = $7",
            )
            .bind(tenant.as_str())
            .bind(service.as_str())
            .bind(approved.to_string())
            .bind(expires_at.map(Timestamp::as_millis))
            .bind(now.as_millis())
            .bind(ledger_cap.map(|cap| cap.to_string()))
            .bind(prices)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if let Some(event) = audit {
                crate::audit::insert_audit!(&mut *tx, event)?;
            }
            tx.commit().await.map_err(db_err)?;
        });
        self.budget(tenant, service).await
    }

    async fn set_ceiling(&self, tenant: &TenantId, service: &ServiceSlug, ceiling: Option<Amount>) -> StoreResult<()> {
        with_write!(self, pool => {
            sqlx::query("UPDATE budgets SET ceiling = $3 WHERE tenant_id = $1 AND service = $2")
                .bind(tenant.as_str())
                .bind(service.as_str())
                .bind(ceiling.map(|amount| amount.to_string()))
                .execute(pool)
                .await
                .map_err(db_err)?;
        });
        Ok(())
    }

    async fn slice_wallet(
        &self,
        tenant: &TenantId,
        seen: &[Budget],
        wallet: &prom_core::wallet::WalletRead,
        now: Timestamp,
        margins: ExpiryMargins,
    ) -> StoreResult<bool> {
        crate::budgets::slice_wallet(self, tenant, seen, wallet, now, margins).await
    }

    async fn set_ledger_caps(
        &self,
        tenant: &TenantId,
        seen: &[Budget],
        caps: &[(ServiceSlug, Amount)],
    ) -> StoreResult<bool> {
        crate::budgets::set_ledger_caps(self, tenant, seen, caps).await
    }
}
