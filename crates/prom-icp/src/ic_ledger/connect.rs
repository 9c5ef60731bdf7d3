//! Building an `IcLedger` from configuration: a replica URL, the ledger's canister id and the
//! platform's identity file (a PEM private key, as `dfx identity export` writes it).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candid::Principal;
use candid::types::principal::PrincipalError;
use ic_agent::identity::{BasicIdentity, PemError, Prime256v1Identity, Secp256k1Identity};
use ic_agent::{Agent, AgentError, Identity};
use secrecy::{ExposeSecret, SecretSlice};
use thiserror::Error;

use super::IcLedger;

/// Which root key certifies the replica's answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootKey {
    /// The Internet Computer mainnet's, built into ic-agent. For every real deployment.
    Mainnet,
    /// Asked of the replica itself at start: only for a local replica (dfx, PocketIC), whose key
    /// is made up when it starts. Never for mainnet, where it would trust whoever answers.
    FetchFromLocalReplica,
}

/// Why [`IcLedger::connect`] could not build a ledger.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("the ledger canister id {id:?} is not a principal's textual form (like \"ryjl3-tyaaa-aaaaa-aaaba-cai\")")]
    CanisterId {
        id: String,
        #[source]
        source: PrincipalError,
    },
    #[error("cannot read the identity file {}", path.display())]
    ReadIdentity {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} is not a PEM private key this gateway can sign with (Secp256k1, Ed25519 or Prime256v1, \
         as `dfx identity export NAME` writes): as Secp256k1: {secp256k1}; as Ed25519: {ed25519}; \
         as Prime256v1: {prime256v1}",
        path.display()
    )]
    Identity { path: PathBuf, secp256k1: Box<PemError>, ed25519: Box<PemError>, prime256v1: Box<PemError> },
    #[error("cannot set up an agent for the replica at {url:?}")]
    Agent {
        url: String,
        #[source]
        source: Box<AgentError>,
    },
    #[error("cannot fetch the root key from the local replica at {url:?}; is it running?")]
    RootKey {
        url: String,
        #[source]
        source: Box<AgentError>,
    },
}

impl IcLedger {
    /// The ledger canister `ledger_canister_id` (textual form) on the replica at `url`, with updates
    /// signed by the identity in the PEM file `identity_pem` (the platform's: it is the spender of
    /// `icrc2_transfer_from`). Secp256k1, Ed25519 and Prime256v1 keys are accepted.
    ///
    /// Nothing is sent to the ledger here; with [`RootKey::FetchFromLocalReplica`] the replica is
    /// asked for its root key.
    pub async fn connect(
        url: &str,
        ledger_canister_id: &str,
        identity_pem: &Path,
        root_key: RootKey,
    ) -> Result<IcLedger, ConnectError> {
        let canister = Principal::from_text(ledger_canister_id)
            .map_err(|source| ConnectError::CanisterId { id: ledger_canister_id.to_owned(), source })?;
        let identity = load_identity(identity_pem)?;
        let agent = Agent::builder()
            .with_url(url)
            .with_arc_identity(identity)
            .build()
            .map_err(|source| ConnectError::Agent { url: url.to_owned(), source: Box::new(source) })?;
        if root_key == RootKey::FetchFromLocalReplica {
            agent
                .fetch_root_key()
                .await
                .map_err(|source| ConnectError::RootKey { url: url.to_owned(), source: Box::new(source) })?;
        }
        Ok(IcLedger::new(agent, canister))
    }
}

/// Reads a PEM private key of any kind the Internet Computer signs with.
pub fn load_identity(path: &Path) -> Result<Arc<dyn Identity>, ConnectError> {
    // The key stays in memory only as long as it is parsed, and is wiped when dropped.
    let pem: SecretSlice<u8> =
        std::fs::read(path).map_err(|source| ConnectError::ReadIdentity { path: path.to_owned(), source })?.into();
    let pem = pem.expose_secret();
    let secp256k1 = match Secp256k1Identity::from_pem(pem) {
        Ok(identity) => return Ok(Arc::new(identity)),
        Err(err) => Box::new(err),
    };
    let ed25519 = match BasicIdentity::from_pem(pem) {
        Ok(identity) => return Ok(Arc::new(identity)),
        Err(err) => Box::new(err),
    };
    let prime256v1 = match Prime256v1Identity::from_pem(pem) {
        Ok(identity) => return Ok(Arc::new(identity)),
        Err(err) => Box::new(err),
    };
    Err(ConnectError::Identity { path: path.to_owned(), secp256k1, ed25519, prime256v1 })
}
