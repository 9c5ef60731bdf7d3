//! Charging paid tool calls against an allowance: budgets and charges.
//!
//! A tenant's [`Budget`] for a service mirrors the allowance it last approved on the ledger
//! (`approved`, `expires_at`) and tracks what the gateway has committed against it since: `held`
//! (calls in flight), `unsettled` (captured, not yet transferred) and `settled` (transferred with
//! `transfer_from`, which consumes the ledger allowance). The invariant, kept in every transaction
//! that changes a budget: `held + unsettled + settled <= approved` — no overspend, whatever the
//! concurrency, the number of keys or the number of nodes. A new approval replaces the allowance
//! (ICRC-2), so it resets `settled`: the new amount must cover what is still held and unsettled.
//!
//! A [`Charge`] is one paid call: `held` before the call is forwarded, then `captured` (the call
//! succeeded) or `released` (it failed, or never completed), and later `settled`.

use crate::id::{ChargeId, KeyId, TenantId};
use crate::money::Amount;
use crate::service::ServiceSlug;
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    pub tenant_id: TenantId,
    pub service: ServiceSlug,
    pub approved: Amount,
    pub expires_at: Option<Timestamp>,
    pub held: Amount,
    pub unsettled: Amount,
    pub settled: Amount,
}

impl Budget {
    /// A budget with nothing approved.
    pub fn empty(tenant_id: TenantId, service: ServiceSlug) -> Self {
        Self {
            tenant_id,
            service,
            approved: Amount::ZERO,
            expires_at: None,
            held: Amount::ZERO,
            unsettled: Amount::ZERO,
            settled: Amount::ZERO,
        }
    }

    /// What new holds may still take: nothing once the allowance has expired.
    pub fn available(&self, now: Timestamp) -> Amount {
        if self.expires_at.is_some_and(|at| at <= now) {
            return Amount::ZERO;
        }
        let committed = self
            .held
            .checked_add(self.unsettled)
            .and_then(|sum| sum.checked_add(self.settled))
            .unwrap_or(Amount::new(u128::MAX));
        self.approved.checked_sub(committed).unwrap_or(Amount::ZERO)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChargeState {
    Held,
    Captured,
    Released,
    Settled,
}

impl ChargeState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Captured => "captured",
            Self::Released => "released",
            Self::Settled => "settled",
        }
    }
}

/// A hold about to be placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCharge {
    pub id: ChargeId,
    pub tenant_id: TenantId,
    pub service: ServiceSlug,
    pub key_id: KeyId,
    pub tool: String,
    pub amount: Amount,
    pub at: Timestamp,
}

/// One change to the charge book. Many are applied in one transaction (group commit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeOp {
    /// Place a hold if the budget has room for it.
    Reserve(NewCharge),
    /// The call succeeded: the hold becomes an unsettled charge.
    Capture(ChargeId),
    /// The call failed: the hold is given back.
    Release(ChargeId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChargeOpResult {
    /// The hold is placed.
    Held,
    /// The budget cannot cover the hold; nothing was written.
    Refused { available: Amount },
    /// The capture or release was applied.
    Done,
    /// The charge was not held (unknown, or already captured or released): nothing changed.
    NotHeld,
}

/// A charge whose hold lived only in the memory of the process that placed it and that has now
/// been captured or released: written once, in its final state (see [`ChargeStore::record_resolved`]).
///
/// [`ChargeStore::record_resolved`]: crate::store::ChargeStore::record_resolved
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedCharge {
    pub charge: NewCharge,
    /// `Captured` or `Released`.
    pub state: ChargeState,
    pub resolved_at: Timestamp,
}

/// A batch of captured charges on its way to the ledger. Its id is the transfer's memo and its
/// `created_at_time` is fixed when the batch is recorded, so every retry is the identical
/// transaction and the ledger answers `Duplicate` instead of charging twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub id: crate::id::SettlementId,
    pub tenant_id: TenantId,
    pub service: ServiceSlug,
    pub amount: Amount,
    /// Nanoseconds since the epoch.
    pub created_at_time: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_never_goes_negative_and_stops_at_expiry() {
        let mut budget = Budget::empty(TenantId::new(), ServiceSlug::from_trusted("demo".into()));
        budget.approved = Amount::new(1000);
        budget.held = Amount::new(250);
        budget.unsettled = Amount::new(500);
        let now = Timestamp::from_millis(10_000);
        assert_eq!(budget.available(now), Amount::new(250));
        budget.unsettled = Amount::new(900);
        assert_eq!(budget.available(now), Amount::ZERO);
        budget.unsettled = Amount::new(100);
        budget.settled = Amount::new(600);
        assert_eq!(budget.available(now), Amount::new(50));
        budget.settled = Amount::ZERO;
        budget.unsettled = Amount::ZERO;
        budget.expires_at = Some(now);
        assert_eq!(budget.available(now), Amount::ZERO);
    }
}
