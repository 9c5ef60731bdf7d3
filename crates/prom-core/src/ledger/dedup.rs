//! Transaction deduplication (ICRC-1 "Transaction deduplication", ICRC-2 advisory §1): which calls
//! are the same transaction, and which `created_at_time` a ledger accepts.
//!
//! A call that sets `created_at_time` is deduplicated: the same caller making the same call with
//! structurally equal arguments (memo and `created_at_time` included) gets `Duplicate` with the
//! original block instead of a second transaction. That makes a retry after a lost answer safe. A
//! call without `created_at_time` is never deduplicated.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Account, ApproveArgs, Memo, TransferFromArgs};
use crate::money::Amount;

/// The accepted range of `created_at_time`: from `now - window - permitted_drift` to
/// `now + permitted_drift`. A ledger remembers transactions for the window, so anything older
/// cannot be checked for duplicates and is refused as `TooOld`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxWindow {
    /// `TX_WINDOW`: how long a transaction is remembered (24 hours by default).
    pub window: Duration,
    /// `PERMITTED_DRIFT`: how far a client's clock may be ahead of the ledger's (2 minutes).
    pub permitted_drift: Duration,
}

impl Default for TxWindow {
    fn default() -> Self {
        Self { window: Duration::from_secs(24 * 60 * 60), permitted_drift: Duration::from_secs(2 * 60) }
    }
}

/// Why a `created_at_time` is refused; both ledger error types have these two variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreatedAtTimeError {
    TooOld,
    CreatedInFuture { ledger_time: u64 },
}

impl TxWindow {
    /// Checks `created_at_time` (nanoseconds) against the ledger's time `now`. `None` is accepted:
    /// such a call is simply not deduplicated.
    pub fn check(&self, created_at_time: Option<u64>, now: u64) -> Result<(), CreatedAtTimeError> {
        let Some(created) = created_at_time else { return Ok(()) };
        // In u128 nanoseconds, where neither bound can overflow.
        let (created_wide, now_wide) = (u128::from(created), u128::from(now));
        let (window, drift) = (self.window.as_nanos(), self.permitted_drift.as_nanos());
        if created_wide.saturating_add(window).saturating_add(drift) < now_wide {
            return Err(CreatedAtTimeError::TooOld);
        }
        if created_wide > now_wide.saturating_add(drift) {
            return Err(CreatedAtTimeError::CreatedInFuture { ledger_time: now });
        }
        Ok(())
    }
}

/// What identifies a deduplicated call: a SHA-256 digest of the method, the caller and every
/// argument, stored with the transaction it produced.
///
/// The encoding below must never change: a ledger upgraded within a transaction window would
/// otherwise apply a retried call a second time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DedupKey([u8; 32]);

impl DedupKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl ApproveArgs {
    /// The call's deduplication key, or `None` when `created_at_time` is not set.
    pub fn dedup_key(&self, caller: &str) -> Option<DedupKey> {
        let created_at_time = self.created_at_time?;
        let mut key = KeyWriter::new("icrc2_approve", caller);
        key.subaccount(self.from_subaccount.as_ref());
        key.account(&self.spender);
        key.amount(self.amount);
        key.optional_amount(self.expected_allowance);
        key.optional_u64(self.expires_at);
        key.optional_amount(self.fee);
        key.memo(self.memo.as_ref());
        key.optional_u64(Some(created_at_time));
        Some(key.finish())
    }
}

impl TransferFromArgs {
    /// The call's deduplication key, or `None` when `created_at_time` is not set.
    pub fn dedup_key(&self, caller: &str) -> Option<DedupKey> {
        let created_at_time = self.created_at_time?;
        let mut key = KeyWriter::new("icrc2_transfer_from", caller);
        key.subaccount(self.spender_subaccount.as_ref());
        key.account(&self.from);
        key.account(&self.to);
        key.amount(self.amount);
        key.optional_amount(self.fee);
        key.memo(self.memo.as_ref());
        key.optional_u64(Some(created_at_time));
        Some(key.finish())
    }
}

/// An unambiguous encoding: every variable-length field is length-prefixed and every optional
/// field carries a presence byte, so no two different calls encode alike.
struct KeyWriter(Sha256);

impl KeyWriter {
    fn new(method: &str, caller: &str) -> Self {
        let mut writer = Self(Sha256::new());
        writer.bytes(b"prometheus ledger dedup v1");
        writer.bytes(method.as_bytes());
        writer.bytes(caller.as_bytes());
        writer
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    /// Subaccounts are written in their effective form: `None` is the default subaccount.
    fn subaccount(&mut self, subaccount: Option<&[u8; 32]>) {
        self.0.update(subaccount.unwrap_or(&super::DEFAULT_SUBACCOUNT));
    }

    fn account(&mut self, account: &Account) {
        self.bytes(account.owner.as_bytes());
        self.subaccount(Some(account.effective_subaccount()));
    }

    fn amount(&mut self, amount: Amount) {
        self.0.update(amount.units().to_be_bytes());
    }

    fn optional_amount(&mut self, amount: Option<Amount>) {
        match amount {
            Some(amount) => {
                self.0.update([1]);
                self.amount(amount);
            }
            None => self.0.update([0]),
        }
    }

    fn optional_u64(&mut self, value: Option<u64>) {
        match value {
            Some(value) => {
                self.0.update([1]);
                self.0.update(value.to_be_bytes());
            }
            None => self.0.update([0]),
        }
    }

    fn memo(&mut self, memo: Option<&Memo>) {
        match memo {
            Some(memo) => {
                self.0.update([1]);
                self.bytes(memo.as_bytes());
            }
            None => self.0.update([0]),
        }
    }

    fn finish(self) -> DedupKey {
        DedupKey(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::DEFAULT_SUBACCOUNT;

    const SECOND: u64 = 1_000_000_000;
    const NOW: u64 = 1_800_000_000 * SECOND;

    #[test]
    fn created_at_time_must_be_within_the_window_and_drift() {
        let window = TxWindow::default();
        let day = 24 * 60 * 60 * SECOND;
        let drift = 120 * SECOND;
        assert_eq!(window.check(None, NOW), Ok(()));
        assert_eq!(window.check(Some(NOW), NOW), Ok(()));
        assert_eq!(window.check(Some(NOW - day - drift), NOW), Ok(()), "the oldest accepted instant");
        assert_eq!(window.check(Some(NOW - day - drift - 1), NOW), Err(CreatedAtTimeError::TooOld));
        assert_eq!(window.check(Some(0), NOW), Err(CreatedAtTimeError::TooOld));
        assert_eq!(window.check(Some(NOW + drift), NOW), Ok(()), "the latest accepted instant");
        let future = Err(CreatedAtTimeError::CreatedInFuture { ledger_time: NOW });
        assert_eq!(window.check(Some(NOW + drift + 1), NOW), future);
        assert_eq!(window.check(Some(u64::MAX), NOW), future);
        assert_eq!(window.check(Some(0), 0), Ok(()), "no underflow at the epoch");
    }

    fn approve() -> ApproveArgs {
        ApproveArgs {
            from_subaccount: None,
            spender: Account::new("platform"),
            amount: Amount::new(100),
            expected_allowance: None,
            expires_at: None,
            fee: None,
            memo: Some(Memo::new(*b"charge-1").unwrap()),
            created_at_time: Some(NOW),
        }
    }

    fn transfer() -> TransferFromArgs {
        TransferFromArgs {
            spender_subaccount: None,
            from: Account::new("tenant:a"),
            to: Account::new("tenant:b"),
            amount: Amount::new(100),
            fee: None,
            memo: None,
            created_at_time: Some(NOW),
        }
    }

    #[test]
    fn only_calls_with_created_at_time_are_deduplicated() {
        assert_eq!(ApproveArgs { created_at_time: None, ..approve() }.dedup_key("tenant:a"), None);
        assert_eq!(TransferFromArgs { created_at_time: None, ..transfer() }.dedup_key("platform"), None);
    }

    #[test]
    fn equal_calls_have_equal_keys() {
        assert_eq!(approve().dedup_key("tenant:a"), approve().dedup_key("tenant:a"));
        assert_eq!(transfer().dedup_key("platform"), transfer().dedup_key("platform"));
        let zeros = ApproveArgs { from_subaccount: Some(DEFAULT_SUBACCOUNT), ..approve() };
        assert_eq!(zeros.dedup_key("tenant:a"), approve().dedup_key("tenant:a"), "the default subaccount is None");
    }

    #[test]
    fn every_argument_and_the_caller_count() {
        let base = approve().dedup_key("tenant:a");
        let variants = [
            approve().dedup_key("tenant:b"),
            ApproveArgs { from_subaccount: Some([1; 32]), ..approve() }.dedup_key("tenant:a"),
            ApproveArgs { spender: Account::with_subaccount("platform", [2; 32]), ..approve() }.dedup_key("tenant:a"),
            ApproveArgs { amount: Amount::new(101), ..approve() }.dedup_key("tenant:a"),
            ApproveArgs { expected_allowance: Some(Amount::ZERO), ..approve() }.dedup_key("tenant:a"),
            ApproveArgs { expires_at: Some(NOW), ..approve() }.dedup_key("tenant:a"),
            ApproveArgs { fee: Some(Amount::ZERO), ..approve() }.dedup_key("tenant:a"),
            ApproveArgs { memo: None, ..approve() }.dedup_key("tenant:a"),
            ApproveArgs { memo: Some(Memo::new(Vec::new()).unwrap()), ..approve() }.dedup_key("tenant:a"),
            ApproveArgs { memo: Some(Memo::new(*b"charge-2").unwrap()), ..approve() }.dedup_key("tenant:a"),
            ApproveArgs { created_at_time: Some(NOW + 1), ..approve() }.dedup_key("tenant:a"),
        ];
        for (n, variant) in variants.iter().enumerate() {
            assert_ne!(*variant, base, "variant {n}");
        }

        let base = transfer().dedup_key("platform");
        let variants = [
            transfer().dedup_key("platform2"),
            TransferFromArgs { spender_subaccount: Some([1; 32]), ..transfer() }.dedup_key("platform"),
            TransferFromArgs { from: Account::new("tenant:c"), ..transfer() }.dedup_key("platform"),
            TransferFromArgs { to: Account::new("tenant:c"), ..transfer() }.dedup_key("platform"),
            TransferFromArgs { amount: Amount::new(1), ..transfer() }.dedup_key("platform"),
            TransferFromArgs { fee: Some(Amount::ZERO), ..transfer() }.dedup_key("platform"),
            TransferFromArgs { memo: Some(Memo::new(Vec::new()).unwrap()), ..transfer() }.dedup_key("platform"),
            TransferFromArgs { created_at_time: Some(NOW - 1), ..transfer() }.dedup_key("platform"),
        ];
        for (n, variant) in variants.iter().enumerate() {
            assert_ne!(*variant, base, "variant {n}");
        }
    }

    #[test]
    fn methods_do_not_collide() {
        // Same caller, same shape of bytes where possible: the method name keeps them apart.
        let approve = approve().dedup_key("x");
        let transfer = transfer().dedup_key("x");
        assert_ne!(approve, transfer);
    }

    #[test]
    fn owner_boundaries_are_unambiguous() {
        let a = TransferFromArgs { from: Account::new("ab"), to: Account::new("c"), ..transfer() };
        let b = TransferFromArgs { from: Account::new("a"), to: Account::new("bc"), ..transfer() };
        assert_ne!(a.dedup_key("p"), b.dedup_key("p"));
    }
}
