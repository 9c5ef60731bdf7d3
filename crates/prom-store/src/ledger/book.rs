//! The embedded ledger's tables (`migrations/*/0004_ledger.sql`): the reads and writes one ledger
//! call makes inside its transaction ([`Book`]), and the two reads made outside one.
//!
//! Rows are locked by an upsert that changes nothing (`INSERT … ON CONFLICT DO UPDATE SET x = x
//! RETURNING x`): one SQL text for both databases that creates a missing row at zero and returns
//! the row's latest committed value while holding its write lock until the transaction ends. On
//! PostgreSQL that is a row lock (a concurrent upsert of the same row waits, then sees the new
//! value); on SQLite the single-connection write pool already runs one write transaction at a time.
//! Amounts are then compared and computed in Rust and written back with a plain `UPDATE`.

use async_trait::async_trait;
use prom_core::ledger::{Account, Allowance, BlockIndex, DedupKey, Memo};
use prom_core::money::Amount;
use prom_core::store::{StoreError, StoreResult};

use crate::{SqlStore, db_err, with_read};

const LOCK_BALANCE: &str = "INSERT INTO ledger_balances (owner, subaccount, balance) VALUES ($1, $2, '0') \
     ON CONFLICT (owner, subaccount) DO UPDATE SET balance = ledger_balances.balance RETURNING balance";

const SET_BALANCE: &str = "UPDATE ledger_balances SET balance = $3 WHERE owner = $1 AND subaccount = $2";

const READ_BALANCE: &str = "SELECT balance FROM ledger_balances WHERE owner = $1 AND subaccount = $2";

const LOCK_ALLOWANCE: &str = "INSERT INTO ledger_allowances \
     (owner, subaccount, spender_owner, spender_subaccount, allowance, expires_at) VALUES ($1, $2, $3, $4, '0', NULL) \
     ON CONFLICT (owner, subaccount, spender_owner, spender_subaccount) \
     DO UPDATE SET allowance = ledger_allowances.allowance RETURNING allowance, expires_at";

const SET_ALLOWANCE: &str = "UPDATE ledger_allowances SET allowance = $5, expires_at = $6 \
     WHERE owner = $1 AND subaccount = $2 AND spender_owner = $3 AND spender_subaccount = $4";

const READ_ALLOWANCE: &str = "SELECT allowance, expires_at FROM ledger_allowances \
     WHERE owner = $1 AND subaccount = $2 AND spender_owner = $3 AND spender_subaccount = $4";

const FIND_BLOCK: &str = "SELECT block FROM ledger_transactions WHERE dedup_key = $1";

const APPEND_BLOCK: &str = "INSERT INTO ledger_transactions \
     (kind, caller, from_owner, from_subaccount, to_owner, to_subaccount, spender_owner, spender_subaccount, \
      amount, fee, expected_allowance, expires_at, memo, created_at_time, ledger_time, dedup_key) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING block";

/// A block's operation, named as in ICRC-3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Mint,
    Burn,
    Xfer,
    Approve,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Mint => "mint",
            Self::Burn => "burn",
            Self::Xfer => "xfer",
            Self::Approve => "approve",
        }
    }
}

/// One successful call, as its row in the log.
#[derive(Debug)]
pub(super) struct NewBlock<'a> {
    pub kind: Kind,
    /// Who called (the approver, the spender); `None` for a mint.
    pub caller: Option<&'a str>,
    pub from: Option<&'a Account>,
    pub to: Option<&'a Account>,
    pub spender: Option<&'a Account>,
    pub amount: Amount,
    /// The fee charged (and burned).
    pub fee: Amount,
    pub expected_allowance: Option<Amount>,
    pub expires_at: Option<u64>,
    pub memo: Option<&'a Memo>,
    pub created_at_time: Option<u64>,
    pub ledger_time: u64,
    pub dedup_key: Option<DedupKey>,
}

/// What a ledger call does inside its database transaction.
///
/// Lock order, which keeps PostgreSQL free of deadlocks: at most one allowance row, then balance
/// rows in [`Account`] order. Callers must follow it.
#[async_trait]
pub(super) trait Book: Send {
    /// Locks `account`'s balance (at zero if it has none) until the transaction ends; returns it.
    async fn lock_balance(&mut self, account: &Account) -> StoreResult<Amount>;
    async fn set_balance(&mut self, account: &Account, balance: Amount) -> StoreResult<()>;
    /// Locks the `(account, spender)` allowance until the transaction ends; returns it as stored
    /// (expired or not).
    async fn lock_allowance(&mut self, account: &Account, spender: &Account) -> StoreResult<Allowance>;
    async fn set_allowance(&mut self, account: &Account, spender: &Account, allowance: Allowance) -> StoreResult<()>;
    /// The block a deduplicated call already produced, if any.
    async fn find_block(&mut self, key: &DedupKey) -> StoreResult<Option<BlockIndex>>;
    async fn append(&mut self, block: &NewBlock<'_>) -> StoreResult<BlockIndex>;
}

/// Implements [`Book`] on one backend's transaction; the SQL is the same for both.
macro_rules! impl_book {
    ($db:ty) => {
        #[async_trait]
        impl<'c> Book for sqlx::Transaction<'c, $db> {
            async fn lock_balance(&mut self, account: &Account) -> StoreResult<Amount> {
                let (balance,): (String,) = sqlx::query_as(LOCK_BALANCE)
                    .bind(&account.owner)
                    .bind(account.subaccount_hex())
                    .fetch_one(&mut **self)
                    .await
                    .map_err(db_err)?;
                parse_amount(&balance, || format!("the balance of {account}"))
            }

            async fn set_balance(&mut self, account: &Account, balance: Amount) -> StoreResult<()> {
                sqlx::query(SET_BALANCE)
                    .bind(&account.owner)
                    .bind(account.subaccount_hex())
                    .bind(balance.to_string())
                    .execute(&mut **self)
                    .await
                    .map_err(db_err)?;
                Ok(())
            }

            async fn lock_allowance(&mut self, account: &Account, spender: &Account) -> StoreResult<Allowance> {
                let row: (String, Option<String>) = sqlx::query_as(LOCK_ALLOWANCE)
                    .bind(&account.owner)
                    .bind(account.subaccount_hex())
                    .bind(&spender.owner)
                    .bind(spender.subaccount_hex())
                    .fetch_one(&mut **self)
                    .await
                    .map_err(db_err)?;
                parse_allowance(row, account, spender)
            }

            async fn set_allowance(
                &mut self,
                account: &Account,
                spender: &Account,
                allowance: Allowance,
            ) -> StoreResult<()> {
                sqlx::query(SET_ALLOWANCE)
                    .bind(&account.owner)
                    .bind(account.subaccount_hex())
                    .bind(&spender.owner)
                    .bind(spender.subaccount_hex())
                    .bind(allowance.allowance.to_string())
                    .bind(allowance.expires_at.map(|at| at.to_string()))
                    .execute(&mut **self)
                    .await
                    .map_err(db_err)?;
                Ok(())
            }

            async fn find_block(&mut self, key: &DedupKey) -> StoreResult<Option<BlockIndex>> {
                let block: Option<(i64,)> = sqlx::query_as(FIND_BLOCK)
                    .bind(&key.as_bytes()[..])
                    .fetch_optional(&mut **self)
                    .await
                    .map_err(db_err)?;
                block.map(|(block,)| block_index(block)).transpose()
            }

            async fn append(&mut self, block: &NewBlock<'_>) -> StoreResult<BlockIndex> {
                let (index,): (i64,) = sqlx::query_as(APPEND_BLOCK)
                    .bind(block.kind.as_str())
                    .bind(block.caller)
                    .bind(block.from.map(|account| account.owner.as_str()))
                    .bind(block.from.map(Account::subaccount_hex))
                    .bind(block.to.map(|account| account.owner.as_str()))
                    .bind(block.to.map(Account::subaccount_hex))
                    .bind(block.spender.map(|account| account.owner.as_str()))
                    .bind(block.spender.map(Account::subaccount_hex))
                    .bind(block.amount.to_string())
                    .bind(block.fee.to_string())
                    .bind(block.expected_allowance.map(|amount| amount.to_string()))
                    .bind(block.expires_at.map(|at| at.to_string()))
                    .bind(block.memo.map(Memo::as_bytes))
                    .bind(block.created_at_time.map(nanos_column))
                    .bind(nanos_column(block.ledger_time))
                    .bind(block.dedup_key.as_ref().map(|key| &key.as_bytes()[..]))
                    .fetch_one(&mut **self)
                    .await
                    .map_err(db_err)?;
                block_index(index)
            }
        }
    };
}

impl_book!(sqlx::Sqlite);
impl_book!(sqlx::Postgres);

/// The balance of `account` as last committed (zero when it never had one).
pub(super) async fn read_balance(store: &SqlStore, account: &Account) -> StoreResult<Amount> {
    let row: Option<(String,)> = with_read!(store, pool => {
        sqlx::query_as(READ_BALANCE)
            .bind(&account.owner)
            .bind(account.subaccount_hex())
            .fetch_optional(pool)
            .await
            .map_err(db_err)?
    });
    match row {
        Some((balance,)) => parse_amount(&balance, || format!("the balance of {account}")),
        None => Ok(Amount::ZERO),
    }
}

/// The `(account, spender)` allowance as stored (expired or not; [`Allowance::NONE`] when absent).
pub(super) async fn read_allowance(store: &SqlStore, account: &Account, spender: &Account) -> StoreResult<Allowance> {
    let row: Option<(String, Option<String>)> = with_read!(store, pool => {
        sqlx::query_as(READ_ALLOWANCE)
            .bind(&account.owner)
            .bind(account.subaccount_hex())
            .bind(&spender.owner)
            .bind(spender.subaccount_hex())
            .fetch_optional(pool)
            .await
            .map_err(db_err)?
    });
    row.map_or(Ok(Allowance::NONE), |row| parse_allowance(row, account, spender))
}

fn parse_amount(raw: &str, what: impl FnOnce() -> String) -> StoreResult<Amount> {
    raw.parse().map_err(|_| StoreError::Corrupt(format!("{} is {raw:?}, not an amount", what())))
}

fn parse_allowance(
    (allowance, expires_at): (String, Option<String>),
    account: &Account,
    spender: &Account,
) -> StoreResult<Allowance> {
    let what = || format!("the allowance of {spender} on {account}");
    let expires_at = expires_at
        .map(|raw| raw.parse::<u64>().map_err(|_| StoreError::Corrupt(format!("{} expires at {raw:?}", what()))))
        .transpose()?;
    Ok(Allowance { allowance: parse_amount(&allowance, what)?, expires_at })
}

fn block_index(raw: i64) -> StoreResult<BlockIndex> {
    u64::try_from(raw).map(BlockIndex).map_err(|_| StoreError::Corrupt(format!("ledger block index {raw}")))
}

/// A time the ledger accepted, as a BIGINT. Only the ledger clock past the year 2262 would not fit;
/// it is clamped rather than refused, as these columns are a record, never compared.
fn nanos_column(nanos: u64) -> i64 {
    i64::try_from(nanos).unwrap_or(i64::MAX)
}
