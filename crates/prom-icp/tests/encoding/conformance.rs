//! Our candid records against the ledger team's own (`icrc-ledger-types`, what the reference
//! ledger canister is built with): each of ours, candid-encoded, decodes as theirs with equal field
//! values, and each of theirs decodes as ours. Run with the feature `icp-conformance`.

use candid::{Decode, Encode, Nat};
use icrc_ledger_types::icrc1::account::Account as TheirAccount;
use icrc_ledger_types::icrc1::transfer::Memo as TheirMemo;
use icrc_ledger_types::icrc2::allowance::{Allowance as TheirAllowance, AllowanceArgs as TheirAllowanceArgs};
use icrc_ledger_types::icrc2::approve::{ApproveArgs as TheirApproveArgs, ApproveError as TheirApproveError};
use icrc_ledger_types::icrc2::transfer_from::{
    TransferFromArgs as TheirTransferFromArgs, TransferFromError as TheirTransferFromError,
};
use prom_core::ledger::{self as core, LedgerError};
use prom_icp::wire;

use super::{
    NOW, allowance_args, allowances, approve_errors, bare_approve, bare_transfer_from, beyond_u128, full_approve,
    full_transfer_from, transfer_from_errors,
};

fn their_account(account: &wire::Account) -> TheirAccount {
    TheirAccount { owner: account.owner, subaccount: account.subaccount }
}

fn their_memo(memo: &Option<serde_bytes::ByteBuf>) -> Option<TheirMemo> {
    memo.clone().map(TheirMemo)
}

/// Their `Account` compares effective subaccounts; a call must also keep `None` and the zero
/// subaccount apart, so compare the fields themselves.
fn assert_same_account(theirs: &TheirAccount, ours: &wire::Account) {
    assert_eq!(theirs.owner, ours.owner);
    assert_eq!(theirs.subaccount, ours.subaccount);
}

fn their_approve(ours: &wire::ApproveArgs) -> TheirApproveArgs {
    TheirApproveArgs {
        from_subaccount: ours.from_subaccount,
        spender: their_account(&ours.spender),
        amount: ours.amount.clone(),
        expected_allowance: ours.expected_allowance.clone(),
        expires_at: ours.expires_at,
        fee: ours.fee.clone(),
        memo: their_memo(&ours.memo),
        created_at_time: ours.created_at_time,
    }
}

fn their_transfer_from(ours: &wire::TransferFromArgs) -> TheirTransferFromArgs {
    TheirTransferFromArgs {
        spender_subaccount: ours.spender_subaccount,
        from: their_account(&ours.from),
        to: their_account(&ours.to),
        amount: ours.amount.clone(),
        fee: ours.fee.clone(),
        memo: their_memo(&ours.memo),
        created_at_time: ours.created_at_time,
    }
}

/// In the order of `approve_errors()`, written out rather than derived from ours.
fn their_approve_errors() -> Vec<TheirApproveError> {
    use TheirApproveError as T;
    vec![
        T::BadFee { expected_fee: Nat::from(10_000u32) },
        T::InsufficientFunds { balance: Nat::from(u128::MAX) },
        T::AllowanceChanged { current_allowance: Nat::from(3u8) },
        T::Expired { ledger_time: NOW },
        T::TooOld,
        T::CreatedInFuture { ledger_time: NOW + 1 },
        T::Duplicate { duplicate_of: Nat::from(u64::MAX) },
        T::TemporarilyUnavailable,
        T::GenericError { error_code: Nat::from(u64::MAX), message: "self approval".into() },
    ]
}

/// In the order of `transfer_from_errors()`.
fn their_transfer_from_errors() -> Vec<TheirTransferFromError> {
    use TheirTransferFromError as T;
    vec![
        T::BadFee { expected_fee: Nat::from(1u8) },
        T::BadBurn { min_burn_amount: Nat::from(2u8) },
        T::InsufficientFunds { balance: Nat::from(3u8) },
        T::InsufficientAllowance { allowance: Nat::from(u128::MAX) },
        T::TooOld,
        T::CreatedInFuture { ledger_time: 5 },
        T::Duplicate { duplicate_of: Nat::from(6u8) },
        T::TemporarilyUnavailable,
        T::GenericError { error_code: Nat::from(7u8), message: "ledger is archiving".into() },
    ]
}

#[test]
fn approve_args_decode_as_theirs_and_back() {
    for (_, ours) in [full_approve(), bare_approve()] {
        let theirs = Decode!(&Encode!(&ours).unwrap(), TheirApproveArgs).unwrap();
        assert_eq!(theirs, their_approve(&ours));
        assert_same_account(&theirs.spender, &ours.spender);
        let back = Decode!(&Encode!(&theirs).unwrap(), wire::ApproveArgs).unwrap();
        assert_eq!(back, ours);
    }
}

#[test]
fn transfer_from_args_decode_as_theirs_and_back() {
    for (_, ours) in [full_transfer_from(), bare_transfer_from()] {
        let theirs = Decode!(&Encode!(&ours).unwrap(), TheirTransferFromArgs).unwrap();
        assert_eq!(theirs, their_transfer_from(&ours));
        assert_same_account(&theirs.from, &ours.from);
        assert_same_account(&theirs.to, &ours.to);
        let back = Decode!(&Encode!(&theirs).unwrap(), wire::TransferFromArgs).unwrap();
        assert_eq!(back, ours);
    }
}

#[test]
fn allowance_records_decode_as_theirs_and_back() {
    let (_, ours) = allowance_args();
    let theirs = Decode!(&Encode!(&ours).unwrap(), TheirAllowanceArgs).unwrap();
    assert_same_account(&theirs.account, &ours.account);
    assert_same_account(&theirs.spender, &ours.spender);
    assert_eq!(Decode!(&Encode!(&theirs).unwrap(), wire::AllowanceArgs).unwrap(), ours);

    for (_, ours) in allowances() {
        let theirs = Decode!(&Encode!(&ours).unwrap(), TheirAllowance).unwrap();
        assert_eq!(theirs, TheirAllowance { allowance: ours.allowance.clone(), expires_at: ours.expires_at });
        assert_eq!(Decode!(&Encode!(&theirs).unwrap(), wire::Allowance).unwrap(), ours);
    }
}

#[test]
fn every_approve_result_decodes_as_theirs_and_back() {
    let ours_and_theirs = approve_errors().into_iter().zip(their_approve_errors());
    for ((core, ours), theirs) in ours_and_theirs {
        let ours = wire::ApproveResult::Err(ours);
        let decoded = Decode!(&Encode!(&ours).unwrap(), Result<Nat, TheirApproveError>).unwrap();
        assert_eq!(decoded, Err(theirs.clone()));
        let back = Decode!(&Encode!(&Err::<Nat, _>(theirs)).unwrap(), wire::ApproveResult).unwrap();
        assert_eq!(back, ours);
        let as_core: Result<_, core::ApproveError> = back.try_into().unwrap();
        assert_eq!(as_core, Err(core));
    }
    let ok = Decode!(&Encode!(&Ok::<Nat, TheirApproveError>(Nat::from(42u8))).unwrap(), wire::ApproveResult).unwrap();
    assert_eq!(ok, wire::ApproveResult::Ok(Nat::from(42u8)));
    let theirs = Decode!(&Encode!(&ok).unwrap(), Result<Nat, TheirApproveError>).unwrap();
    assert_eq!(theirs, Ok(Nat::from(42u8)));
}

#[test]
fn every_transfer_from_result_decodes_as_theirs_and_back() {
    let ours_and_theirs = transfer_from_errors().into_iter().zip(their_transfer_from_errors());
    for ((core, ours), theirs) in ours_and_theirs {
        let ours = wire::TransferFromResult::Err(ours);
        let decoded = Decode!(&Encode!(&ours).unwrap(), Result<Nat, TheirTransferFromError>).unwrap();
        assert_eq!(decoded, Err(theirs.clone()));
        let back = Decode!(&Encode!(&Err::<Nat, _>(theirs)).unwrap(), wire::TransferFromResult).unwrap();
        assert_eq!(back, ours);
        let as_core: Result<_, core::TransferFromError> = back.try_into().unwrap();
        assert_eq!(as_core, Err(core));
    }
    let ok = Decode!(&Encode!(&Ok::<Nat, TheirTransferFromError>(Nat::from(7u8))).unwrap(), wire::TransferFromResult);
    assert_eq!(ok.unwrap(), wire::TransferFromResult::Ok(Nat::from(7u8)));
}

#[test]
fn their_nat_beyond_u128_decodes_but_is_refused_as_an_amount() {
    let theirs = TheirAllowance { allowance: beyond_u128(), expires_at: Some(1) };
    let ours = Decode!(&Encode!(&theirs).unwrap(), wire::Allowance).unwrap();
    let err = LedgerError::from(core::Allowance::try_from(ours).unwrap_err());
    assert!(matches!(err, LedgerError::Unrepresentable(ref message) if message.contains("allowance")), "{err:?}");

    let theirs: Result<Nat, TheirTransferFromError> =
        Err(TheirTransferFromError::InsufficientFunds { balance: beyond_u128() });
    let ours = Decode!(&Encode!(&theirs).unwrap(), wire::TransferFromResult).unwrap();
    let err = Result::<_, core::TransferFromError>::try_from(ours).unwrap_err();
    assert!(matches!(LedgerError::from(err), LedgerError::Unrepresentable(_)));
}
