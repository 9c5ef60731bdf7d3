//! Against a real ICRC-2 ledger, when told where one is:
//!
//! - `PROM_TEST_ICP_URL`: the replica, e.g. `http://127.0.0.1:4943` (dfx) or `https://icp-api.io`.
//!   A loopback URL is taken for a local replica, whose root key is fetched from it.
//! - `PROM_TEST_ICP_LEDGER`: the ledger's canister id.
//! - `PROM_TEST_ICP_IDENTITY`: a PEM identity file (`dfx identity export NAME > id.pem`) whose
//!   default account holds at least one fee (the approval costs one).
//!
//! It reads the fee, the decimals and the identity's balance, approves a fresh spender (a random
//! subaccount of the anonymous principal) and reads the allowance back. Without the three variables
//! it says so on stderr and passes.

#![cfg(feature = "icp")]

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use prom_core::ledger::{Account, Allowance, AllowanceArgs, ApproveArgs, Ledger};
use prom_core::money::Amount;
use prom_icp::candid::Principal;
use prom_icp::{IcLedger, RootKey};

struct LiveConfig {
    url: String,
    ledger: String,
    identity: PathBuf,
}

fn live_config() -> Option<LiveConfig> {
    let vars = ["PROM_TEST_ICP_URL", "PROM_TEST_ICP_LEDGER", "PROM_TEST_ICP_IDENTITY"];
    let values: Vec<Option<String>> =
        vars.iter().map(|var| std::env::var(var).ok().filter(|v| !v.is_empty())).collect();
    let missing: Vec<&str> =
        vars.iter().zip(&values).filter(|(_, value)| value.is_none()).map(|(var, _)| *var).collect();
    if !missing.is_empty() {
        eprintln!(
            "\n== SKIPPED: the live ICRC-2 ledger test needs {} (missing: {}); \
             see crates/prom-icp/tests/live.rs\n",
            vars.join(", "),
            missing.join(", ")
        );
        return None;
    }
    let mut values = values.into_iter().flatten();
    Some(LiveConfig { url: values.next()?, ledger: values.next()?, identity: PathBuf::from(values.next()?) })
}

fn is_local(url: &str) -> bool {
    let host = url.split("://").nth(1).unwrap_or(url);
    ["127.", "localhost", "[::1]"].iter().any(|local| host.starts_with(local))
}

fn now_nanos() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()).unwrap()
}

#[tokio::test]
async fn a_real_ledger_reads_approves_and_reports_the_allowance() {
    let Some(config) = live_config() else { return };
    let root_key = if is_local(&config.url) { RootKey::FetchFromLocalReplica } else { RootKey::Mainnet };
    let ledger = IcLedger::connect(&config.url, &config.ledger, &config.identity, root_key).await.unwrap();
    let me = ledger.signer().unwrap().to_text();
    eprintln!("live ledger {} at {} as {me}", config.ledger, config.url);

    let fee = ledger.fee().await.unwrap();
    let decimals = ledger.decimals().await.unwrap();
    let balance = ledger.balance_of(&Account::new(&me)).await.unwrap();
    eprintln!("fee {fee}, decimals {decimals}, balance {balance}");
    assert!(decimals <= 38, "a u128 amount holds at most 38 decimal digits");
    assert!(balance >= fee, "{me} must hold at least one fee ({fee}) to approve; it holds {balance}");

    // A spender no one has approved before: the allowance starts at none.
    let nanos = now_nanos();
    let mut subaccount = [0u8; 32];
    subaccount[..8].copy_from_slice(&nanos.to_be_bytes());
    subaccount[8..12].copy_from_slice(&std::process::id().to_be_bytes());
    let spender = Account::with_subaccount(Principal::anonymous().to_text(), subaccount);
    let query = AllowanceArgs { account: Account::new(&me), spender: spender.clone() };
    assert_eq!(ledger.allowance(query.clone()).await.unwrap(), Allowance::NONE);

    let expires_at = nanos + 3_600 * 1_000_000_000;
    let args = ApproveArgs {
        from_subaccount: None,
        spender,
        amount: Amount::new(12_345),
        expected_allowance: Some(Amount::ZERO),
        expires_at: Some(expires_at),
        fee: Some(fee),
        memo: None,
        created_at_time: Some(nanos),
    };
    let block = ledger.approve(&me, args.clone()).await.unwrap().unwrap();
    eprintln!("approved in block {block}");
    let allowance = ledger.allowance(query).await.unwrap();
    assert_eq!(allowance, Allowance { allowance: Amount::new(12_345), expires_at: Some(expires_at) });

    // The same call again is the same transaction: deduplicated, not a second approval.
    let again = ledger.approve(&me, args).await.unwrap();
    assert_eq!(again, Err(prom_core::ledger::ApproveError::Duplicate { duplicate_of: block }));
    let after = ledger.balance_of(&Account::new(&me)).await.unwrap();
    assert_eq!(after.checked_add(fee), Some(balance), "one approval, one fee");
}
