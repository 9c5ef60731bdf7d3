//! Settlement: captured charges move to the ledger in batches, one `transfer_from` per
//! (tenant, service) batch, from the tenant's wallet to the publishing tenant's wallet, spent from
//! the platform's allowance for that service.
//!
//! Exactly once: a batch is recorded in the database (with its memo and `created_at_time`) before
//! the ledger is called, so a retry — after a timeout, an error or a crash between the ledger call
//! and its record — re-submits the identical transaction, and the ledger answers `Duplicate`,
//! which counts as done. A batch still pending past the ledger's deduplication window (the ledger
//! was unreachable or refused it for a day) is answered `TooOld`: when every earlier call got a
//! definite answer, none was carried out, and the batch is re-dated and submitted anew; when one
//! went unanswered (`in_doubt`), it may have been, and the batch is left for an operator, loudly.
//! Before a budget's batches the ledger's allowance and the wallet's balance are re-read, and
//! batches never take more than they leave; after a tenant's batches its wallet is cut into
//! slices again from a fresh read (`wallet.rs`): a user who lowered the allowance or emptied the
//! wallet elsewhere stops new holds within a round, and one who funds it again resumes them.

use std::sync::Arc;
use std::time::Duration;

use prom_core::charge::Settlement;
use prom_core::id::TenantId;
use prom_core::ledger::{AllowanceArgs, Ledger, Memo, TransferFromArgs, TransferFromError};
use prom_core::money::Amount;
use prom_core::store::Store;
use prom_core::time::Timestamp;

use super::{Allowances, ChargeBook};
use crate::billing::{PLATFORM_OWNER, platform_spender, tenant_wallet};

/// Most batches one budget settles per round (batches are bounded by the store, at 1,000 charges):
/// a round ends even for a budget whose calls are captured faster than they settle.
const MAX_BATCHES_PER_BUDGET_AND_ROUND: usize = 100;

/// What one settlement round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SettleReport {
    pub settled_batches: usize,
    pub settled_amount: Amount,
    pub failed_batches: usize,
}

#[derive(Clone, Debug)]
pub struct Settler {
    store: Arc<dyn Store>,
    ledger: Arc<dyn Ledger>,
    /// Told of every budget row the settler changes, so holds are decided on the current row.
    book: ChargeBook,
    /// Cuts each tenant's wallet again after its batches.
    allowances: Allowances,
}

impl Settler {
    pub fn new(allowances: Allowances) -> Self {
        Self {
            store: allowances.store.clone(),
            ledger: allowances.ledger.clone(),
            book: allowances.book.clone(),
            allowances,
        }
    }

    /// Settles every `every`, and once at start (which also repairs batches a crash left pending).
    /// Abort the returned task before a final [`Settler::settle_once`], so two rounds never overlap.
    pub fn spawn(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let settler = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                settler.settle_once().await;
            }
        })
    }

    /// One round: pending batches first, then new batches for every budget with captured charges.
    /// Then every tenant with a live budget has its wallet cut again. Nothing is settled in a round
    /// whose ledger fee cannot be read: each batch's fee comes out of the budget's slice.
    pub async fn settle_once(&self) -> SettleReport {
        let mut report = SettleReport::default();
        let fee = match self.ledger.fee().await {
            Ok(fee) => fee,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the ledger's fee; nothing is settled this round");
                return report;
            }
        };
        match self.store.pending_settlements().await {
            Ok(pending) => {
                for settlement in pending {
                    self.submit(&settlement, fee, &mut report).await;
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot read pending settlements"),
        }
        let budgets = match self.store.budgets_to_settle().await {
            Ok(budgets) => budgets,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read budgets to settle");
                return report;
            }
        };
        let mut tenants: Vec<TenantId> = budgets.iter().map(|budget| budget.tenant_id.clone()).collect();
        tenants.dedup();
        for budget in budgets {
            let wallet = tenant_wallet(&budget.tenant_id);
            let spender = platform_spender(&budget.service);
            let allowance = self.ledger.allowance(AllowanceArgs { account: wallet.clone(), spender }).await;
            let balance = self.ledger.balance_of(&wallet).await;
            // What the ledger can pay this round: each transfer takes its amount and the fee from
            // both the allowance and the balance. Unknown (a read failed): the ledger decides.
            let mut room = match (&allowance, &balance) {
                (Ok(allowance), Ok(balance)) => Some(allowance.allowance.min(*balance)),
                _ => None,
            };
            if let Some(room) = room
                && room.checked_sub(fee).unwrap_or(Amount::ZERO) < budget.unsettled
            {
                tracing::warn!(
                    tenant = %budget.tenant_id, service = %budget.service, unsettled = %budget.unsettled, room = %room,
                    "the ledger allowance or the wallet covers only part of what is unsettled; the rest waits for \
                     the tenant to approve or fund more"
                );
            }
            // Batches are bounded (the store's limit per batch): open them until none is left, or
            // one fails (it stays pending for the next round), or this round has done enough.
            for _ in 0..MAX_BATCHES_PER_BUDGET_AND_ROUND {
                let now = Timestamp::now();
                let created_at_time = u64::try_from(now.as_millis()).unwrap_or(0).saturating_mul(1_000_000);
                let max_amount =
                    room.map_or(Amount::new(u128::MAX), |room| room.checked_sub(fee).unwrap_or(Amount::ZERO));
                let opened = self
                    .store
                    .open_settlement(&budget.tenant_id, &budget.service, created_at_time, now, max_amount)
                    .await;
                match opened {
                    Ok(Some(settlement)) => {
                        if !self.submit(&settlement, fee, &mut report).await {
                            break;
                        }
                        // The batch took its amount and the fee from the ledger's room (and from
                        // the budget's slice, as it was recorded).
                        let spent = settlement.amount.checked_add(fee).unwrap_or(Amount::new(u128::MAX));
                        room = room.map(|room| room.checked_sub(spent).unwrap_or(Amount::ZERO));
                    }
                    Ok(None) => break,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot record a settlement batch");
                        break;
                    }
                }
            }
        }
        self.slice_wallets(&tenants).await;
        report
    }

    /// Cuts the wallet of every tenant with a live budget again, from fresh reads.
    async fn slice_wallets(&self, tenants: &[TenantId]) {
        for tenant in tenants {
            if let Err(err) = self.allowances.slice_wallet(tenant).await {
                tracing::warn!(tenant = %tenant, error = %err, "cannot cut a wallet into slices; its slices stay as they were");
            }
        }
    }

    /// A pending batch is older than the ledger's deduplication window. If every earlier call for
    /// it got a definite answer (it was not in doubt when this call was made), the ledger never
    /// carried it out: it gets a new `created_at_time` (the same memo) and goes again. Otherwise
    /// it may have been paid by a call whose answer was lost, and re-submitting it could pay twice.
    async fn too_old(&self, settlement: &Settlement) {
        if settlement.in_doubt {
            tracing::error!(
                settlement = %settlement.id, tenant = %settlement.tenant_id, service = %settlement.service,
                amount = %settlement.amount, memo = %settlement.id.as_str().replace('-', ""),
                "a settlement batch is past the ledger's deduplication window, and an earlier call for it got no \
                 answer, so the ledger may already have carried it out: look for a transfer with this memo on \
                 the ledger; it stays pending (and its charges unsettled) until an operator resolves it"
            );
            return;
        }
        let now = u64::try_from(Timestamp::now().as_millis()).unwrap_or(0).saturating_mul(1_000_000);
        match self.store.redate_settlement(settlement, now).await {
            Ok(_) => tracing::warn!(
                settlement = %settlement.id,
                "a settlement batch refused until now is past the ledger's deduplication window; it was never \
                 carried out, so it goes again as a new transaction"
            ),
            Err(err) => {
                tracing::warn!(settlement = %settlement.id, error = %err, "cannot re-date a settlement; will retry");
                // `TooOld` is a definite answer: this call changed nothing, and the batch was not in
                // doubt before it.
                if let Err(err) = self.store.set_settlement_in_doubt(&settlement.id, false).await {
                    tracing::warn!(settlement = %settlement.id, error = %err, "cannot clear a settlement's doubt");
                }
            }
        }
    }

    /// Settles one batch on the ledger and records it; false when it stays pending.
    async fn submit(&self, settlement: &Settlement, fee: Amount, report: &mut SettleReport) -> bool {
        // The publisher that served the calls, even if it has deleted the service since.
        let provider = match self.store.service_publisher(&settlement.service).await {
            Ok(Some(publisher)) => publisher,
            Ok(None) => {
                tracing::warn!(service = %settlement.service, "cannot settle: no service ever had this slug");
                report.failed_batches += 1;
                return false;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot settle: service lookup failed");
                report.failed_batches += 1;
                return false;
            }
        };
        // The settlement id (a UUID) without dashes is 32 ASCII bytes: exactly a memo's limit. The
        // memo is what deduplicates a retry, so a batch never goes without it.
        let memo = match Memo::new(settlement.id.as_str().replace('-', "").into_bytes()) {
            Ok(memo) => Some(memo),
            Err(err) => {
                tracing::error!(settlement = %settlement.id, error = %err, "a settlement's memo is invalid; not sent");
                report.failed_batches += 1;
                return false;
            }
        };
        let args = TransferFromArgs {
            spender_subaccount: platform_spender(&settlement.service).subaccount,
            from: tenant_wallet(&settlement.tenant_id),
            to: tenant_wallet(&provider),
            amount: settlement.amount,
            fee: None,
            memo,
            created_at_time: Some(settlement.created_at_time),
        };
        // Should no definite answer come back (a timeout, a crash), the ledger may have carried
        // the transfer out: only the ledger's deduplication can tell then, for as long as it lasts.
        if let Err(err) = self.store.set_settlement_in_doubt(&settlement.id, true).await {
            tracing::warn!(settlement = %settlement.id, error = %err, "cannot mark a settlement in doubt; will retry");
            report.failed_batches += 1;
            return false;
        }
        let block = match self.ledger.transfer_from(PLATFORM_OWNER, args).await {
            Ok(Ok(block)) => block,
            Ok(Err(TransferFromError::Duplicate { duplicate_of })) => duplicate_of,
            Ok(Err(TransferFromError::TooOld)) => {
                self.too_old(settlement).await;
                report.failed_batches += 1;
                return false;
            }
            Ok(Err(refusal)) => {
                // A definite answer: within the window, a batch carried out before is answered
                // `Duplicate`, so this one never was.
                if let Err(err) = self.store.set_settlement_in_doubt(&settlement.id, false).await {
                    tracing::warn!(settlement = %settlement.id, error = %err, "cannot clear a settlement's doubt");
                }
                tracing::warn!(settlement = %settlement.id, error = %refusal, "the ledger refused a settlement; will retry");
                report.failed_batches += 1;
                return false;
            }
            Err(err) => {
                tracing::warn!(settlement = %settlement.id, error = %err, "the ledger is unreachable; will retry");
                report.failed_batches += 1;
                return false;
            }
        };
        match self.store.complete_settlement(settlement, block.0, Timestamp::now(), fee).await {
            Ok(()) => {
                if let Err(err) = self.book.refresh(&settlement.tenant_id, &settlement.service).await {
                    tracing::warn!(error = %err, "cannot reload a settled budget");
                }
                report.settled_batches += 1;
                report.settled_amount =
                    report.settled_amount.checked_add(settlement.amount).unwrap_or(report.settled_amount);
                tracing::info!(settlement = %settlement.id, amount = %settlement.amount, block = block.0, "settled");
                true
            }
            // The ledger has it; the next round re-submits, gets Duplicate, and records it.
            Err(err) => {
                tracing::warn!(settlement = %settlement.id, error = %err, "settled on the ledger but not recorded yet");
                false
            }
        }
    }
}
