//! The money rules, written once: a tenant's [`Budget`] for a service as a pure state machine over
//! exact amounts, which every charge book (in memory on the embedded database, in transactions on
//! PostgreSQL) applies the same way.
//!
//! A budget mirrors the allowance the tenant last approved on the ledger (`approved`,
//! `expires_at`) and tracks what the gateway has committed against it since: `held` (calls in
//! flight), `unsettled` (captured, not yet transferred) and `settled` (transferred). Two limits
//! may bound what is open (`held + unsettled`) below the approval: a `ceiling` while an approval
//! that may lower the allowance is on its way to the ledger, and the `ledger_cap`, what the ledger
//! can still pay as last read (the allowance left and the wallet's balance, less the fee of the
//! settlement that will pay them). The invariants, after every operation:
//! `held + unsettled + settled <= approved`, and a hold only ever placed within both limits.
//!
//! Arithmetic is checked: an overflow or an amount taken that was never there is a
//! [`MoneyError`] — a corrupt book — never a saturated value.

use crate::id::TenantId;
use crate::money::Amount;
use crate::service::{Prices, ServiceSlug};
use crate::time::Timestamp;

/// The book does not add up: an operation would overflow, or take more than is there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the charge book is corrupt: {0}")]
pub struct MoneyError(pub &'static str);

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
    /// This budget's slice of the wallet (see [`crate::wallet`]): what the ledger can pay for it,
    /// within its ledger allowance left and its share of the balance that the tenant's other
    /// budgets leave. New holds keep `held + unsettled` within it; each settlement takes its
    /// amount and fee out of it. `None`: never cut (no limit beyond the approval).
    pub ledger_cap: Option<Amount>,
    /// The prices the tenant's approval covers (`None`: approved before prices were recorded,
    /// so the current ones apply).
    pub prices: Option<Prices>,
}

/// What a hold came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldOutcome {
    Held,
    /// No room: `available` is what is left; `expiring` when the reason is the allowance's (near)
    /// expiry rather than its amount.
    Refused {
        available: Amount,
        expiring: bool,
    },
}

/// How a hold ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldEnd {
    /// The call's result is charged: the hold became unsettled.
    Captured,
    /// The hold was given back.
    Released,
    /// A capture too close to the allowance's expiry to be settled: released instead (the result
    /// must be withheld).
    Expired,
}

fn add(a: Amount, b: Amount, what: &'static str) -> Result<Amount, MoneyError> {
    a.checked_add(b).ok_or(MoneyError(what))
}

fn sub(a: Amount, b: Amount, what: &'static str) -> Result<Amount, MoneyError> {
    a.checked_sub(b).ok_or(MoneyError(what))
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
            ledger_cap: None,
            prices: None,
        }
    }

    /// What a call of `tool`, priced `current` now, costs this tenant: the price its approval
    /// covers, or less if the price fell since. `None` when the tool is priced now but was free
    /// (or unknown) when the tenant approved: an increase it has not agreed to.
    pub fn price_in_force(&self, tool: &str, current: Amount) -> Option<Amount> {
        let Some(approved) = &self.prices else { return Some(current) };
        match approved.get(tool) {
            Some(consented) => Some(current.min(*consented)),
            None if current == Amount::ZERO => Some(current),
            None => None,
        }
    }

    /// `held + unsettled`: what the next settlements must still pay.
    pub fn open(&self) -> Result<Amount, MoneyError> {
        add(self.held, self.unsettled, "held + unsettled overflows")
    }

    /// What new holds may still take: nothing once the allowance has expired, or is within
    /// `margins.hold` of it; never more than the ceiling or the ledger's cap leave.
    pub fn available(&self, now: Timestamp, margins: ExpiryMargins) -> Result<Amount, MoneyError> {
        let open = self.open()?;
        let committed = add(open, self.settled, "held + unsettled + settled overflows")?;
        let mut available = sub(self.approved, committed, "more is committed than was approved")?;
        if self.expiring(now, margins) {
            return Ok(Amount::ZERO);
        }
        for limit in [self.ceiling, self.ledger_cap].into_iter().flatten() {
            // A limit below what is open already (lowered since) leaves nothing: not an error.
            available = available.min(limit.checked_sub(open).unwrap_or(Amount::ZERO));
        }
        Ok(available)
    }

    /// Places a hold of `amount` if there is room for it.
    pub fn hold(&mut self, amount: Amount, now: Timestamp, margins: ExpiryMargins) -> Result<HoldOutcome, MoneyError> {
        let available = self.available(now, margins)?;
        let expiring = self.expiring(now, margins);
        if amount > available || expiring {
            return Ok(HoldOutcome::Refused { available, expiring });
        }
        self.held = add(self.held, amount, "holds overflow")?;
        Ok(HoldOutcome::Held)
    }

    /// Ends a hold of `amount`: captured when `capture` (unless too close to the allowance's
    /// expiry to be settled), released otherwise.
    pub fn end_hold(
        &mut self,
        amount: Amount,
        capture: bool,
        now: Timestamp,
        margins: ExpiryMargins,
    ) -> Result<HoldEnd, MoneyError> {
        self.held = sub(self.held, amount, "a hold ended that was not held")?;
        if !capture {
            return Ok(HoldEnd::Released);
        }
        if !self.may_capture(now, margins) {
            return Ok(HoldEnd::Expired);
        }
        self.unsettled = add(self.unsettled, amount, "unsettled overflows")?;
        Ok(HoldEnd::Captured)
    }

    /// Adds captures that are decided but not yet in the row this budget was read from.
    pub fn add_unsettled(&mut self, amount: Amount) -> Result<(), MoneyError> {
        self.unsettled = add(self.unsettled, amount, "unsettled overflows")?;
        Ok(())
    }

    /// Takes back captures that could not be written (their results were withheld).
    pub fn remove_unsettled(&mut self, amount: Amount) -> Result<(), MoneyError> {
        self.unsettled = sub(self.unsettled, amount, "a capture taken back that was not unsettled")?;
        Ok(())
    }

    /// A settlement paid `amount` of what was unsettled, and the ledger took `fee` besides: both
    /// left the wallet, so the budget's slice of it shrinks by both at once (what is open shrinks
    /// by `amount` only), until the next read of the balance draws it again.
    pub fn settle(&mut self, amount: Amount, fee: Amount) -> Result<(), MoneyError> {
        self.unsettled = sub(self.unsettled, amount, "settled more than was unsettled")?;
        self.settled = add(self.settled, amount, "settled overflows")?;
        if let Some(cap) = self.ledger_cap {
            let spent = add(amount, fee, "a settlement and its fee overflow")?;
            self.ledger_cap = Some(cap.checked_sub(spent).unwrap_or(Amount::ZERO));
        }
        Ok(())
    }

    /// A new approval of `amount`, which replaces the allowance (ICRC-2): it must cover what is
    /// still held and unsettled (owed, whatever the new amount), and starts `settled` again.
    /// `Err` with what is open when it does not.
    pub fn approve(&mut self, amount: Amount, expires_at: Option<Timestamp>) -> Result<Result<(), Amount>, MoneyError> {
        let open = self.open()?;
        if amount < open {
            return Ok(Err(open));
        }
        self.approved = amount;
        self.expires_at = expires_at;
        self.settled = Amount::ZERO;
        self.ceiling = None;
        Ok(Ok(()))
    }

    /// What the ledger can pay for this budget now (`room`: the allowance left and the balance,
    /// the smaller) less the `fee` of the transfer that will pay it. It bounds new holds; it never
    /// changes what was approved.
    pub fn cap_to_ledger(&mut self, room: Amount, fee: Amount) {
        self.ledger_cap = Some(ledger_cap(room, fee));
    }

    /// The invariant: what was committed stays within the approval.
    pub fn check(&self) -> Result<(), MoneyError> {
        let committed = add(self.open()?, self.settled, "held + unsettled + settled overflows")?;
        if committed > self.approved {
            return Err(MoneyError("more is committed than was approved"));
        }
        Ok(())
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

/// What the ledger can pay for a budget's open calls: `room` (the ledger allowance left and the
/// wallet balance, the smaller) less the `fee` of the transfer that will pay them.
pub fn ledger_cap(room: Amount, fee: Amount) -> Amount {
    room.checked_sub(fee).unwrap_or(Amount::ZERO)
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

#[cfg(test)]
#[path = "budget/tests.rs"]
mod tests;
