//! What `IcLedger` does without a replica: it reads the identity files `dfx` writes, refuses to
//! sign for anyone but its own identity, refuses owners that are not principals before sending
//! anything, and reports a replica that does not answer as `Transport`, with the cause kept.
//!
//! The keys are made at run time from fixed bytes (never a key-shaped literal in the repository).

#![cfg(feature = "icp")]

use std::error::Error as _;
use std::path::{Path, PathBuf};

use prom_core::ledger::{Account, AllowanceArgs, ApproveArgs, Ledger, LedgerError, TransferFromArgs};
use prom_core::money::Amount;
use prom_icp::candid::Principal;
use prom_icp::ic_agent::Identity;
use prom_icp::ic_agent::identity::{BasicIdentity, Secp256k1Identity};
use prom_icp::{CallFailed, ConnectError, IcLedger, RootKey, load_identity};

const LEDGER: &str = "ryjl3-tyaaa-aaaaa-aaaba-cai";
const SEED: [u8; 32] = [0x5e; 32];

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, byte)| n | u32::from(*byte) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn pem(label: &str, der: &[u8]) -> String {
    let body =
        base64(der).as_bytes().chunks(64).map(|line| String::from_utf8_lossy(line).into_owned()).collect::<Vec<_>>();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", body.join("\n"))
}

/// An Ed25519 key as PKCS#8 (`dfx identity new --storage-mode plaintext` of old, and `BasicIdentity`).
fn ed25519_pem() -> String {
    let mut der = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    der.extend_from_slice(&SEED);
    pem("PRIVATE KEY", &der)
}

/// A secp256k1 key as SEC1 (`dfx identity new`'s default today).
fn secp256k1_pem() -> String {
    let mut der = vec![0x30, 0x2e, 0x02, 0x01, 0x01, 0x04, 0x20];
    der.extend_from_slice(&[0x11; 32]);
    der.extend_from_slice(&[0xa0, 0x07, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a]);
    pem("EC PRIVATE KEY", &der)
}

struct Files(tempfile::TempDir);

impl Files {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

/// A loopback URL where nothing listens: the port was bound, then freed.
fn nothing_listens() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

async fn offline_ledger(identity: &Path) -> IcLedger {
    IcLedger::connect(&nothing_listens(), LEDGER, identity, RootKey::Mainnet).await.unwrap()
}

fn ed25519_principal() -> Principal {
    BasicIdentity::from_raw_key(&SEED).sender().unwrap()
}

#[test]
fn identity_files_of_either_kind_are_read() {
    let files = Files::new();
    let ed25519 = load_identity(&files.write("ed25519.pem", &ed25519_pem())).unwrap();
    assert_eq!(ed25519.sender().unwrap(), ed25519_principal());

    let secp256k1 = load_identity(&files.write("secp256k1.pem", &secp256k1_pem())).unwrap();
    let expected = Secp256k1Identity::from_pem(secp256k1_pem()).unwrap().sender().unwrap();
    assert_eq!(secp256k1.sender().unwrap(), expected);
    assert_ne!(expected, ed25519_principal());
}

#[test]
fn an_unreadable_or_foreign_identity_file_is_a_clear_error() {
    let files = Files::new();
    let missing = files.0.path().join("missing.pem");
    let err = load_identity(&missing).err().unwrap();
    assert!(matches!(err, ConnectError::ReadIdentity { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let not_a_key = files.write("cert.pem", &pem("CERTIFICATE", &[0x30, 0x03, 0x02, 0x01, 0x00]));
    let err = load_identity(&not_a_key).err().unwrap();
    assert!(matches!(err, ConnectError::Identity { .. }), "{err:?}");
    let message = err.to_string();
    for expected in ["cert.pem", "Secp256k1", "Ed25519", "Prime256v1", "dfx identity export"] {
        assert!(message.contains(expected), "{message}");
    }
}

#[tokio::test]
async fn connect_checks_the_canister_id_and_fetches_a_root_key_only_when_told() {
    let files = Files::new();
    let identity = files.write("id.pem", &ed25519_pem());
    let err = IcLedger::connect(&nothing_listens(), "not-a-canister", &identity, RootKey::Mainnet).await.err().unwrap();
    assert!(matches!(err, ConnectError::CanisterId { .. }), "{err:?}");

    // Mainnet's key is built in: nothing is asked of the (absent) replica.
    let ledger = offline_ledger(&identity).await;
    assert_eq!(ledger.ledger_canister().to_text(), LEDGER);
    assert_eq!(ledger.signer().unwrap(), ed25519_principal());
    assert!(format!("{ledger:?}").contains(LEDGER));

    let err = IcLedger::connect(&nothing_listens(), LEDGER, &identity, RootKey::FetchFromLocalReplica).await.err();
    let err = err.unwrap();
    assert!(matches!(err, ConnectError::RootKey { .. }), "{err:?}");
    assert!(err.to_string().contains("is it running?"), "{err}");
}

fn approve(spender: &str) -> ApproveArgs {
    ApproveArgs {
        from_subaccount: None,
        spender: Account::new(spender),
        amount: Amount::new(100),
        expected_allowance: None,
        expires_at: None,
        fee: None,
        memo: None,
        created_at_time: None,
    }
}

fn transfer_from(from: &str, to: &str) -> TransferFromArgs {
    TransferFromArgs {
        spender_subaccount: None,
        from: Account::new(from),
        to: Account::new(to),
        amount: Amount::new(100),
        fee: None,
        memo: None,
        created_at_time: Some(1),
    }
}

fn rejected_saying(result: Result<impl std::fmt::Debug, LedgerError>, words: &[&str]) {
    match result {
        Err(LedgerError::Rejected(message)) => {
            for word in words {
                assert!(message.contains(word), "{message:?} should say {word:?}");
            }
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn updates_are_signed_only_for_the_agents_own_identity() {
    let files = Files::new();
    let ledger = offline_ledger(&files.write("id.pem", &ed25519_pem())).await;
    let signer = ledger.signer().unwrap().to_text();
    let someone_else = Principal::from_slice(&[9; 29]).to_text();

    // Refused before anything is sent: nothing listens, yet the answer is not a transport error.
    let refused = ledger.approve(&someone_else, approve(LEDGER)).await;
    rejected_saying(refused, &[&signer, &someone_else, "not sent", "wallet"]);
    let refused = ledger.transfer_from(&someone_else, transfer_from(&someone_else, LEDGER)).await;
    rejected_saying(refused, &[&signer, &someone_else, "not sent", "spender"]);
    rejected_saying(ledger.approve("platform", approve(LEDGER)).await, &["\"platform\"", "not a principal"]);

    // The right caller, but accounts that are not principals' (the embedded ledger's owner ids).
    let tenant = "tenant:0190f5a2-0000-7000-8000-000000000000";
    rejected_saying(ledger.transfer_from(&signer, transfer_from(tenant, LEDGER)).await, &[tenant, "not sent"]);
    rejected_saying(ledger.balance_of(&Account::new(tenant)).await, &[tenant]);
    let args = AllowanceArgs { account: Account::new(tenant), spender: Account::new(&signer) };
    rejected_saying(ledger.allowance(args).await, &[tenant]);

    let minted = ledger.mint(&Account::new(&signer), Amount::new(1)).await;
    assert!(matches!(minted, Err(LedgerError::Unsupported(_))), "{minted:?}");
}

fn no_answer(result: Result<impl std::fmt::Debug, LedgerError>, method: &str) {
    match result {
        Err(LedgerError::Transport(cause)) => {
            let call = cause.downcast_ref::<CallFailed>().unwrap();
            assert_eq!(call.method, method);
            assert_eq!(call.canister, LEDGER);
            assert!(call.source().is_some(), "the agent's error is kept as the cause");
            assert!(cause.to_string().contains("check the replica URL"), "{cause}");
        }
        other => panic!("expected Transport, got {other:?}"),
    }
}

#[tokio::test]
async fn a_replica_that_does_not_answer_is_a_transport_error() {
    let files = Files::new();
    let ledger = offline_ledger(&files.write("id.pem", &ed25519_pem())).await;
    let signer = ledger.signer().unwrap().to_text();
    no_answer(ledger.fee().await, "icrc1_fee");
    no_answer(ledger.decimals().await, "icrc1_decimals");
    no_answer(ledger.balance_of(&Account::new(&signer)).await, "icrc1_balance_of");
    let args = AllowanceArgs { account: Account::new(&signer), spender: Account::new(LEDGER) };
    no_answer(ledger.allowance(args).await, "icrc2_allowance");
    no_answer(ledger.approve(&signer, approve(LEDGER)).await, "icrc2_approve");
    let transferred = ledger.transfer_from(&signer, transfer_from(LEDGER, &signer)).await;
    no_answer(transferred, "icrc2_transfer_from");
}
