//! Recording a tenant's approval of an allowance for a service: the ledger first, then the
//! budget, then a new cut of the wallet.
//!
//! The approval replaces the allowance and the budget's `settled` restarts at zero, so the new
//! amount must still cover what paid calls have held or captured and not yet settled: the ledger
//! would refuse to transfer more than the allowance, and the publisher would go unpaid. Paid
//! calls go on while the ledger is asked, so a ceiling first keeps what they hold and capture
//! within the new amount; then what they committed before it is checked against that amount.

use prom_core::audit::NewAuditEvent;
use prom_core::charge::Budget;
use prom_core::id::TenantId;
use prom_core::ledger::{ApproveArgs, ApproveError};
use prom_core::money::Amount;
use prom_core::service::ServiceRecord;
use prom_core::store::StoreError;
use prom_core::time::Timestamp;

use super::{Allowances, ChargeError};
use crate::billing::{platform_spender, tenant_owner};

/// What a tenant approves for one service.
#[derive(Debug)]
pub struct Approval {
    pub tenant: TenantId,
    pub service: std::sync::Arc<ServiceRecord>,
    /// The new allowance; it replaces the current one.
    pub amount: Amount,
    pub expires_at: Option<Timestamp>,
    /// Apply only if the ledger's allowance is exactly this (compare-and-swap).
    pub expected_allowance: Option<Amount>,
    /// The `allowance.approve` row, written with the budget.
    pub audit: NewAuditEvent,
}

/// Why an approval was not recorded; in every case the old allowance stands.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error(
        "expires_at is in the past or less than {margin_secs} s from now: paid calls stop {margin_secs} s before an \
         allowance expires, so that every charge is settled on the ledger while the allowance stands; choose a later time"
    )]
    ExpiresTooSoon { margin_secs: i64 },
    #[error(
        "paid calls have committed {committed} of this allowance that is not settled yet (held {held}, unsettled \
         {unsettled}); approve at least {committed}, or lower it once they have settled"
    )]
    BelowCommitted { committed: Amount, held: Amount, unsettled: Amount },
    #[error("the allowance is {current}, not the expected_allowance you sent; read it again and retry")]
    AllowanceChanged { current: Amount },
    #[error("the wallet holds {balance}, which cannot pay the ledger's approval fee; fund it first")]
    InsufficientFunds { balance: Amount },
    #[error("expires_at is in the past")]
    Expired,
    #[error("the ledger refused the approval: {0}")]
    LedgerRefused(String),
    #[error("the ledger cannot be reached right now; nothing was changed, retry later")]
    LedgerUnavailable,
    #[error("allowances cannot be changed right now; retry shortly")]
    Book(#[source] ChargeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Allowances {
    /// Approves `approval` on the ledger (signing for the tenant's wallet: the embedded ledger's
    /// dev wallets) and records it; returns the budget after, with its new slice of the wallet.
    /// Runs to its end on a task of its own even if the caller goes away (a client that hangs up,
    /// a request deadline): a saga dropped between the ledger and the budget would leave them
    /// apart until the next approval.
    pub async fn approve(&self, approval: Approval) -> Result<Budget, ApprovalError> {
        let this = self.clone();
        match tokio::spawn(async move { this.approve_to_the_end(approval).await }).await {
            Ok(result) => result,
            Err(crashed) => Err(ApprovalError::Store(StoreError::Backend(Box::new(crashed)))),
        }
    }

    async fn approve_to_the_end(&self, approval: Approval) -> Result<Budget, ApprovalError> {
        let margins = self.book.margins();
        if let Some(at) = approval.expires_at
            && at <= Timestamp::now().plus_millis(margins.hold_ms)
        {
            return Err(ApprovalError::ExpiresTooSoon { margin_secs: margins.hold_ms / 1000 });
        }
        let (tenant, slug) = (&approval.tenant, &approval.service.slug);
        self.store.set_ceiling(tenant, slug, Some(approval.amount)).await?;
        match self.approve_under_ceiling(&approval).await {
            Ok(()) => {}
            Err(err) => {
                // Nothing was approved (or recorded): the old allowance stands, without the ceiling.
                if let Err(lift) = self.store.set_ceiling(tenant, slug, None).await {
                    tracing::error!(error = %lift, "an allowance's ceiling could not be lifted after a failed approval");
                }
                let _ = self.book.refresh(tenant, slug).await;
                return Err(err);
            }
        }
        // New holds draw on the new approval from now on, within the wallet's new cut. A wallet
        // that cannot be read now leaves the old slices (a new budget has none): the settler cuts
        // it again every round.
        self.book.refresh(tenant, slug).await.map_err(ApprovalError::Book)?;
        if let Err(err) = self.slice_wallet(tenant).await {
            tracing::warn!(error = %err, "cannot cut the wallet after an approval; paid calls wait for the settler");
        }
        self.book.budget(tenant, slug).await.map_err(ApprovalError::Book)
    }

    /// The rest of [`Allowances::approve`], once the ceiling is set: checks what is committed,
    /// asks the ledger and records the approval (which lifts the ceiling).
    async fn approve_under_ceiling(&self, approval: &Approval) -> Result<(), ApprovalError> {
        let (tenant, service) = (&approval.tenant, &approval.service);
        // Every hold from here on sees the ceiling; the budget read now counts every hold before it.
        let budget = self.book.refresh(tenant, &service.slug).await.map_err(ApprovalError::Book)?;
        let committed = budget.open().map_err(|err| StoreError::Corrupt(err.to_string()))?;
        if approval.amount < committed {
            return Err(ApprovalError::BelowCommitted { committed, held: budget.held, unsettled: budget.unsettled });
        }
        let nanos = |at: Timestamp| u64::try_from(at.as_millis()).unwrap_or(0).saturating_mul(1_000_000);
        let args = ApproveArgs {
            from_subaccount: None,
            spender: platform_spender(&service.slug),
            amount: approval.amount,
            expected_allowance: approval.expected_allowance,
            expires_at: approval.expires_at.map(nanos),
            fee: None,
            memo: None,
            created_at_time: None,
        };
        let approved = self.ledger.approve(&tenant_owner(tenant), args).await.map_err(|err| {
            tracing::warn!(error = %err, "ledger call failed");
            ApprovalError::LedgerUnavailable
        })?;
        if let Err(refusal) = approved {
            return Err(match refusal {
                ApproveError::AllowanceChanged { current_allowance } => {
                    ApprovalError::AllowanceChanged { current: current_allowance }
                }
                ApproveError::InsufficientFunds { balance } => ApprovalError::InsufficientFunds { balance },
                ApproveError::Expired { .. } => ApprovalError::Expired,
                other => ApprovalError::LedgerRefused(other.to_string()),
            });
        }
        // A budget with no slice yet gets none (0) until the wallet is cut; one already sliced
        // keeps its slice.
        self.store
            .set_approved(
                tenant,
                &service.slug,
                approval.amount,
                approval.expires_at,
                Some(Amount::ZERO),
                Some(&service.prices),
                Some(&approval.audit),
            )
            .await?;
        Ok(())
    }
}
