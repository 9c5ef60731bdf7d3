//! Conversions between the wire records and prom-core's ledger types, both ways.
//!
//! Towards the wire nothing is lost: an [`Amount`] is a `u128`, which a `nat` always holds. The way
//! back is checked: a `nat` beyond `u128` (an amount) or beyond `u64` (a block index, an error
//! code) is refused with [`ConversionError`], never truncated; an owner's text must be a principal.

use candid::types::principal::PrincipalError;
use candid::{Nat, Principal};
use prom_core::ledger::{self as core, BlockIndex, LedgerError, Memo, MemoTooLong};
use prom_core::money::Amount;
use serde_bytes::ByteBuf;
use thiserror::Error;

use super::{
    Account, Allowance, AllowanceArgs, ApproveArgs, ApproveError, ApproveResult, TransferFromArgs, TransferFromError,
    TransferFromResult,
};

/// A value that one side holds and the other cannot.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConversionError {
    /// prom-core's owners are opaque text; a canister's are principals.
    #[error(
        "the account owner {owner:?} is not a principal's textual form (like \"aaaaa-aa\"): \
         accounts on a real ICRC ledger belong to principals, so the call was not sent"
    )]
    NotAPrincipal {
        owner: String,
        #[source]
        source: PrincipalError,
    },
    #[error("{field} = {} is beyond the largest amount this version holds (2^128 - 1)", value.0)]
    AmountBeyondU128 { field: &'static str, value: Nat },
    #[error("{field} = {} is beyond the largest value this version holds (2^64 - 1)", value.0)]
    BeyondU64 { field: &'static str, value: Nat },
    #[error(transparent)]
    MemoTooLong(#[from] MemoTooLong),
}

impl From<ConversionError> for LedgerError {
    /// An owner that is not a principal is refused before the call; anything else is a value the
    /// ledger sent that this version cannot hold.
    fn from(err: ConversionError) -> Self {
        match err {
            ConversionError::NotAPrincipal { .. } => LedgerError::Rejected(err.to_string()),
            _ => LedgerError::Unrepresentable(err.to_string()),
        }
    }
}

/// `owner` parsed as a principal's textual form.
pub(crate) fn principal(owner: &str) -> Result<Principal, ConversionError> {
    Principal::from_text(owner).map_err(|source| ConversionError::NotAPrincipal { owner: owner.to_owned(), source })
}

fn nat(amount: Amount) -> Nat {
    Nat::from(amount.units())
}

/// A `nat` as an [`Amount`], refused past `u128`.
pub(crate) fn amount(field: &'static str, value: Nat) -> Result<Amount, ConversionError> {
    match u128::try_from(&value.0) {
        Ok(units) => Ok(Amount::new(units)),
        Err(_) => Err(ConversionError::AmountBeyondU128 { field, value }),
    }
}

fn optional_amount(field: &'static str, value: Option<Nat>) -> Result<Option<Amount>, ConversionError> {
    value.map(|value| amount(field, value)).transpose()
}

fn u64_of(field: &'static str, value: Nat) -> Result<u64, ConversionError> {
    match u64::try_from(&value.0) {
        Ok(value) => Ok(value),
        Err(_) => Err(ConversionError::BeyondU64 { field, value }),
    }
}

/// A block index (`nat` on the wire) as a [`BlockIndex`], refused past `u64`.
pub(crate) fn block_index(field: &'static str, value: Nat) -> Result<BlockIndex, ConversionError> {
    u64_of(field, value).map(BlockIndex)
}

fn memo_bytes(memo: Option<Memo>) -> Option<ByteBuf> {
    memo.map(|memo| ByteBuf::from(memo.as_bytes().to_vec()))
}

fn memo(bytes: Option<ByteBuf>) -> Result<Option<Memo>, ConversionError> {
    Ok(bytes.map(|bytes| Memo::new(bytes.into_vec())).transpose()?)
}

impl TryFrom<&core::Account> for Account {
    type Error = ConversionError;

    fn try_from(account: &core::Account) -> Result<Self, Self::Error> {
        Ok(Account { owner: principal(&account.owner)?, subaccount: account.subaccount })
    }
}

impl From<Account> for core::Account {
    fn from(account: Account) -> Self {
        core::Account { owner: account.owner.to_text(), subaccount: account.subaccount }
    }
}

impl TryFrom<core::ApproveArgs> for ApproveArgs {
    type Error = ConversionError;

    fn try_from(args: core::ApproveArgs) -> Result<Self, Self::Error> {
        Ok(ApproveArgs {
            from_subaccount: args.from_subaccount,
            spender: Account::try_from(&args.spender)?,
            amount: nat(args.amount),
            expected_allowance: args.expected_allowance.map(nat),
            expires_at: args.expires_at,
            fee: args.fee.map(nat),
            memo: memo_bytes(args.memo),
            created_at_time: args.created_at_time,
        })
    }
}

impl TryFrom<ApproveArgs> for core::ApproveArgs {
    type Error = ConversionError;

    fn try_from(args: ApproveArgs) -> Result<Self, Self::Error> {
        Ok(core::ApproveArgs {
            from_subaccount: args.from_subaccount,
            spender: args.spender.into(),
            amount: amount("amount", args.amount)?,
            expected_allowance: optional_amount("expected_allowance", args.expected_allowance)?,
            expires_at: args.expires_at,
            fee: optional_amount("fee", args.fee)?,
            memo: memo(args.memo)?,
            created_at_time: args.created_at_time,
        })
    }
}

impl TryFrom<core::TransferFromArgs> for TransferFromArgs {
    type Error = ConversionError;

    fn try_from(args: core::TransferFromArgs) -> Result<Self, Self::Error> {
        Ok(TransferFromArgs {
            spender_subaccount: args.spender_subaccount,
            from: Account::try_from(&args.from)?,
            to: Account::try_from(&args.to)?,
            amount: nat(args.amount),
            fee: args.fee.map(nat),
            memo: memo_bytes(args.memo),
            created_at_time: args.created_at_time,
        })
    }
}

impl TryFrom<TransferFromArgs> for core::TransferFromArgs {
    type Error = ConversionError;

    fn try_from(args: TransferFromArgs) -> Result<Self, Self::Error> {
        Ok(core::TransferFromArgs {
            spender_subaccount: args.spender_subaccount,
            from: args.from.into(),
            to: args.to.into(),
            amount: amount("amount", args.amount)?,
            fee: optional_amount("fee", args.fee)?,
            memo: memo(args.memo)?,
            created_at_time: args.created_at_time,
        })
    }
}

impl TryFrom<&core::AllowanceArgs> for AllowanceArgs {
    type Error = ConversionError;

    fn try_from(args: &core::AllowanceArgs) -> Result<Self, Self::Error> {
        Ok(AllowanceArgs { account: Account::try_from(&args.account)?, spender: Account::try_from(&args.spender)? })
    }
}

impl From<AllowanceArgs> for core::AllowanceArgs {
    fn from(args: AllowanceArgs) -> Self {
        core::AllowanceArgs { account: args.account.into(), spender: args.spender.into() }
    }
}

impl From<core::Allowance> for Allowance {
    fn from(allowance: core::Allowance) -> Self {
        Allowance { allowance: nat(allowance.allowance), expires_at: allowance.expires_at }
    }
}

impl TryFrom<Allowance> for core::Allowance {
    type Error = ConversionError;

    fn try_from(allowance: Allowance) -> Result<Self, Self::Error> {
        Ok(core::Allowance { allowance: amount("allowance", allowance.allowance)?, expires_at: allowance.expires_at })
    }
}

impl From<core::ApproveError> for ApproveError {
    fn from(err: core::ApproveError) -> Self {
        use core::ApproveError as E;
        match err {
            E::BadFee { expected_fee } => Self::BadFee { expected_fee: nat(expected_fee) },
            E::InsufficientFunds { balance } => Self::InsufficientFunds { balance: nat(balance) },
            E::AllowanceChanged { current_allowance } => {
                Self::AllowanceChanged { current_allowance: nat(current_allowance) }
            }
            E::Expired { ledger_time } => Self::Expired { ledger_time },
            E::TooOld => Self::TooOld,
            E::CreatedInFuture { ledger_time } => Self::CreatedInFuture { ledger_time },
            E::Duplicate { duplicate_of } => Self::Duplicate { duplicate_of: Nat::from(duplicate_of.0) },
            E::TemporarilyUnavailable => Self::TemporarilyUnavailable,
            E::GenericError { error_code, message } => {
                Self::GenericError { error_code: Nat::from(error_code), message }
            }
        }
    }
}

impl TryFrom<ApproveError> for core::ApproveError {
    type Error = ConversionError;

    fn try_from(err: ApproveError) -> Result<Self, Self::Error> {
        use ApproveError as E;
        Ok(match err {
            E::BadFee { expected_fee } => Self::BadFee { expected_fee: amount("expected_fee", expected_fee)? },
            E::InsufficientFunds { balance } => Self::InsufficientFunds { balance: amount("balance", balance)? },
            E::AllowanceChanged { current_allowance } => {
                Self::AllowanceChanged { current_allowance: amount("current_allowance", current_allowance)? }
            }
            E::Expired { ledger_time } => Self::Expired { ledger_time },
            E::TooOld => Self::TooOld,
            E::CreatedInFuture { ledger_time } => Self::CreatedInFuture { ledger_time },
            E::Duplicate { duplicate_of } => {
                Self::Duplicate { duplicate_of: block_index("duplicate_of", duplicate_of)? }
            }
            E::TemporarilyUnavailable => Self::TemporarilyUnavailable,
            E::GenericError { error_code, message } => {
                Self::GenericError { error_code: u64_of("error_code", error_code)?, message }
            }
        })
    }
}

impl From<core::TransferFromError> for TransferFromError {
    fn from(err: core::TransferFromError) -> Self {
        use core::TransferFromError as E;
        match err {
            E::BadFee { expected_fee } => Self::BadFee { expected_fee: nat(expected_fee) },
            E::BadBurn { min_burn_amount } => Self::BadBurn { min_burn_amount: nat(min_burn_amount) },
            E::InsufficientFunds { balance } => Self::InsufficientFunds { balance: nat(balance) },
            E::InsufficientAllowance { allowance } => Self::InsufficientAllowance { allowance: nat(allowance) },
            E::TooOld => Self::TooOld,
            E::CreatedInFuture { ledger_time } => Self::CreatedInFuture { ledger_time },
            E::Duplicate { duplicate_of } => Self::Duplicate { duplicate_of: Nat::from(duplicate_of.0) },
            E::TemporarilyUnavailable => Self::TemporarilyUnavailable,
            E::GenericError { error_code, message } => {
                Self::GenericError { error_code: Nat::from(error_code), message }
            }
        }
    }
}

impl TryFrom<TransferFromError> for core::TransferFromError {
    type Error = ConversionError;

    fn try_from(err: TransferFromError) -> Result<Self, Self::Error> {
        use TransferFromError as E;
        Ok(match err {
            E::BadFee { expected_fee } => Self::BadFee { expected_fee: amount("expected_fee", expected_fee)? },
            E::BadBurn { min_burn_amount } => {
                Self::BadBurn { min_burn_amount: amount("min_burn_amount", min_burn_amount)? }
            }
            E::InsufficientFunds { balance } => Self::InsufficientFunds { balance: amount("balance", balance)? },
            E::InsufficientAllowance { allowance } => {
                Self::InsufficientAllowance { allowance: amount("allowance", allowance)? }
            }
            E::TooOld => Self::TooOld,
            E::CreatedInFuture { ledger_time } => Self::CreatedInFuture { ledger_time },
            E::Duplicate { duplicate_of } => {
                Self::Duplicate { duplicate_of: block_index("duplicate_of", duplicate_of)? }
            }
            E::TemporarilyUnavailable => Self::TemporarilyUnavailable,
            E::GenericError { error_code, message } => {
                Self::GenericError { error_code: u64_of("error_code", error_code)?, message }
            }
        })
    }
}

impl From<Result<BlockIndex, core::ApproveError>> for ApproveResult {
    fn from(result: Result<BlockIndex, core::ApproveError>) -> Self {
        match result {
            Ok(block) => Self::Ok(Nat::from(block.0)),
            Err(err) => Self::Err(err.into()),
        }
    }
}

impl TryFrom<ApproveResult> for Result<BlockIndex, core::ApproveError> {
    type Error = ConversionError;

    fn try_from(result: ApproveResult) -> Result<Self, Self::Error> {
        match result {
            ApproveResult::Ok(block) => Ok(Ok(block_index("block index", block)?)),
            ApproveResult::Err(err) => Ok(Err(err.try_into()?)),
        }
    }
}

impl From<Result<BlockIndex, core::TransferFromError>> for TransferFromResult {
    fn from(result: Result<BlockIndex, core::TransferFromError>) -> Self {
        match result {
            Ok(block) => Self::Ok(Nat::from(block.0)),
            Err(err) => Self::Err(err.into()),
        }
    }
}

impl TryFrom<TransferFromResult> for Result<BlockIndex, core::TransferFromError> {
    type Error = ConversionError;

    fn try_from(result: TransferFromResult) -> Result<Self, Self::Error> {
        match result {
            TransferFromResult::Ok(block) => Ok(Ok(block_index("block index", block)?)),
            TransferFromResult::Err(err) => Ok(Err(err.try_into()?)),
        }
    }
}
