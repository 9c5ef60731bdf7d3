//! Our candid records against prom-core's ledger types: every record and every error variant
//! converts both ways to exactly the value it should (checked against an explicit table, so two
//! swapped variants cannot pass as a round trip), and values one side cannot hold are refused.
//! With `icp-conformance`, `conformance` checks the same records against icrc-ledger-types.

#![cfg(feature = "icp")]

#[cfg(feature = "icp-conformance")]
mod conformance;

use std::collections::BTreeSet;

use candid::{Decode, Encode, Nat, Principal};
use prom_core::ledger::{self as core, BlockIndex, LedgerError, Memo};
use prom_core::money::Amount;
use prom_icp::wire::{self, ConversionError};
use serde_bytes::ByteBuf;

/// 2^128: the smallest `nat` that no `Amount` holds.
fn beyond_u128() -> Nat {
    Nat::from(u128::MAX) + 1u8
}

/// A self-authenticating principal (29 bytes, as a user's would be) and a canister-like one.
fn alice() -> Principal {
    Principal::from_slice(&[0xa1; 29])
}

fn bob() -> Principal {
    Principal::from_slice(&[0, 0, 0, 0, 0, 0xb0, 0, 1, 1, 1])
}

const SUB_A: [u8; 32] = [7; 32];
const SUB_B: [u8; 32] = {
    let mut sub = [0; 32];
    sub[31] = 1;
    sub
};
const NOW: u64 = 1_800_000_000_000_000_000;

fn memo() -> Memo {
    Memo::new(*b"0123456789abcdef0123456789abcdef").unwrap()
}

/// Every field set, amounts at the edge of u128.
fn full_approve() -> (core::ApproveArgs, wire::ApproveArgs) {
    let core = core::ApproveArgs {
        from_subaccount: Some(SUB_A),
        spender: core::Account::with_subaccount(bob().to_text(), SUB_B),
        amount: Amount::new(u128::MAX),
        expected_allowance: Some(Amount::new(17)),
        expires_at: Some(NOW + 5),
        fee: Some(Amount::new(10_000)),
        memo: Some(memo()),
        created_at_time: Some(NOW),
    };
    let wire = wire::ApproveArgs {
        from_subaccount: Some(SUB_A),
        spender: wire::Account { owner: bob(), subaccount: Some(SUB_B) },
        amount: Nat::from(u128::MAX),
        expected_allowance: Some(Nat::from(17u8)),
        expires_at: Some(NOW + 5),
        fee: Some(Nat::from(10_000u32)),
        memo: Some(ByteBuf::from(memo().as_bytes().to_vec())),
        created_at_time: Some(NOW),
    };
    (core, wire)
}

/// Every optional field unset.
fn bare_approve() -> (core::ApproveArgs, wire::ApproveArgs) {
    let core = core::ApproveArgs {
        from_subaccount: None,
        spender: core::Account::new(bob().to_text()),
        amount: Amount::ZERO,
        expected_allowance: None,
        expires_at: None,
        fee: None,
        memo: None,
        created_at_time: None,
    };
    let wire = wire::ApproveArgs {
        from_subaccount: None,
        spender: wire::Account { owner: bob(), subaccount: None },
        amount: Nat::from(0u8),
        expected_allowance: None,
        expires_at: None,
        fee: None,
        memo: None,
        created_at_time: None,
    };
    (core, wire)
}

fn full_transfer_from() -> (core::TransferFromArgs, wire::TransferFromArgs) {
    let core = core::TransferFromArgs {
        spender_subaccount: Some(SUB_B),
        from: core::Account::with_subaccount(alice().to_text(), SUB_A),
        to: core::Account::new(bob().to_text()),
        amount: Amount::new(250),
        fee: Some(Amount::ZERO),
        memo: Some(Memo::new(Vec::new()).unwrap()),
        created_at_time: Some(NOW),
    };
    let wire = wire::TransferFromArgs {
        spender_subaccount: Some(SUB_B),
        from: wire::Account { owner: alice(), subaccount: Some(SUB_A) },
        to: wire::Account { owner: bob(), subaccount: None },
        amount: Nat::from(250u8),
        fee: Some(Nat::from(0u8)),
        memo: Some(ByteBuf::new()),
        created_at_time: Some(NOW),
    };
    (core, wire)
}

fn bare_transfer_from() -> (core::TransferFromArgs, wire::TransferFromArgs) {
    let core = core::TransferFromArgs {
        spender_subaccount: None,
        from: core::Account::new(alice().to_text()),
        to: core::Account::with_subaccount(bob().to_text(), [0; 32]),
        amount: Amount::new(1),
        fee: None,
        memo: None,
        created_at_time: None,
    };
    let wire = wire::TransferFromArgs {
        spender_subaccount: None,
        from: wire::Account { owner: alice(), subaccount: None },
        to: wire::Account { owner: bob(), subaccount: Some([0; 32]) },
        amount: Nat::from(1u8),
        fee: None,
        memo: None,
        created_at_time: None,
    };
    (core, wire)
}

fn allowance_args() -> (core::AllowanceArgs, wire::AllowanceArgs) {
    let core = core::AllowanceArgs {
        account: core::Account::new(alice().to_text()),
        spender: core::Account::with_subaccount(bob().to_text(), SUB_B),
    };
    let wire = wire::AllowanceArgs {
        account: wire::Account { owner: alice(), subaccount: None },
        spender: wire::Account { owner: bob(), subaccount: Some(SUB_B) },
    };
    (core, wire)
}

fn allowances() -> Vec<(core::Allowance, wire::Allowance)> {
    vec![
        (core::Allowance::NONE, wire::Allowance { allowance: Nat::from(0u8), expires_at: None }),
        (
            core::Allowance { allowance: Amount::new(u128::MAX), expires_at: Some(u64::MAX) },
            wire::Allowance { allowance: Nat::from(u128::MAX), expires_at: Some(u64::MAX) },
        ),
    ]
}

/// Every `icrc2_approve` error, with a value in each field that would show a mix-up.
fn approve_errors() -> Vec<(core::ApproveError, wire::ApproveError)> {
    use core::ApproveError as C;
    use wire::ApproveError as W;
    vec![
        (C::BadFee { expected_fee: Amount::new(10_000) }, W::BadFee { expected_fee: Nat::from(10_000u32) }),
        (
            C::InsufficientFunds { balance: Amount::new(u128::MAX) },
            W::InsufficientFunds { balance: Nat::from(u128::MAX) },
        ),
        (
            C::AllowanceChanged { current_allowance: Amount::new(3) },
            W::AllowanceChanged { current_allowance: Nat::from(3u8) },
        ),
        (C::Expired { ledger_time: NOW }, W::Expired { ledger_time: NOW }),
        (C::TooOld, W::TooOld),
        (C::CreatedInFuture { ledger_time: NOW + 1 }, W::CreatedInFuture { ledger_time: NOW + 1 }),
        (C::Duplicate { duplicate_of: BlockIndex(u64::MAX) }, W::Duplicate { duplicate_of: Nat::from(u64::MAX) }),
        (C::TemporarilyUnavailable, W::TemporarilyUnavailable),
        (
            C::GenericError { error_code: u64::MAX, message: "self approval".into() },
            W::GenericError { error_code: Nat::from(u64::MAX), message: "self approval".into() },
        ),
    ]
}

fn transfer_from_errors() -> Vec<(core::TransferFromError, wire::TransferFromError)> {
    use core::TransferFromError as C;
    use wire::TransferFromError as W;
    vec![
        (C::BadFee { expected_fee: Amount::new(1) }, W::BadFee { expected_fee: Nat::from(1u8) }),
        (C::BadBurn { min_burn_amount: Amount::new(2) }, W::BadBurn { min_burn_amount: Nat::from(2u8) }),
        (C::InsufficientFunds { balance: Amount::new(3) }, W::InsufficientFunds { balance: Nat::from(3u8) }),
        (
            C::InsufficientAllowance { allowance: Amount::new(u128::MAX) },
            W::InsufficientAllowance { allowance: Nat::from(u128::MAX) },
        ),
        (C::TooOld, W::TooOld),
        (C::CreatedInFuture { ledger_time: 5 }, W::CreatedInFuture { ledger_time: 5 }),
        (C::Duplicate { duplicate_of: BlockIndex(6) }, W::Duplicate { duplicate_of: Nat::from(6u8) }),
        (C::TemporarilyUnavailable, W::TemporarilyUnavailable),
        (
            C::GenericError { error_code: 7, message: "ledger is archiving".into() },
            W::GenericError { error_code: Nat::from(7u8), message: "ledger is archiving".into() },
        ),
    ]
}

/// Exhaustive: a variant added to prom-core fails to compile here until the tables cover it.
fn approve_variant(err: &core::ApproveError) -> &'static str {
    use core::ApproveError as C;
    match err {
        C::BadFee { .. } => "BadFee",
        C::InsufficientFunds { .. } => "InsufficientFunds",
        C::AllowanceChanged { .. } => "AllowanceChanged",
        C::Expired { .. } => "Expired",
        C::TooOld => "TooOld",
        C::CreatedInFuture { .. } => "CreatedInFuture",
        C::Duplicate { .. } => "Duplicate",
        C::TemporarilyUnavailable => "TemporarilyUnavailable",
        C::GenericError { .. } => "GenericError",
    }
}

fn transfer_from_variant(err: &core::TransferFromError) -> &'static str {
    use core::TransferFromError as C;
    match err {
        C::BadFee { .. } => "BadFee",
        C::BadBurn { .. } => "BadBurn",
        C::InsufficientFunds { .. } => "InsufficientFunds",
        C::InsufficientAllowance { .. } => "InsufficientAllowance",
        C::TooOld => "TooOld",
        C::CreatedInFuture { .. } => "CreatedInFuture",
        C::Duplicate { .. } => "Duplicate",
        C::TemporarilyUnavailable => "TemporarilyUnavailable",
        C::GenericError { .. } => "GenericError",
    }
}

#[test]
fn the_error_tables_cover_every_variant() {
    let approve: BTreeSet<_> = approve_errors().iter().map(|(core, _)| approve_variant(core)).collect();
    assert_eq!(approve.len(), 9);
    let transfer: BTreeSet<_> = transfer_from_errors().iter().map(|(core, _)| transfer_from_variant(core)).collect();
    assert_eq!(transfer.len(), 9);
}

#[test]
fn arguments_convert_to_exactly_their_wire_records_and_back() {
    for (core, wire) in [full_approve(), bare_approve()] {
        assert_eq!(wire::ApproveArgs::try_from(core.clone()).unwrap(), wire);
        assert_eq!(core::ApproveArgs::try_from(wire).unwrap(), core);
    }
    for (core, wire) in [full_transfer_from(), bare_transfer_from()] {
        assert_eq!(wire::TransferFromArgs::try_from(core.clone()).unwrap(), wire);
        assert_eq!(core::TransferFromArgs::try_from(wire).unwrap(), core);
    }
    let (core, wire) = allowance_args();
    assert_eq!(wire::AllowanceArgs::try_from(&core).unwrap(), wire);
    assert_eq!(core::AllowanceArgs::from(wire), core);
    for (core, wire) in allowances() {
        assert_eq!(wire::Allowance::from(core), wire);
        assert_eq!(core::Allowance::try_from(wire).unwrap(), core);
    }
}

#[test]
fn a_subaccount_is_sent_as_given() {
    // None and the zero subaccount are the same account to the ledger, but the call says which.
    let (_, wire) = bare_transfer_from();
    assert_eq!(wire.from.subaccount, None);
    assert_eq!(wire.to.subaccount, Some([0; 32]));
    let back = core::TransferFromArgs::try_from(wire).unwrap();
    assert_eq!(back.to.subaccount, Some([0; 32]));
    assert_eq!(back.from.subaccount, None);
}

#[test]
fn every_error_variant_converts_to_its_counterpart_and_back() {
    for (core, wire) in approve_errors() {
        assert_eq!(wire::ApproveError::from(core.clone()), wire);
        assert_eq!(core::ApproveError::try_from(wire.clone()).unwrap(), core);
        let result: Result<BlockIndex, core::ApproveError> = wire::ApproveResult::Err(wire.clone()).try_into().unwrap();
        assert_eq!(result, Err(core.clone()));
        assert_eq!(wire::ApproveResult::from(Err::<BlockIndex, _>(core)), wire::ApproveResult::Err(wire));
    }
    for (core, wire) in transfer_from_errors() {
        assert_eq!(wire::TransferFromError::from(core.clone()), wire);
        assert_eq!(core::TransferFromError::try_from(wire.clone()).unwrap(), core);
        let result: Result<BlockIndex, core::TransferFromError> =
            wire::TransferFromResult::Err(wire.clone()).try_into().unwrap();
        assert_eq!(result, Err(core.clone()));
        assert_eq!(wire::TransferFromResult::from(Err::<BlockIndex, _>(core)), wire::TransferFromResult::Err(wire));
    }
}

#[test]
fn a_block_index_converts_both_ways() {
    let ok: Result<BlockIndex, core::ApproveError> = wire::ApproveResult::Ok(Nat::from(u64::MAX)).try_into().unwrap();
    assert_eq!(ok, Ok(BlockIndex(u64::MAX)));
    assert_eq!(wire::ApproveResult::from(Ok(BlockIndex(9))), wire::ApproveResult::Ok(Nat::from(9u8)));
    let ok: Result<BlockIndex, core::TransferFromError> =
        wire::TransferFromResult::Ok(Nat::from(0u8)).try_into().unwrap();
    assert_eq!(ok, Ok(BlockIndex(0)));
    assert_eq!(wire::TransferFromResult::from(Ok(BlockIndex(9))), wire::TransferFromResult::Ok(Nat::from(9u8)));
}

fn refused_as_unrepresentable(err: ConversionError, field: &str) {
    let message = err.to_string();
    assert!(message.contains(field), "{message}");
    assert!(matches!(err, ConversionError::AmountBeyondU128 { .. } | ConversionError::BeyondU64 { .. }), "{err:?}");
    let ledger_error = LedgerError::from(err);
    assert!(matches!(ledger_error, LedgerError::Unrepresentable(_)), "{ledger_error:?}");
}

#[test]
fn a_nat_beyond_u128_is_refused_not_truncated() {
    let big = beyond_u128();
    let err = core::Allowance::try_from(wire::Allowance { allowance: big.clone(), expires_at: None }).unwrap_err();
    assert_eq!(err, ConversionError::AmountBeyondU128 { field: "allowance", value: big.clone() });
    refused_as_unrepresentable(err, "allowance = 340282366920938463463374607431768211456");

    let (_, mut approve) = full_approve();
    approve.expected_allowance = Some(big.clone());
    refused_as_unrepresentable(core::ApproveArgs::try_from(approve).unwrap_err(), "expected_allowance");
    let (_, mut transfer) = full_transfer_from();
    transfer.fee = Some(big.clone());
    refused_as_unrepresentable(core::TransferFromArgs::try_from(transfer).unwrap_err(), "fee");

    for err in [
        wire::ApproveError::BadFee { expected_fee: big.clone() },
        wire::ApproveError::InsufficientFunds { balance: big.clone() },
        wire::ApproveError::AllowanceChanged { current_allowance: big.clone() },
    ] {
        refused_as_unrepresentable(core::ApproveError::try_from(err).unwrap_err(), "beyond");
    }
    for err in [
        wire::TransferFromError::BadFee { expected_fee: big.clone() },
        wire::TransferFromError::BadBurn { min_burn_amount: big.clone() },
        wire::TransferFromError::InsufficientFunds { balance: big.clone() },
        wire::TransferFromError::InsufficientAllowance { allowance: big.clone() },
    ] {
        refused_as_unrepresentable(core::TransferFromError::try_from(err).unwrap_err(), "beyond");
    }
}

#[test]
fn a_block_index_or_error_code_beyond_u64_is_refused() {
    let big = Nat::from(u64::MAX) + 1u8;
    let err = Result::<BlockIndex, core::ApproveError>::try_from(wire::ApproveResult::Ok(big.clone())).unwrap_err();
    refused_as_unrepresentable(err, "block index = 18446744073709551616");
    let err =
        Result::<BlockIndex, core::TransferFromError>::try_from(wire::TransferFromResult::Ok(big.clone())).unwrap_err();
    refused_as_unrepresentable(err, "block index");
    let err = core::TransferFromError::try_from(wire::TransferFromError::Duplicate { duplicate_of: big.clone() });
    refused_as_unrepresentable(err.unwrap_err(), "duplicate_of");
    let err = core::ApproveError::try_from(wire::ApproveError::GenericError { error_code: big, message: "x".into() });
    refused_as_unrepresentable(err.unwrap_err(), "error_code");
}

#[test]
fn an_owner_that_is_not_a_principal_is_refused_before_any_call() {
    let (mut core, _) = full_transfer_from();
    core.to = core::Account::new("tenant:0190f5a2-0000-7000-8000-000000000000");
    let err = wire::TransferFromArgs::try_from(core).unwrap_err();
    assert!(matches!(err, ConversionError::NotAPrincipal { ref owner, .. } if owner.starts_with("tenant:")), "{err:?}");
    assert!(std::error::Error::source(&err).is_some(), "the principal parser's reason is kept");
    let ledger_error = LedgerError::from(err);
    assert!(matches!(ledger_error, LedgerError::Rejected(ref message) if message.contains("not a principal")));

    // A principal's text with a broken checksum is not a principal either.
    let mut text = alice().to_text();
    text.replace_range(0..1, if text.starts_with('a') { "b" } else { "a" });
    let err = wire::Account::try_from(&core::Account::new(text)).unwrap_err();
    assert!(matches!(err, ConversionError::NotAPrincipal { .. }), "{err:?}");
    assert!(wire::Account::try_from(&core::Account::new("platform")).is_err());
}

#[test]
fn a_memo_the_ledger_sends_longer_than_32_bytes_is_refused() {
    let (_, mut wire) = full_transfer_from();
    wire.memo = Some(ByteBuf::from(vec![1; 33]));
    let err = core::TransferFromArgs::try_from(wire).unwrap_err();
    assert!(matches!(err, ConversionError::MemoTooLong(_)), "{err:?}");
}

#[test]
fn our_records_survive_a_candid_round_trip() {
    let (_, approve) = full_approve();
    assert_eq!(Decode!(&Encode!(&approve).unwrap(), wire::ApproveArgs).unwrap(), approve);
    let (_, approve) = bare_approve();
    assert_eq!(Decode!(&Encode!(&approve).unwrap(), wire::ApproveArgs).unwrap(), approve);
    for (_, transfer) in [full_transfer_from(), bare_transfer_from()] {
        assert_eq!(Decode!(&Encode!(&transfer).unwrap(), wire::TransferFromArgs).unwrap(), transfer);
    }
    let (_, args) = allowance_args();
    assert_eq!(Decode!(&Encode!(&args).unwrap(), wire::AllowanceArgs).unwrap(), args);
    for (_, allowance) in allowances() {
        assert_eq!(Decode!(&Encode!(&allowance).unwrap(), wire::Allowance).unwrap(), allowance);
    }
    for (_, err) in approve_errors() {
        let result = wire::ApproveResult::Err(err);
        assert_eq!(Decode!(&Encode!(&result).unwrap(), wire::ApproveResult).unwrap(), result);
    }
    for (_, err) in transfer_from_errors() {
        let result = wire::TransferFromResult::Err(err);
        assert_eq!(Decode!(&Encode!(&result).unwrap(), wire::TransferFromResult).unwrap(), result);
    }
    let big = wire::Allowance { allowance: beyond_u128(), expires_at: None };
    assert_eq!(Decode!(&Encode!(&big).unwrap(), wire::Allowance).unwrap(), big, "the wire type holds any nat");
}
