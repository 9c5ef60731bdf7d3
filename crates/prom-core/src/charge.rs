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
    /// Set while an approval that may lower the allowance is on its way to the ledger: new holds
    /// keep `held + unsettled` within it, so that what the new allowance must cover cannot grow
    /// past it meanwhile. Cleared when the approval is recorded (or given up).
    pub ceiling: Option<Amount>,
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
            ceiling: None,
        }
    }

    /// What new holds may still take: nothing once the allowance has expired, or is within
    /// `margins.hold` of it.
    pub fn available(&self, now: Timestamp, margins: ExpiryMargins) -> Amount {
        if self.expiring(now, margins) {
            return Amount::ZERO;
        }
        let committed = self
            .held
            .checked_add(self.unsettled)
            .and_then(|sum| sum.checked_add(self.settled))
            .unwrap_or(Amount::new(u128::MAX));
        let available = self.approved.checked_sub(committed).unwrap_or(Amount::ZERO);
        match self.ceiling {
            Some(ceiling) => {
                let open = self.held.checked_add(self.unsettled).unwrap_or(Amount::new(u128::MAX));
                available.min(ceiling.checked_sub(open).unwrap_or(Amount::ZERO))
            }
            None => available,
        }
    }

    /// Whether a call held against this budget may still be captured at `now`: not within
    /// `margins.capture` of the allowance's expiry, since the charge could then no longer reach the
    /// ledger before the allowance stops letting the platform spend it.
    pub fn may_capture(&self, now: Timestamp, margins: ExpiryMargins) -> bool {
        self.expires_at.is_none_or(|at| now.plus_millis(margins.capture_ms) < at)
    }

    /// Whether the allowance expires within `margins.hold` of `now` (so it refuses new holds).
    pub fn expiring(&self, now: Timestamp, margins: ExpiryMargins) -> bool {
        self.expires_at.is_some_and(|at| at <= now.plus_millis(margins.hold_ms))
    }
}

/// How close to an allowance's expiry paid calls stop. A captured charge is paid by a later
/// settlement round (`transfer_from`), which the ledger refuses once the allowance has expired: so
/// new holds stop `hold_ms` before the expiry, and a call that ends within `capture_ms` of it is
/// not captured (its hold is released and its result withheld), leaving at least one settlement
/// round to move every captured charge while the allowance still stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpiryMargins {
    pub hold_ms: i64,
    pub capture_ms: i64,
}

impl ExpiryMargins {
    /// No margin: holds stop and captures are refused only at the expiry itself.
    pub const NONE: Self = Self { hold_ms: 0, capture_ms: 0 };

    /// The margins for a server that settles every `settle_every`: captures stop two settlement
    /// intervals (and at least 10 s) before the expiry, and holds a minute before that, so calls
    /// held in time usually end in time.
    pub fn for_settlement(settle_every: std::time::Duration) -> Self {
        let millis = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let capture_ms = millis(settle_every).saturating_mul(2).max(10_000);
        Self { hold_ms: capture_ms.saturating_add(60_000), capture_ms }
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
    /// The budget cannot cover the hold; nothing was written. `expiring` when the reason is the
    /// allowance's (near) expiry rather than its amount.
    Refused { available: Amount, expiring: bool },
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
    /// carried out (see [`ChargeStore::set_settlement_in_doubt`]).
    ///
    /// [`ChargeStore::set_settlement_in_doubt`]: crate::store::ChargeStore::set_settlement_in_doubt
    pub in_doubt: bool,
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
        let none = ExpiryMargins::NONE;
        assert_eq!(budget.available(now, none), Amount::new(250));
        budget.unsettled = Amount::new(900);
        assert_eq!(budget.available(now, none), Amount::ZERO);
        budget.unsettled = Amount::new(100);
        budget.settled = Amount::new(600);
        assert_eq!(budget.available(now, none), Amount::new(50));
        budget.settled = Amount::ZERO;
        budget.unsettled = Amount::ZERO;
        budget.expires_at = Some(now);
        assert_eq!(budget.available(now, none), Amount::ZERO);
        assert!(!budget.may_capture(now, none));
    }

    #[test]
    fn a_ceiling_bounds_what_is_held_and_unsettled_below_the_approval() {
        let mut budget = Budget::empty(TenantId::new(), ServiceSlug::from_trusted("demo".into()));
        budget.approved = Amount::new(1000);
        budget.held = Amount::new(100);
        budget.unsettled = Amount::new(200);
        budget.settled = Amount::new(300);
        let now = Timestamp::from_millis(10_000);
        let none = ExpiryMargins::NONE;
        assert_eq!(budget.available(now, none), Amount::new(400));
        // Lowering to 350: settled charges are paid and do not count against the new amount.
        budget.ceiling = Some(Amount::new(350));
        assert_eq!(budget.available(now, none), Amount::new(50));
        // A ceiling above what the approval leaves changes nothing.
        budget.ceiling = Some(Amount::new(5000));
        assert_eq!(budget.available(now, none), Amount::new(400));
        // Already past it: nothing more.
        budget.ceiling = Some(Amount::new(250));
        assert_eq!(budget.available(now, none), Amount::ZERO);
    }

    #[test]
    fn holds_and_captures_stop_before_the_expiry_by_their_margins() {
        let margins = ExpiryMargins::for_settlement(std::time::Duration::from_secs(10));
        assert_eq!(margins, ExpiryMargins { hold_ms: 80_000, capture_ms: 20_000 });
        // Quick settlement still leaves 10 s to settle in.
        assert_eq!(ExpiryMargins::for_settlement(std::time::Duration::from_secs(1)).capture_ms, 10_000);

        let mut budget = Budget::empty(TenantId::new(), ServiceSlug::from_trusted("demo".into()));
        budget.approved = Amount::new(1000);
        let expiry = Timestamp::from_millis(1_000_000);
        budget.expires_at = Some(expiry);
        // More than the hold margin ahead: holds and captures go on.
        let early = Timestamp::from_millis(expiry.as_millis() - 80_001);
        assert_eq!(budget.available(early, margins), Amount::new(1000));
        assert!(!budget.expiring(early, margins));
        assert!(budget.may_capture(early, margins));
        // Within the hold margin: no new hold, but a call held earlier may still be captured.
        let late = Timestamp::from_millis(expiry.as_millis() - 80_000);
        assert_eq!(budget.available(late, margins), Amount::ZERO);
        assert!(budget.expiring(late, margins));
        assert!(budget.may_capture(late, margins));
        // Within the capture margin: no capture either.
        assert!(budget.may_capture(Timestamp::from_millis(expiry.as_millis() - 20_001), margins));
        assert!(!budget.may_capture(Timestamp::from_millis(expiry.as_millis() - 20_000), margins));
        // An allowance without expiry never stops.
        budget.expires_at = None;
        assert_eq!(budget.available(Timestamp::from_millis(i64::MAX), margins), Amount::new(1000));
        assert!(budget.may_capture(Timestamp::from_millis(i64::MAX), margins));
    }
}
