//! One wallet, several budgets: how much of a tenant's balance each of its budgets may commit.
//!
//! A tenant approves each service separately, and ICRC-2 lets the approvals together exceed the
//! wallet's balance. Every budget's open calls (`held + unsettled`) are paid from that one
//! balance, each settlement batch with a ledger fee on top, so the budgets cannot each be bounded
//! by the whole balance: two services with 100 approved each on a wallet of 100 would commit 200.
//! Instead the balance is cut into **slices**, one per budget (its `ledger_cap`):
//!
//! - each budget keeps what it has already committed (`open`), and one fee is set aside for the
//!   settlement of every budget that has or may take something;
//! - what is left is shared out evenly among the budgets that can still use it (max-min fair: a
//!   budget that needs less than an even share — its ledger allowance or approval is nearly used
//!   — leaves the rest to the others);
//! - so the slices and their fees never add up to more than the balance read.
//!
//! Slices are redrawn from a fresh read of the balance every settlement round and after every
//! approval; a slice only ever bounds new holds. The same cut can later split one budget among
//! several nodes (leases), each node spending its slice without asking the others.

use crate::budget::{Budget, ExpiryMargins, MoneyError};
use crate::money::Amount;
use crate::service::ServiceSlug;
use crate::time::Timestamp;

/// One budget's claim on the wallet, as [`slice()`] needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Committed and not yet paid (`held + unsettled`): it keeps its place in the wallet.
    pub open: Amount,
    /// The most this budget could have open: its ledger allowance left (less the fee of the
    /// transfer that pays it) and its approval left, the smaller. Zero when it takes no new holds.
    pub limit: Amount,
}

impl Claim {
    /// The claim of `budget`, whose ledger allowance left is `ledger_room` (`None`: unknown, so it
    /// gets no room beyond what it has committed). An expiring budget takes no new holds.
    pub fn of(budget: &Budget, ledger_room: Option<Amount>, fee: Amount, expiring: bool) -> Result<Self, MoneyError> {
        let open = budget.open()?;
        let approval_left = budget.approved.checked_sub(budget.settled).unwrap_or(Amount::ZERO);
        let limit = match ledger_room {
            Some(room) if !expiring => crate::budget::ledger_cap(room, fee).min(approval_left),
            _ => Amount::ZERO,
        };
        Ok(Self { open, limit })
    }

    /// Whether this budget has or may take something to settle, and so needs a fee set aside.
    fn settles(&self) -> bool {
        self.open > Amount::ZERO || self.limit > self.open
    }

    fn wants(&self) -> u128 {
        self.limit.units().saturating_sub(self.open.units())
    }
}

/// Cuts `balance` into one slice per claim, in the claims' order: `open + share`, where the
/// shares split what the balance leaves after every claim's `open` and one `fee` per claim that
/// settles. The slices plus those fees never exceed the balance, unless what is open already does
/// (the wallet was drained elsewhere): then every slice is just its `open`, and nothing new fits.
pub fn slice(balance: Amount, fee: Amount, claims: &[Claim]) -> Result<Vec<Amount>, MoneyError> {
    let settling = u128::try_from(claims.iter().filter(|claim| claim.settles()).count())
        .map_err(|_| MoneyError("too many budgets"))?;
    let fees = fee.units().checked_mul(settling).ok_or(MoneyError("fees overflow"))?;
    let open = claims
        .iter()
        .try_fold(0u128, |total, claim| total.checked_add(claim.open.units()))
        .ok_or(MoneyError("open amounts overflow"))?;
    let mut free = balance.units().saturating_sub(fees).saturating_sub(open);
    // Water-filling: the smallest wants first, each taking at most an even share of what is left.
    let mut order: Vec<usize> = (0..claims.len()).filter(|&i| claims[i].wants() > 0).collect();
    order.sort_by_key(|&i| claims[i].wants());
    let mut shares = vec![0u128; claims.len()];
    let mut left = order.len() as u128;
    for i in order {
        let share = claims[i].wants().min(free / left);
        shares[i] = share;
        free -= share;
        left -= 1;
    }
    claims
        .iter()
        .zip(shares)
        .map(|(claim, share)| {
            claim.open.units().checked_add(share).map(Amount::new).ok_or(MoneyError("a slice overflows"))
        })
        .collect()
}

/// A tenant's wallet as read from the ledger, for slicing: its balance, the ledger's fee, and each
/// budget's ledger allowance left (`None`: could not be read, so that budget gets no new room).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletRead {
    pub balance: Amount,
    pub fee: Amount,
    pub rooms: Vec<(ServiceSlug, Option<Amount>)>,
}

impl WalletRead {
    fn room(&self, service: &ServiceSlug) -> Option<Amount> {
        self.rooms.iter().find(|(slug, _)| slug == service).and_then(|(_, room)| *room)
    }
}

/// The slices of a tenant's `budgets` (one per budget, in order), from a read of its wallet.
pub fn slice_budgets(
    budgets: &[&Budget],
    wallet: &WalletRead,
    now: Timestamp,
    margins: ExpiryMargins,
) -> Result<Vec<Amount>, MoneyError> {
    let claims = budgets
        .iter()
        .map(|budget| Claim::of(budget, wallet.room(&budget.service), wallet.fee, budget.expiring(now, margins)))
        .collect::<Result<Vec<_>, _>>()?;
    slice(wallet.balance, wallet.fee, &claims)
}

/// Whether `now` is still the budget `seen` was when the wallet was read: the same approval and
/// the same settlements. Otherwise the read is stale (a settlement took from the wallet, or an
/// approval changed what may be spent) and slicing waits for a fresh one.
pub fn unchanged_since(seen: &Budget, now: &Budget) -> bool {
    seen.approved == now.approved && seen.settled == now.settled && seen.expires_at == now.expires_at
}

#[cfg(test)]
#[path = "wallet/tests.rs"]
mod tests;
