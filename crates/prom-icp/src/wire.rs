//! The candid records of the ICRC-1/ICRC-2 calls `IcLedger` makes, exactly as the standard's
//! `.did` files declare them (<https://github.com/dfinity/ICRC-1>, `standards/ICRC-1/ICRC-1.did`
//! and `standards/ICRC-2/ICRC-2.did`), and nothing else.
//!
//! These are the types on the wire: `nat` is [`Nat`] (unbounded), `blob` is bytes, `owner` is a
//! [`Principal`]. The conversions to and from prom-core's types (in `wire/convert.rs`) are where
//! values are checked: a `nat` past `u128` or a block index past `u64` is refused, never
//! truncated. The records are ours rather than `icrc-ledger-types`' so that the default build
//! needs no part of the ledger team's crate; the `icp-conformance` tests prove the two encode alike.
//!
//! Field names and variant names are the candid names and must never change: candid matches
//! record fields and variants by the hash of their name.

mod convert;

use candid::{CandidType, Deserialize, Nat, Principal};
use serde_bytes::ByteBuf;

pub use convert::ConversionError;
pub(crate) use convert::{amount, principal};

/// `Subaccount = blob` (32 bytes).
pub type Subaccount = [u8; 32];

/// `Account = record { owner : principal; subaccount : opt Subaccount }`.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub owner: Principal,
    pub subaccount: Option<Subaccount>,
}

/// `icrc2_approve`'s argument.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ApproveArgs {
    pub from_subaccount: Option<Subaccount>,
    pub spender: Account,
    pub amount: Nat,
    pub expected_allowance: Option<Nat>,
    pub expires_at: Option<u64>,
    pub fee: Option<Nat>,
    pub memo: Option<ByteBuf>,
    pub created_at_time: Option<u64>,
}

/// `icrc2_approve`'s error variant.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ApproveError {
    BadFee { expected_fee: Nat },
    InsufficientFunds { balance: Nat },
    AllowanceChanged { current_allowance: Nat },
    Expired { ledger_time: u64 },
    TooOld,
    CreatedInFuture { ledger_time: u64 },
    Duplicate { duplicate_of: Nat },
    TemporarilyUnavailable,
    GenericError { error_code: Nat, message: String },
}

/// `icrc2_approve`'s result: `variant { Ok : nat; Err : ApproveError }`, `Ok` being the block index.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ApproveResult {
    Ok(Nat),
    Err(ApproveError),
}

/// `icrc2_transfer_from`'s argument.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TransferFromArgs {
    pub spender_subaccount: Option<Subaccount>,
    pub from: Account,
    pub to: Account,
    pub amount: Nat,
    pub fee: Option<Nat>,
    pub memo: Option<ByteBuf>,
    pub created_at_time: Option<u64>,
}

/// `icrc2_transfer_from`'s error variant.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum TransferFromError {
    BadFee { expected_fee: Nat },
    BadBurn { min_burn_amount: Nat },
    InsufficientFunds { balance: Nat },
    InsufficientAllowance { allowance: Nat },
    TooOld,
    CreatedInFuture { ledger_time: u64 },
    Duplicate { duplicate_of: Nat },
    TemporarilyUnavailable,
    GenericError { error_code: Nat, message: String },
}

/// `icrc2_transfer_from`'s result: `variant { Ok : nat; Err : TransferFromError }`.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum TransferFromResult {
    Ok(Nat),
    Err(TransferFromError),
}

/// `icrc2_allowance`'s argument.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AllowanceArgs {
    pub account: Account,
    pub spender: Account,
}

/// `icrc2_allowance`'s answer.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Allowance {
    pub allowance: Nat,
    pub expires_at: Option<u64>,
}
