//! Spend limits on one credential, on top of the tenant's allowance: an OAuth grant's spend cap
//! (and, later, per-key caps). A [`SpendLimit`] is kept by the same charge books as budgets and
//! under the same locks, so a hold is placed on both at once or on neither, and the invariant
//! `held + spent <= cap` holds whatever the concurrency: a call is never held past the cap.
//!
//! `spent` counts captured charges (settled or not): a cap bounds what the credential cost over
//! its whole life, not what is still to be settled.

use crate::budget::MoneyError;
use crate::money::Amount;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpendLimit {
    pub cap: Amount,
    pub held: Amount,
    pub spent: Amount,
}

impl SpendLimit {
    /// A limit of `cap` on a credential whose captured charges came to `spent`.
    pub fn new(cap: Amount, spent: Amount) -> Self {
        Self { cap, held: Amount::ZERO, spent }
    }

    /// What new holds may still take (nothing once a lowered cap is below what is committed).
    pub fn available(&self) -> Amount {
        let committed = self.held.checked_add(self.spent).unwrap_or(Amount::new(u128::MAX));
        self.cap.checked_sub(committed).unwrap_or(Amount::ZERO)
    }

    /// Whether a hold of `amount` fits.
    pub fn fits(&self, amount: Amount) -> bool {
        amount <= self.available()
    }

    /// Places a hold of `amount` (the caller checked [`Self::fits`] under the same lock).
    pub fn hold(&mut self, amount: Amount) -> Result<(), MoneyError> {
        if !self.fits(amount) {
            return Err(MoneyError("a hold past the spend cap"));
        }
        self.held = self.held.checked_add(amount).ok_or(MoneyError("limit holds overflow"))?;
        Ok(())
    }

    /// Ends a hold of `amount`: it counts as spent when `captured`.
    pub fn end_hold(&mut self, amount: Amount, captured: bool) -> Result<(), MoneyError> {
        self.held = self.held.checked_sub(amount).ok_or(MoneyError("a limit hold ended that was not held"))?;
        if captured {
            self.spent = self.spent.checked_add(amount).ok_or(MoneyError("limit spending overflows"))?;
        }
        Ok(())
    }

    /// Takes back a capture that could not be written (its result was withheld).
    pub fn take_back(&mut self, amount: Amount) -> Result<(), MoneyError> {
        self.spent = self.spent.checked_sub(amount).ok_or(MoneyError("a capture taken back that was not spent"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_stay_within_the_cap() {
        let mut limit = SpendLimit::new(Amount::new(1000), Amount::new(400));
        assert_eq!(limit.available(), Amount::new(600));
        limit.hold(Amount::new(500)).unwrap();
        assert!(!limit.fits(Amount::new(101)));
        assert!(limit.hold(Amount::new(101)).is_err());
        limit.end_hold(Amount::new(500), true).unwrap();
        assert_eq!((limit.held, limit.spent, limit.available()), (Amount::ZERO, Amount::new(900), Amount::new(100)));
        limit.hold(Amount::new(100)).unwrap();
        limit.end_hold(Amount::new(100), false).unwrap();
        assert_eq!(limit.spent, Amount::new(900));
        limit.take_back(Amount::new(900)).unwrap();
        assert!(limit.take_back(Amount::new(1)).is_err());
        assert!(limit.end_hold(Amount::new(1), false).is_err());
    }

    #[test]
    fn a_lowered_cap_leaves_nothing_rather_than_failing() {
        let limit = SpendLimit { cap: Amount::new(10), held: Amount::new(5), spent: Amount::new(20) };
        assert_eq!(limit.available(), Amount::ZERO);
    }
}
