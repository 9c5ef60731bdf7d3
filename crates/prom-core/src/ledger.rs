//! The token ledger as the rest of Prometheus sees it: the ICRC-1/ICRC-2 calls the gateway needs
//! (`approve`, `allowance`, `transfer_from`, `balance_of`, `fee`, `decimals`), their argument
//! records and their exact error variants, mirroring the candid types of the standard
//! (<https://github.com/dfinity/ICRC-1>, `standards/ICRC-1` and `standards/ICRC-2`).
//!
//! `EmbeddedLedger` (prom-store: tables in the same database) implements [`Ledger`]; it is the
//! default and the test double of record. `IcLedger` (crate `prom-icp`, cargo feature `icp`)
//! implements it on a real ICRC-2 ledger canister with ic-agent and candid.
//!
//! Differences from the candid types, all at the edge of what a canister can express:
//! - `nat` amounts are [`Amount`] (`u128`). Real ledgers use unbounded `Nat`; the `IcLedger` adapter
//!   refuses values beyond `u128` with [`LedgerError::Unrepresentable`] rather than truncating.
//! - An [`Account`]'s `owner` is an opaque text: a principal's textual form on a canister, an owner
//!   id such as `tenant:<uuid>` or `platform` in the embedded ledger.
//! - `GenericError::error_code` is a `u64`.
//!
//! The rules that need no storage live here too: memo length ([`Memo`]), which transactions are the
//! same for deduplication ([`DedupKey`]), the `created_at_time` window ([`TxWindow`]), when an
//! allowance is active ([`Allowance::as_of`]), and the ledger's notion of now ([`Clock`]).

mod clock;
mod dedup;

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use async_trait::async_trait;
use thiserror::Error;

use crate::money::Amount;
use crate::store::StoreError;

pub use clock::{Clock, ManualClock, SystemClock};
pub use dedup::{CreatedAtTimeError, DedupKey, TxWindow};

/// The longest memo a ledger must accept (ICRC-1: "at least 32 bytes"); the embedded ledger accepts
/// exactly this, like the reference ledgers' default `max_memo_length`.
pub const MAX_MEMO_LEN: usize = 32;

/// A 32-byte subaccount. All zeros is the owner's default account.
pub type Subaccount = [u8; 32];

/// The default subaccount: `None` and `Some(DEFAULT_SUBACCOUNT)` name the same account.
pub const DEFAULT_SUBACCOUNT: Subaccount = [0; 32];

/// An ICRC-1 account: an owner and an optional subaccount.
///
/// Equality, ordering and hashing use the effective subaccount, so `{ owner, None }` and
/// `{ owner, Some([0; 32]) }` are the same account, as the standard says.
#[derive(Clone, Debug)]
pub struct Account {
    pub owner: String,
    pub subaccount: Option<Subaccount>,
}

impl Account {
    /// The default account of `owner`.
    pub fn new(owner: impl Into<String>) -> Self {
        Self { owner: owner.into(), subaccount: None }
    }

    pub fn with_subaccount(owner: impl Into<String>, subaccount: Subaccount) -> Self {
        Self { owner: owner.into(), subaccount: Some(subaccount) }
    }

    pub fn effective_subaccount(&self) -> &Subaccount {
        self.subaccount.as_ref().unwrap_or(&DEFAULT_SUBACCOUNT)
    }

    /// The effective subaccount as 64 lowercase hex characters (how the embedded ledger stores it).
    pub fn subaccount_hex(&self) -> String {
        hex::encode(self.effective_subaccount())
    }
}

impl PartialEq for Account {
    fn eq(&self, other: &Self) -> bool {
        self.owner == other.owner && self.effective_subaccount() == other.effective_subaccount()
    }
}

impl Eq for Account {}

impl Hash for Account {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.owner.hash(state);
        self.effective_subaccount().hash(state);
    }
}

impl Ord for Account {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.owner, self.effective_subaccount()).cmp(&(&other.owner, other.effective_subaccount()))
    }
}

impl PartialOrd for Account {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `owner`, or `owner.<subaccount hex>` for a subaccount other than the default (for logs and
/// messages; not the ICRC-1 textual encoding, which needs a principal).
impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self.effective_subaccount() == DEFAULT_SUBACCOUNT {
            f.write_str(&self.owner)
        } else {
            write!(f, "{}.{}", self.owner, self.subaccount_hex())
        }
    }
}

/// A memo: bytes that mean nothing to the ledger except in deduplication. At most
/// [`MAX_MEMO_LEN`] bytes, checked here so that no ledger call can carry a longer one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Memo(Vec<u8>);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("a memo is at most {MAX_MEMO_LEN} bytes; this one has {0}")]
pub struct MemoTooLong(pub usize);

impl Memo {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, MemoTooLong> {
        let bytes = bytes.into();
        if bytes.len() > MAX_MEMO_LEN { Err(MemoTooLong(bytes.len())) } else { Ok(Self(bytes)) }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The index of a transaction (block) in the ledger's log: what a successful `approve`,
/// `transfer_from` or `mint` returns, and what `Duplicate` points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockIndex(pub u64);

impl fmt::Display for BlockIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `icrc2_approve`'s argument. Times are nanoseconds since the Unix epoch (UTC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApproveArgs {
    pub from_subaccount: Option<Subaccount>,
    pub spender: Account,
    /// The new allowance: it replaces the current one, it is not added to it.
    pub amount: Amount,
    /// Compare-and-swap: apply only if the current allowance is exactly this.
    pub expected_allowance: Option<Amount>,
    pub expires_at: Option<u64>,
    /// When set, must equal the ledger's fee.
    pub fee: Option<Amount>,
    pub memo: Option<Memo>,
    /// When set, makes the call deduplicated (see [`TxWindow`]).
    pub created_at_time: Option<u64>,
}

/// `icrc2_transfer_from`'s argument. The spender is `{ owner = caller, subaccount = spender_subaccount }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferFromArgs {
    pub spender_subaccount: Option<Subaccount>,
    pub from: Account,
    pub to: Account,
    pub amount: Amount,
    pub fee: Option<Amount>,
    pub memo: Option<Memo>,
    pub created_at_time: Option<u64>,
}

/// `icrc2_allowance`'s argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowanceArgs {
    pub account: Account,
    pub spender: Account,
}

/// `icrc2_allowance`'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowance {
    pub allowance: Amount,
    pub expires_at: Option<u64>,
}

impl Allowance {
    /// What the standard answers when there is no active approval.
    pub const NONE: Allowance = Allowance { allowance: Amount::ZERO, expires_at: None };

    /// This allowance as the ledger sees it at `now`: once expired (`expires_at <= now`) or spent to
    /// zero there is no active approval, so it is [`Allowance::NONE`].
    pub fn as_of(self, now: u64) -> Allowance {
        let expired = self.expires_at.is_some_and(|at| at <= now);
        if expired || self.allowance == Amount::ZERO { Allowance::NONE } else { self }
    }
}

/// `icrc2_approve`'s errors, exactly as the standard lists them.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ApproveError {
    #[error("the fee must be {expected_fee}")]
    BadFee { expected_fee: Amount },
    /// The caller cannot pay the approval fee.
    #[error("the approving account's balance ({balance}) cannot pay the approval fee")]
    InsufficientFunds { balance: Amount },
    /// `expected_allowance` was set and the current allowance differs; nothing was changed.
    #[error("the current allowance is {current_allowance}, not the expected one")]
    AllowanceChanged { current_allowance: Amount },
    /// `expires_at` is not after the ledger's time.
    #[error("the approval expires before the ledger could apply it (ledger time {ledger_time})")]
    Expired { ledger_time: u64 },
    #[error("created_at_time is older than the ledger's deduplication window")]
    TooOld,
    #[error("created_at_time is in the future (ledger time {ledger_time})")]
    CreatedInFuture { ledger_time: u64 },
    #[error("the same approval was already applied in block {duplicate_of}")]
    Duplicate { duplicate_of: BlockIndex },
    #[error("the ledger is temporarily unavailable; retry later")]
    TemporarilyUnavailable,
    #[error("ledger error {error_code}: {message}")]
    GenericError { error_code: u64, message: String },
}

/// `icrc2_transfer_from`'s errors, exactly as the standard lists them.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum TransferFromError {
    #[error("the fee must be {expected_fee}")]
    BadFee { expected_fee: Amount },
    /// A transfer to the minting account (a burn) of less than the ledger's minimum.
    #[error("a burn must be at least {min_burn_amount}")]
    BadBurn { min_burn_amount: Amount },
    /// The `from` account cannot cover the amount and the fee.
    #[error("the paying account's balance ({balance}) cannot cover the amount and the fee")]
    InsufficientFunds { balance: Amount },
    /// The spender's allowance cannot cover the amount and the fee.
    #[error("the allowance ({allowance}) cannot cover the amount and the fee")]
    InsufficientAllowance { allowance: Amount },
    #[error("created_at_time is older than the ledger's deduplication window")]
    TooOld,
    #[error("created_at_time is in the future (ledger time {ledger_time})")]
    CreatedInFuture { ledger_time: u64 },
    #[error("the same transfer was already applied in block {duplicate_of}")]
    Duplicate { duplicate_of: BlockIndex },
    #[error("the ledger is temporarily unavailable; retry later")]
    TemporarilyUnavailable,
    #[error("ledger error {error_code}: {message}")]
    GenericError { error_code: u64, message: String },
}

impl From<CreatedAtTimeError> for ApproveError {
    fn from(err: CreatedAtTimeError) -> Self {
        match err {
            CreatedAtTimeError::TooOld => Self::TooOld,
            CreatedAtTimeError::CreatedInFuture { ledger_time } => Self::CreatedInFuture { ledger_time },
        }
    }
}

impl From<CreatedAtTimeError> for TransferFromError {
    fn from(err: CreatedAtTimeError) -> Self {
        match err {
            CreatedAtTimeError::TooOld => Self::TooOld,
            CreatedAtTimeError::CreatedInFuture { ledger_time } => Self::CreatedInFuture { ledger_time },
        }
    }
}

/// A call that did not get an answer from the ledger: its storage or transport failed, or the
/// answer cannot be represented. The ledger's own refusals are [`ApproveError`] and
/// [`TransferFromError`], inside the `Ok`.
#[derive(Debug, Error)]
pub enum LedgerError {
    #[error("the ledger's storage failed")]
    Storage(#[from] StoreError),
    #[error("cannot reach the ledger")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A value beyond what this version holds (a `Nat` past `u128`, an unknown variant).
    #[error("the ledger answered a value this version cannot represent: {0}")]
    Unrepresentable(String),
    #[error("{0} is not supported by this ledger")]
    Unsupported(&'static str),
    /// A call the ledger refuses outside the standard's error variants (only `mint` has one).
    #[error("the ledger refused the call: {0}")]
    Rejected(String),
}

/// An ICRC-1/ICRC-2 ledger. The caller of `approve` and `transfer_from` is an owner (the principal
/// a canister would see as the caller): the approver for `approve`, the spender for `transfer_from`.
///
/// Every call answers `Err(LedgerError)` when it got no answer, and otherwise the ledger's answer,
/// which for the two updates is a block index or one of the standard's errors. An update that
/// answers an error changed nothing.
#[async_trait]
pub trait Ledger: Send + Sync + fmt::Debug {
    /// `icrc1_fee`: what each `approve` and `transfer_from` costs.
    async fn fee(&self) -> Result<Amount, LedgerError>;

    /// `icrc1_decimals`: amounts are in units of 10^-decimals tokens.
    async fn decimals(&self) -> Result<u8, LedgerError>;

    /// `icrc1_balance_of`.
    async fn balance_of(&self, account: &Account) -> Result<Amount, LedgerError>;

    /// `icrc2_approve` from `{ owner = caller, subaccount = args.from_subaccount }`.
    async fn approve(&self, caller: &str, args: ApproveArgs) -> Result<Result<BlockIndex, ApproveError>, LedgerError>;

    /// `icrc2_allowance`: `Allowance::NONE` when there is no active approval.
    async fn allowance(&self, args: AllowanceArgs) -> Result<Allowance, LedgerError>;

    /// `icrc2_transfer_from` by the spender `{ owner = caller, subaccount = args.spender_subaccount }`.
    async fn transfer_from(
        &self,
        caller: &str,
        args: TransferFromArgs,
    ) -> Result<Result<BlockIndex, TransferFromError>, LedgerError>;

    /// Creates `amount` new tokens on `to` (a transfer from the minting account). For the embedded
    /// ledger only: dev deployments, the demo and tests fund wallets with it. A real ledger mints
    /// through its own governance, so `IcLedger` answers [`LedgerError::Unsupported`].
    async fn mint(&self, to: &Account, amount: Amount) -> Result<BlockIndex, LedgerError>;
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn memos_are_at_most_32_bytes() {
        assert_eq!(Memo::new(vec![7; 32]).map(|memo| memo.as_bytes().len()), Ok(32));
        assert_eq!(Memo::new(Vec::new()).map(|memo| memo.as_bytes().len()), Ok(0));
        assert_eq!(Memo::new(vec![7; 33]), Err(MemoTooLong(33)));
        assert_eq!(MemoTooLong(33).to_string(), "a memo is at most 32 bytes; this one has 33");
    }

    #[test]
    fn the_default_subaccount_is_no_subaccount() {
        let plain = Account::new("tenant:a");
        let zeros = Account::with_subaccount("tenant:a", DEFAULT_SUBACCOUNT);
        let other = Account::with_subaccount("tenant:a", [1; 32]);
        assert_eq!(plain, zeros);
        assert_ne!(plain, other);
        assert_ne!(plain, Account::new("tenant:b"));
        assert_eq!(HashSet::from([plain.clone(), zeros.clone()]).len(), 1);
        assert_eq!(plain.cmp(&zeros), Ordering::Equal);
        assert!(plain < other);
        assert_eq!(zeros.to_string(), "tenant:a");
        assert_eq!(other.to_string(), format!("tenant:a.{}", "01".repeat(32)));
    }

    #[test]
    fn an_allowance_is_inactive_once_expired_or_spent() {
        let allowance = Allowance { allowance: Amount::new(5), expires_at: Some(100) };
        assert_eq!(allowance.as_of(99), allowance);
        assert_eq!(allowance.as_of(100), Allowance::NONE);
        assert_eq!(allowance.as_of(u64::MAX), Allowance::NONE);
        let forever = Allowance { allowance: Amount::new(5), expires_at: None };
        assert_eq!(forever.as_of(u64::MAX), forever);
        let spent = Allowance { allowance: Amount::ZERO, expires_at: Some(100) };
        assert_eq!(spent.as_of(0), Allowance::NONE);
    }

    #[test]
    fn time_errors_map_to_both_error_types() {
        let future = CreatedAtTimeError::CreatedInFuture { ledger_time: 9 };
        assert_eq!(ApproveError::from(future), ApproveError::CreatedInFuture { ledger_time: 9 });
        assert_eq!(TransferFromError::from(future), TransferFromError::CreatedInFuture { ledger_time: 9 });
        assert_eq!(ApproveError::from(CreatedAtTimeError::TooOld), ApproveError::TooOld);
        assert_eq!(TransferFromError::from(CreatedAtTimeError::TooOld), TransferFromError::TooOld);
    }

    #[test]
    fn errors_say_what_happened() {
        let err = TransferFromError::InsufficientAllowance { allowance: Amount::new(40) };
        assert_eq!(err.to_string(), "the allowance (40) cannot cover the amount and the fee");
        let err = ApproveError::Duplicate { duplicate_of: BlockIndex(12) };
        assert_eq!(err.to_string(), "the same approval was already applied in block 12");
    }
}
