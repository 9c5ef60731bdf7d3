//! Cutting a tenant's wallet into slices from fresh reads of the ledger (see `prom_core::wallet`).

use std::sync::Arc;

use prom_core::id::TenantId;
use prom_core::ledger::{AllowanceArgs, Ledger};
use prom_core::money::Amount;
use prom_core::store::Store;
use prom_core::wallet::WalletRead;

use super::book::ChargeBook;
use crate::billing::{platform_spender, tenant_wallet};

/// Reads that a settlement or approval made stale are done again this many times at once.
const ATTEMPTS: usize = 3;

/// Approvals and wallets: the parts of the money module that read the ledger for a tenant and
/// change its budgets' rows (telling the book).
#[derive(Clone, Debug)]
pub struct Allowances {
    pub(super) store: Arc<dyn Store>,
    pub(super) ledger: Arc<dyn Ledger>,
    pub(super) book: ChargeBook,
}

/// Why a wallet could not be cut: its slices stay as they were (each was within the balance when
/// cut, and every settlement since took its amount and fee out of them).
#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    #[error("the ledger cannot be read: {0}")]
    Ledger(String),
    #[error("the budgets cannot be read or written: {0}")]
    Store(#[from] prom_core::store::StoreError),
    #[error(transparent)]
    Book(#[from] super::ChargeError),
    #[error("settlements or approvals kept changing the budgets while the wallet was read")]
    Stale,
}

impl Allowances {
    pub fn new(store: Arc<dyn Store>, ledger: Arc<dyn Ledger>, book: ChargeBook) -> Self {
        Self { store, ledger, book }
    }

    /// A service was deleted or registered again, and the store closed or reset its budgets in
    /// the same transaction: the book reads them again, so holds see it at once.
    pub async fn service_changed(&self, service: &prom_core::service::ServiceSlug) -> Result<(), super::ChargeError> {
        self.book.refresh_service(service).await
    }

    /// Reads the tenant's balance, the fee and every budget's ledger allowance, then cuts the
    /// wallet into slices: the budgets are read first, and a settlement or approval recorded
    /// before the slices are written makes the read stale and it is done again.
    pub async fn slice_wallet(&self, tenant: &TenantId) -> Result<(), SliceError> {
        for _ in 0..ATTEMPTS {
            let seen = self.store.tenant_budgets(tenant).await?;
            if seen.is_empty() {
                return Ok(());
            }
            let wallet = self.read_wallet(tenant, &seen).await?;
            if self.book.slice_wallet(tenant, seen, wallet).await? {
                return Ok(());
            }
        }
        Err(SliceError::Stale)
    }

    async fn read_wallet(
        &self,
        tenant: &TenantId,
        budgets: &[prom_core::charge::Budget],
    ) -> Result<WalletRead, SliceError> {
        let account = tenant_wallet(tenant);
        let ledger_error = |err: prom_core::ledger::LedgerError| SliceError::Ledger(err.to_string());
        let balance = self.ledger.balance_of(&account).await.map_err(ledger_error)?;
        let fee = self.ledger.fee().await.map_err(ledger_error)?;
        let mut rooms = Vec::with_capacity(budgets.len());
        for budget in budgets {
            // A budget fully used takes nothing new: no need to ask.
            if budget.approved == budget.settled {
                rooms.push((budget.service.clone(), Some(Amount::ZERO)));
                continue;
            }
            let args = AllowanceArgs { account: account.clone(), spender: platform_spender(&budget.service) };
            let room = match self.ledger.allowance(args).await {
                Ok(allowance) => Some(allowance.allowance),
                Err(err) => {
                    tracing::warn!(error = %err, service = %budget.service, "cannot read a ledger allowance; no new room for it");
                    None
                }
            };
            rooms.push((budget.service.clone(), room));
        }
        Ok(WalletRead { balance, fee, rooms })
    }
}
