//! The embedded ICRC-1/ICRC-2 ledger: [`Ledger`] on tables in the store's own database, the
//! default ledger of a deployment and the test double of record.
//!
//! Each `approve`, `transfer_from` and `mint` is one database transaction: it locks the rows it
//! touches (the allowance, then the balances, see [`book`]), checks the rules on what it read, and
//! writes the new balances, the allowance and the block together, or rolls back and answers the
//! error, having changed nothing. Rows are locked before anything is read, so two concurrent calls
//! never both spend the same allowance or balance, and a retried call finds the block its first
//! attempt committed.
//!
//! The checks, in the order a call meets them:
//! 1. the ledger is not suspended (`TemporarilyUnavailable`);
//! 2. the arguments alone: self-approval and the minting account (`GenericError`), `fee`
//!    (`BadFee`), a burn's minimum (`BadBurn`), `created_at_time` (`TooOld`, `CreatedInFuture`);
//! 3. under the locks: a deduplicated call seen before (`Duplicate`, before anything else, so a
//!    retry always learns its block, and before `expected_allowance` as the ICRC-2 advisory asks);
//! 4. the rest: `Expired` (after `Duplicate`, so a retry that arrives after its own expiry still
//!    learns its block), `AllowanceChanged`, `InsufficientAllowance`, `InsufficientFunds`, and a
//!    credit past `u128` (`GenericError`).
//!
//! Fees are burned (ICRC-1: the minting account receives burnt fees, and it holds no balance):
//! debited and credited to no one. Transfers to the minting account are burns: no fee, at least
//! `min_burn_amount`. Amounts are decimal text in both databases and compared only in Rust, under
//! the rows' locks.

mod book;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use prom_core::ledger::{
    Account, Allowance, AllowanceArgs, ApproveArgs, ApproveError, BlockIndex, Clock, Ledger, LedgerError,
    TransferFromArgs, TransferFromError, TxWindow,
};
use prom_core::money::Amount;
use prom_core::store::StoreError;

use self::book::{Book, Kind, NewBlock};
use crate::{SqlStore, db_err, with_write};

/// How the embedded ledger behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedLedgerConfig {
    /// `icrc1_fee`: charged on every `approve` (to the approver) and `transfer_from` (to `from`,
    /// out of the allowance too), except burns.
    pub fee: Amount,
    /// `icrc1_decimals`.
    pub decimals: u8,
    /// Where minted tokens come from and burned tokens and fees go. It holds no balance, cannot
    /// approve and cannot be debited.
    pub minting_account: Account,
    /// The smallest amount a burn (a `transfer_from` to the minting account) may have.
    pub min_burn_amount: Amount,
    /// Which `created_at_time` is accepted, and how long calls are deduplicated.
    pub tx_window: TxWindow,
}

impl Default for EmbeddedLedgerConfig {
    fn default() -> Self {
        Self {
            fee: Amount::ZERO,
            decimals: 8,
            minting_account: Account::new("minting"),
            min_burn_amount: Amount::ZERO,
            tx_window: TxWindow::default(),
        }
    }
}

/// The ledger in the store's database. Clones share the store, the clock and the suspension.
#[derive(Clone, Debug)]
pub struct EmbeddedLedger {
    store: SqlStore,
    config: Arc<EmbeddedLedgerConfig>,
    clock: Arc<dyn Clock>,
    suspended: Arc<AtomicBool>,
}

/// Runs `$apply` (a future over `$tx`, answering `StoreResult<Result<_, _>>`) in one write
/// transaction of `$ledger`'s store, committed when the answer is `Ok` and rolled back otherwise.
macro_rules! in_transaction {
    ($ledger:expr, $tx:ident => $apply:expr) => {
        with_write!($ledger.store, pool => {
            let mut $tx = pool.begin().await.map_err(db_err)?;
            let answer = $apply.await?;
            if answer.is_ok() {
                $tx.commit().await.map_err(db_err)?;
            } else {
                $tx.rollback().await.map_err(db_err)?;
            }
            answer
        })
    };
}

impl EmbeddedLedger {
    // The `GenericError` codes are a contract (callers match on them): they never change.

    /// `GenericError` code: the spender's owner is the approver. ICRC-2: "The ledger SHOULD reject
    /// the call if the spender account owner is equal to the source account owner."
    pub const SELF_APPROVAL: u64 = 1;
    /// `GenericError` code: the minting account cannot approve or be debited.
    pub const MINTING_ACCOUNT: u64 = 2;
    /// `GenericError` code: the credit would take the recipient's balance past `u128`.
    pub const BALANCE_OVERFLOW: u64 = 3;

    pub fn new(store: SqlStore, config: EmbeddedLedgerConfig, clock: Arc<dyn Clock>) -> Self {
        Self { store, config: Arc::new(config), clock, suspended: Arc::new(AtomicBool::new(false)) }
    }

    pub fn config(&self) -> &EmbeddedLedgerConfig {
        &self.config
    }

    /// Refuses `approve` and `transfer_from` with `TemporarilyUnavailable` until [`resume`]
    /// (maintenance, or a test of how callers cope; reads and `mint` keep working).
    ///
    /// [`resume`]: EmbeddedLedger::resume
    pub fn suspend(&self) {
        self.suspended.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.suspended.store(false, Ordering::SeqCst);
    }

    pub fn is_suspended(&self) -> bool {
        self.suspended.load(Ordering::SeqCst)
    }

    /// The checks on an approval's arguments alone.
    fn precheck_approve(&self, from: &Account, args: &ApproveArgs, now: u64) -> Result<(), ApproveError> {
        if self.is_suspended() {
            return Err(ApproveError::TemporarilyUnavailable);
        }
        if args.spender.owner == from.owner {
            return Err(ApproveError::GenericError {
                error_code: Self::SELF_APPROVAL,
                message: "the spender account owner is the caller: an owner cannot approve itself".into(),
            });
        }
        if *from == self.config.minting_account {
            return Err(ApproveError::GenericError {
                error_code: Self::MINTING_ACCOUNT,
                message: "the minting account cannot approve spenders".into(),
            });
        }
        if args.fee.is_some_and(|fee| fee != self.config.fee) {
            return Err(ApproveError::BadFee { expected_fee: self.config.fee });
        }
        self.config.tx_window.check(args.created_at_time, now)?;
        Ok(())
    }

    async fn apply_approve(
        &self,
        tx: &mut impl Book,
        caller: &str,
        from: &Account,
        args: &ApproveArgs,
        now: u64,
    ) -> Result<Result<BlockIndex, ApproveError>, StoreError> {
        let stored = tx.lock_allowance(from, &args.spender).await?;
        let balance = tx.lock_balance(from).await?;
        let dedup_key = args.dedup_key(caller);
        if let Some(key) = &dedup_key
            && let Some(duplicate_of) = tx.find_block(key).await?
        {
            return Ok(Err(ApproveError::Duplicate { duplicate_of }));
        }
        if args.expires_at.is_some_and(|at| at <= now) {
            return Ok(Err(ApproveError::Expired { ledger_time: now }));
        }
        let current_allowance = stored.as_of(now).allowance;
        if args.expected_allowance.is_some_and(|expected| expected != current_allowance) {
            return Ok(Err(ApproveError::AllowanceChanged { current_allowance }));
        }
        let fee = self.config.fee;
        let Some(rest) = balance.checked_sub(fee) else {
            return Ok(Err(ApproveError::InsufficientFunds { balance }));
        };
        tx.set_balance(from, rest).await?;
        // The approval replaces the allowance; a zero allowance has no expiry (there is no approval).
        let replaced = Allowance { allowance: args.amount, expires_at: args.expires_at }.as_of(now);
        tx.set_allowance(from, &args.spender, replaced).await?;
        let block = NewBlock {
            kind: Kind::Approve,
            caller: Some(caller),
            from: Some(from),
            to: None,
            spender: Some(&args.spender),
            amount: args.amount,
            fee,
            expected_allowance: args.expected_allowance,
            expires_at: args.expires_at,
            memo: args.memo.as_ref(),
            created_at_time: args.created_at_time,
            ledger_time: now,
            dedup_key,
        };
        Ok(Ok(tx.append(&block).await?))
    }

    /// The checks on a transfer's arguments alone; returns the fee it will pay.
    fn precheck_transfer_from(&self, args: &TransferFromArgs, now: u64) -> Result<Amount, TransferFromError> {
        if self.is_suspended() {
            return Err(TransferFromError::TemporarilyUnavailable);
        }
        if args.from == self.config.minting_account {
            return Err(TransferFromError::GenericError {
                error_code: Self::MINTING_ACCOUNT,
                message: "the minting account cannot be debited; new tokens are minted".into(),
            });
        }
        let burn = args.to == self.config.minting_account;
        let fee = if burn { Amount::ZERO } else { self.config.fee };
        if args.fee.is_some_and(|given| given != fee) {
            return Err(TransferFromError::BadFee { expected_fee: fee });
        }
        if burn && args.amount < self.config.min_burn_amount {
            return Err(TransferFromError::BadBurn { min_burn_amount: self.config.min_burn_amount });
        }
        self.config.tx_window.check(args.created_at_time, now)?;
        Ok(fee)
    }

    async fn apply_transfer_from(
        &self,
        tx: &mut impl Book,
        caller: &str,
        spender: &Account,
        args: &TransferFromArgs,
        fee: Amount,
        now: u64,
    ) -> Result<Result<BlockIndex, TransferFromError>, StoreError> {
        let burn = args.to == self.config.minting_account;
        // ICRC-2: a spender moving its own account's tokens needs no allowance.
        let uses_allowance = args.from != *spender;
        let stored = if uses_allowance { Some(tx.lock_allowance(&args.from, spender).await?) } else { None };
        let mut accounts = vec![&args.from];
        if !burn && args.to != args.from {
            accounts.push(&args.to);
        }
        accounts.sort();
        let mut balances = Vec::with_capacity(accounts.len());
        for account in accounts {
            balances.push((account, tx.lock_balance(account).await?));
        }
        let dedup_key = args.dedup_key(caller);
        if let Some(key) = &dedup_key
            && let Some(duplicate_of) = tx.find_block(key).await?
        {
            return Ok(Err(TransferFromError::Duplicate { duplicate_of }));
        }

        let debit = args.amount.checked_add(fee);
        let remaining_allowance = match stored.map(|stored| stored.as_of(now)) {
            Some(active) => match debit.and_then(|debit| active.allowance.checked_sub(debit)) {
                Some(rest) => Some(Allowance { allowance: rest, ..active }.as_of(now)),
                None => return Ok(Err(TransferFromError::InsufficientAllowance { allowance: active.allowance })),
            },
            None => None,
        };
        let from_balance = balance_in(&balances, &args.from);
        let Some(from_rest) = debit.and_then(|debit| from_balance.checked_sub(debit)) else {
            return Ok(Err(TransferFromError::InsufficientFunds { balance: from_balance }));
        };
        set_balance_in(&mut balances, &args.from, from_rest);
        if !burn {
            let Some(credited) = balance_in(&balances, &args.to).checked_add(args.amount) else {
                return Ok(Err(TransferFromError::GenericError {
                    error_code: Self::BALANCE_OVERFLOW,
                    message: format!("the balance of {} cannot hold this amount", args.to),
                }));
            };
            set_balance_in(&mut balances, &args.to, credited);
        }

        if let Some(rest) = remaining_allowance {
            tx.set_allowance(&args.from, spender, rest).await?;
        }
        for (account, balance) in &balances {
            tx.set_balance(account, *balance).await?;
        }
        let block = NewBlock {
            kind: if burn { Kind::Burn } else { Kind::Xfer },
            caller: Some(caller),
            from: Some(&args.from),
            to: (!burn).then_some(&args.to),
            spender: Some(spender),
            amount: args.amount,
            fee,
            expected_allowance: None,
            expires_at: None,
            memo: args.memo.as_ref(),
            created_at_time: args.created_at_time,
            ledger_time: now,
            dedup_key,
        };
        Ok(Ok(tx.append(&block).await?))
    }

    async fn apply_mint(
        &self,
        tx: &mut impl Book,
        to: &Account,
        amount: Amount,
        now: u64,
    ) -> Result<Result<BlockIndex, LedgerError>, StoreError> {
        let balance = tx.lock_balance(to).await?;
        let Some(credited) = balance.checked_add(amount) else {
            return Ok(Err(LedgerError::Rejected(format!("the balance of {to} cannot hold this amount"))));
        };
        tx.set_balance(to, credited).await?;
        let block = NewBlock {
            kind: Kind::Mint,
            caller: None,
            from: None,
            to: Some(to),
            spender: None,
            amount,
            fee: Amount::ZERO,
            expected_allowance: None,
            expires_at: None,
            memo: None,
            created_at_time: None,
            ledger_time: now,
            dedup_key: None,
        };
        Ok(Ok(tx.append(&block).await?))
    }
}

fn balance_in(balances: &[(&Account, Amount)], account: &Account) -> Amount {
    balances.iter().find(|(held, _)| *held == account).map_or(Amount::ZERO, |(_, balance)| *balance)
}

fn set_balance_in(balances: &mut [(&Account, Amount)], account: &Account, balance: Amount) {
    if let Some(entry) = balances.iter_mut().find(|(held, _)| *held == account) {
        entry.1 = balance;
    }
}

#[async_trait]
impl Ledger for EmbeddedLedger {
    async fn fee(&self) -> Result<Amount, LedgerError> {
        Ok(self.config.fee)
    }

    async fn decimals(&self) -> Result<u8, LedgerError> {
        Ok(self.config.decimals)
    }

    async fn balance_of(&self, account: &Account) -> Result<Amount, LedgerError> {
        Ok(book::read_balance(&self.store, account).await?)
    }

    async fn approve(&self, caller: &str, args: ApproveArgs) -> Result<Result<BlockIndex, ApproveError>, LedgerError> {
        let now = self.clock.now_nanos();
        let from = Account { owner: caller.to_owned(), subaccount: args.from_subaccount };
        if let Err(refused) = self.precheck_approve(&from, &args, now) {
            return Ok(Err(refused));
        }
        Ok(in_transaction!(self, tx => self.apply_approve(&mut tx, caller, &from, &args, now)))
    }

    async fn allowance(&self, args: AllowanceArgs) -> Result<Allowance, LedgerError> {
        let now = self.clock.now_nanos();
        Ok(book::read_allowance(&self.store, &args.account, &args.spender).await?.as_of(now))
    }

    async fn transfer_from(
        &self,
        caller: &str,
        args: TransferFromArgs,
    ) -> Result<Result<BlockIndex, TransferFromError>, LedgerError> {
        let now = self.clock.now_nanos();
        let spender = Account { owner: caller.to_owned(), subaccount: args.spender_subaccount };
        let fee = match self.precheck_transfer_from(&args, now) {
            Ok(fee) => fee,
            Err(refused) => return Ok(Err(refused)),
        };
        Ok(in_transaction!(self, tx => self.apply_transfer_from(&mut tx, caller, &spender, &args, fee, now)))
    }

    async fn mint(&self, to: &Account, amount: Amount) -> Result<BlockIndex, LedgerError> {
        if *to == self.config.minting_account {
            return Err(LedgerError::Rejected("cannot mint to the minting account".into()));
        }
        let now = self.clock.now_nanos();
        in_transaction!(self, tx => self.apply_mint(&mut tx, to, amount, now))
    }
}
