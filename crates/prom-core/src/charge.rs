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
//! A charge is one paid call: `held` before the call is forwarded, then `captured` (the call
//! succeeded) or `released` (it failed, or never completed), and later `settled`.

use crate::id::{ChargeId, KeyId, TenantId};
use crate::money::Amount;
use crate::service::ServiceSlug;
use crate::time::Timestamp;

pub use crate::budget::{Budget, ExpiryMargins, HoldEnd, HoldOutcome, MoneyError, ledger_cap};

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
    /// The spend cap of the credential that made the call (an OAuth grant's), held against
    /// together with the budget (see [`crate::limit`]); `None`: no cap beyond the allowance.
    pub cap: Option<Amount>,
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
    /// The budget cannot cover the hold; nothing was written. `expiring` when the reason is the
    /// allowance's (near) expiry rather than its amount.
    Refused { available: Amount, expiring: bool },
    /// The credential's spend cap cannot cover the hold (the budget may): nothing was written.
    CapReached { cap: Amount, available: Amount },
    /// The tool's price rose above what the tenant's approval covers (or it was free then): the
    /// tenant must approve again to accept it. Nothing was written.
    PriceNotApproved,
    /// The capture or release was applied.
    Done,
    /// The allowance expires too soon for this capture to be settled (see [`ExpiryMargins`]): the
    /// hold was released instead, and the call's result must be withheld.
    Expired,
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
    /// The last call to the ledger for this batch got no definite answer: it may have been
    /// carried out (see [`SettlementStore::set_settlement_in_doubt`]).
    ///
    /// [`SettlementStore::set_settlement_in_doubt`]: crate::store::SettlementStore::set_settlement_in_doubt
    pub in_doubt: bool,
}
