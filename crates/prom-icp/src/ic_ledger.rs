//! `IcLedger`: prom-core's [`Ledger`] on a real ICRC-2 ledger canister, through an `ic-agent`
//! [`Agent`] whose identity is the platform's.
//!
//! Queries (`icrc1_fee`, `icrc1_decimals`, `icrc1_balance_of`, `icrc2_allowance`) need no particular
//! identity. Updates are signed by the agent's identity, so the caller the trait names must be that
//! identity's principal: `icrc2_transfer_from` is the platform spending as the spender, which is the
//! point; `icrc2_approve` is normally signed by the user's own wallet, and here only works for an
//! approval *by* the agent's identity. A caller that is anyone else is refused before anything is
//! sent, rather than approving or spending for the wrong account.
//!
//! How failures map onto [`LedgerError`]:
//! - no answer (network, HTTP, timeout, a transient reject by the system): `Transport`, with the
//!   agent's error as the cause. For an update the outcome is then unknown; retrying the same call
//!   with the same `created_at_time` is safe, the ledger answers `Duplicate` if it was applied.
//! - the canister or the system rejected the call (no such method, the canister trapped or is
//!   stopped, a wrong canister id): `Rejected`, saying what to check. Nothing was changed.
//! - an answer that does not decode as the standard's type, or holds a `nat` too large for this
//!   version: `Unrepresentable`.
//! - an owner that is not a principal, or a caller that is not the agent's identity: `Rejected`,
//!   before any call.

mod connect;

use std::fmt;

use async_trait::async_trait;
use candid::utils::ArgumentEncoder;
use candid::{CandidType, Nat, Principal};
use ic_agent::agent::{RejectCode, RejectResponse};
use ic_agent::{Agent, AgentError};
use prom_core::ledger::{
    Account, Allowance, AllowanceArgs, ApproveArgs, ApproveError, BlockIndex, Ledger, LedgerError, TransferFromArgs,
    TransferFromError,
};
use prom_core::money::Amount;
use thiserror::Error;

use crate::wire;

pub use connect::{ConnectError, RootKey, load_identity};

/// A real ICRC-2 ledger canister, called through `agent`.
#[derive(Clone)]
pub struct IcLedger {
    agent: Agent,
    canister: Principal,
}

impl fmt::Debug for IcLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signer = self.agent.get_principal().map(|principal| principal.to_text());
        f.debug_struct("IcLedger")
            .field("canister", &self.canister.to_text())
            .field("signer", &signer.as_deref().unwrap_or("(unknown)"))
            .finish_non_exhaustive()
    }
}

/// Why a call got no usable answer; the cause of a [`LedgerError::Transport`].
#[derive(Debug, Error)]
#[error(
    "{method} on the ledger canister {canister} got no answer; check the replica URL and the network. \
     An update whose outcome is unknown is safe to retry with the same created_at_time"
)]
pub struct CallFailed {
    pub method: &'static str,
    pub canister: String,
    #[source]
    pub source: AgentError,
}

impl IcLedger {
    /// The ledger canister `ledger_canister`, called through `agent`. The agent must be ready to use:
    /// for a local replica, its root key already fetched (see [`IcLedger::connect`]).
    pub fn new(agent: Agent, ledger_canister: Principal) -> Self {
        Self { agent, canister: ledger_canister }
    }

    pub fn ledger_canister(&self) -> Principal {
        self.canister
    }

    /// The principal that signs updates: the agent's identity, the platform's in production.
    pub fn signer(&self) -> Result<Principal, LedgerError> {
        self.agent.get_principal().map_err(|err| {
            LedgerError::Rejected(format!("the agent's identity has no principal ({err}); check the identity file"))
        })
    }

    /// Refuses an update on behalf of anyone but the agent's identity, before it is sent.
    fn check_caller(&self, method: &'static str, caller: &str, advice: &str) -> Result<(), LedgerError> {
        let caller_principal = wire::principal(caller)?;
        let signer = self.signer()?;
        if caller_principal == signer {
            Ok(())
        } else {
            Err(LedgerError::Rejected(format!(
                "{method} would be signed by {signer} (the agent's identity), not by {caller}, so it was not sent; {advice}"
            )))
        }
    }

    async fn query<R>(&self, method: &'static str, arg: impl ArgumentEncoder) -> Result<R, LedgerError>
    where
        R: CandidType + for<'de> candid::Deserialize<'de>,
    {
        let arg = encode(method, arg)?;
        let answer = self.agent.query(&self.canister, method).with_arg(arg).call().await;
        self.decode(method, answer)
    }

    async fn update<R>(&self, method: &'static str, arg: impl ArgumentEncoder) -> Result<R, LedgerError>
    where
        R: CandidType + for<'de> candid::Deserialize<'de>,
    {
        let arg = encode(method, arg)?;
        let answer = self.agent.update(&self.canister, method).with_arg(arg).call_and_wait().await;
        self.decode(method, answer)
    }

    fn decode<R>(&self, method: &'static str, answer: Result<Vec<u8>, AgentError>) -> Result<R, LedgerError>
    where
        R: CandidType + for<'de> candid::Deserialize<'de>,
    {
        let bytes = answer.map_err(|err| self.call_failed(method, err))?;
        candid::decode_one(&bytes).map_err(|err| {
            LedgerError::Unrepresentable(format!(
                "the answer of {method} from {} does not decode as the ICRC-2 standard's type ({err}); \
                 check that the canister id names an ICRC-2 ledger",
                self.canister
            ))
        })
    }

    fn call_failed(&self, method: &'static str, err: AgentError) -> LedgerError {
        match &err {
            AgentError::CertifiedReject { reject, .. } | AgentError::UncertifiedReject { reject, .. }
                if reject.reject_code != RejectCode::SysTransient =>
            {
                LedgerError::Rejected(rejected(method, &self.canister, reject))
            }
            _ => {
                LedgerError::Transport(Box::new(CallFailed { method, canister: self.canister.to_text(), source: err }))
            }
        }
    }
}

fn rejected(method: &str, canister: &Principal, reject: &RejectResponse) -> String {
    let code = reject.error_code.as_deref().map(|code| format!(", {code}")).unwrap_or_default();
    let advice = match reject.reject_code {
        RejectCode::DestinationInvalid => "check the ledger canister id and that the replica URL is its network",
        RejectCode::CanisterError | RejectCode::CanisterReject => {
            "check that the canister is an ICRC-2 ledger (it must support icrc2_approve and icrc2_transfer_from)"
        }
        RejectCode::SysFatal | RejectCode::SysTransient => "the replica could not run the call",
    };
    format!("{canister} rejected {method} ({:?}{code}): {}; {advice}", reject.reject_code, reject.reject_message)
}

fn encode(method: &'static str, arg: impl ArgumentEncoder) -> Result<Vec<u8>, LedgerError> {
    // Only our own records are encoded; a failure here is a bug, reported rather than sent.
    candid::encode_args(arg)
        .map_err(|err| LedgerError::Rejected(format!("cannot encode the argument of {method}: {err}")))
}

#[async_trait]
impl Ledger for IcLedger {
    async fn fee(&self) -> Result<Amount, LedgerError> {
        let fee: Nat = self.query("icrc1_fee", ()).await?;
        Ok(wire::amount("fee", fee)?)
    }

    async fn decimals(&self) -> Result<u8, LedgerError> {
        self.query("icrc1_decimals", ()).await
    }

    async fn balance_of(&self, account: &Account) -> Result<Amount, LedgerError> {
        let account = wire::Account::try_from(account)?;
        let balance: Nat = self.query("icrc1_balance_of", (account,)).await?;
        Ok(wire::amount("balance", balance)?)
    }

    async fn approve(&self, caller: &str, args: ApproveArgs) -> Result<Result<BlockIndex, ApproveError>, LedgerError> {
        let advice =
            "on a real ledger the user's wallet signs icrc2_approve; IcLedger approves only from its own identity";
        self.check_caller("icrc2_approve", caller, advice)?;
        let args = wire::ApproveArgs::try_from(args)?;
        let result: wire::ApproveResult = self.update("icrc2_approve", (args,)).await?;
        Ok(result.try_into()?)
    }

    async fn allowance(&self, args: AllowanceArgs) -> Result<Allowance, LedgerError> {
        let args = wire::AllowanceArgs::try_from(&args)?;
        let allowance: wire::Allowance = self.query("icrc2_allowance", (args,)).await?;
        Ok(allowance.try_into()?)
    }

    async fn transfer_from(
        &self,
        caller: &str,
        args: TransferFromArgs,
    ) -> Result<Result<BlockIndex, TransferFromError>, LedgerError> {
        let advice = "the spender must be the principal of the identity file IcLedger was given";
        self.check_caller("icrc2_transfer_from", caller, advice)?;
        let args = wire::TransferFromArgs::try_from(args)?;
        let result: wire::TransferFromResult = self.update("icrc2_transfer_from", (args,)).await?;
        Ok(result.try_into()?)
    }

    async fn mint(&self, _to: &Account, _amount: Amount) -> Result<BlockIndex, LedgerError> {
        Err(LedgerError::Unsupported("mint (a real ledger mints through its own minting account)"))
    }
}
