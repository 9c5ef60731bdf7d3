//! The embedded ICRC-2 ledger against the standard, one test per rule: approve replaces, the
//! `expected_allowance` compare-and-swap, expiry, fees drawn from allowance and balance, every
//! error variant of `approve` and `transfer_from`, deduplication, and concurrent spenders that can
//! never overspend. Money is checked where a user would see it: balances, allowances, block indices.

use std::sync::Arc;
use std::time::Duration;

use prom_core::ledger::{
    Account, Allowance, AllowanceArgs, ApproveArgs, ApproveError, BlockIndex, Clock, Ledger, LedgerError, ManualClock,
    Memo, TransferFromArgs, TransferFromError, TxWindow,
};
use prom_core::money::Amount;
use prom_store::{EmbeddedLedger, EmbeddedLedgerConfig, SqlStore};
use tokio::task::JoinSet;

const SECOND: u64 = 1_000_000_000;
const MINUTE: u64 = 60 * SECOND;
const DAY: u64 = 24 * 60 * MINUTE;
/// The ledger fee most tests use; non-zero so that every fee rule shows.
const FEE: u128 = 10;

const ALICE: &str = "tenant:alice";
const BOB: &str = "tenant:bob";
const PLATFORM: &str = "platform";

/// A ledger on `store` with a clock the test moves.
struct Bench {
    ledger: EmbeddedLedger,
    clock: Arc<ManualClock>,
}

impl Bench {
    fn new(store: SqlStore, config: EmbeddedLedgerConfig) -> Self {
        let clock = Arc::new(ManualClock::starting_now());
        Self { ledger: EmbeddedLedger::new(store, config, clock.clone()), clock }
    }

    fn with_fee(store: SqlStore, fee: u128) -> Self {
        Self::new(store, EmbeddedLedgerConfig { fee: Amount::new(fee), ..EmbeddedLedgerConfig::default() })
    }

    fn now(&self) -> u64 {
        self.clock.now_nanos()
    }

    async fn mint(&self, owner: &str, units: u128) -> BlockIndex {
        self.ledger.mint(&Account::new(owner), Amount::new(units)).await.unwrap()
    }

    async fn balance(&self, account: &Account) -> u128 {
        self.ledger.balance_of(account).await.unwrap().units()
    }

    async fn balance_of(&self, owner: &str) -> u128 {
        self.balance(&Account::new(owner)).await
    }

    async fn allowance(&self, owner: &str, spender: &str) -> Allowance {
        let args = AllowanceArgs { account: Account::new(owner), spender: Account::new(spender) };
        self.ledger.allowance(args).await.unwrap()
    }

    async fn approve(&self, caller: &str, args: ApproveArgs) -> Result<BlockIndex, ApproveError> {
        self.ledger.approve(caller, args).await.unwrap()
    }

    async fn transfer_from(&self, caller: &str, args: TransferFromArgs) -> Result<BlockIndex, TransferFromError> {
        self.ledger.transfer_from(caller, args).await.unwrap()
    }

    /// `owner` approves the platform for `units`, with no conditions.
    async fn approve_platform(&self, owner: &str, units: u128) -> BlockIndex {
        self.approve(owner, approval(PLATFORM, units)).await.unwrap()
    }
}

fn amount(units: u128) -> Amount {
    Amount::new(units)
}

fn allowance(units: u128, expires_at: Option<u64>) -> Allowance {
    Allowance { allowance: amount(units), expires_at }
}

fn approval(spender: &str, units: u128) -> ApproveArgs {
    ApproveArgs {
        from_subaccount: None,
        spender: Account::new(spender),
        amount: amount(units),
        expected_allowance: None,
        expires_at: None,
        fee: None,
        memo: None,
        created_at_time: None,
    }
}

fn transfer(from: &str, to: &str, units: u128) -> TransferFromArgs {
    TransferFromArgs {
        spender_subaccount: None,
        from: Account::new(from),
        to: Account::new(to),
        amount: amount(units),
        fee: None,
        memo: None,
        created_at_time: None,
    }
}

fn memo(text: &str) -> Option<Memo> {
    Some(Memo::new(text.as_bytes()).unwrap())
}

async fn mint_credits_exact_amounts_in_numbered_blocks(store: SqlStore) {
    let bench = Bench::new(store, EmbeddedLedgerConfig::default());
    assert_eq!(bench.ledger.fee().await.unwrap(), Amount::ZERO, "the embedded ledger is free by default");
    assert_eq!(bench.ledger.decimals().await.unwrap(), 8);

    let first = bench.mint(ALICE, 1_000).await;
    let second = bench.mint(ALICE, u128::MAX - 1_001).await;
    assert_eq!(second, BlockIndex(first.0 + 1));
    assert_eq!(bench.balance_of(ALICE).await, u128::MAX - 1, "u128 amounts are stored exactly");
    assert_eq!(bench.balance_of(BOB).await, 0, "an account never credited holds nothing");

    let overflow = bench.ledger.mint(&Account::new(ALICE), amount(2)).await;
    assert!(matches!(overflow, Err(LedgerError::Rejected(_))), "{overflow:?}");
    let to_minting = bench.ledger.mint(&bench.ledger.config().minting_account, amount(1)).await;
    assert!(matches!(to_minting, Err(LedgerError::Rejected(_))), "{to_minting:?}");
    assert_eq!(bench.balance_of(ALICE).await, u128::MAX - 1);
    assert_eq!(bench.mint(BOB, 1).await, BlockIndex(second.0 + 1), "refused mints take no block");
}

async fn decimals_and_fee_are_configurable(store: SqlStore) {
    let config = EmbeddedLedgerConfig { fee: amount(10_000), decimals: 6, ..EmbeddedLedgerConfig::default() };
    let bench = Bench::new(store, config);
    assert_eq!(bench.ledger.fee().await.unwrap(), amount(10_000));
    assert_eq!(bench.ledger.decimals().await.unwrap(), 6);
}

async fn approve_replaces_the_allowance(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(ALICE, 1_000).await;
    let expiry = bench.now() + DAY;

    bench.approve(ALICE, ApproveArgs { expires_at: Some(expiry), ..approval(PLATFORM, 100) }).await.unwrap();
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, allowance(100, Some(expiry)));
    bench.approve(ALICE, approval(PLATFORM, 30)).await.unwrap();

    assert_eq!(bench.allowance(ALICE, PLATFORM).await, allowance(30, None), "replaced, expiry included; not 130");
    assert_eq!(bench.balance_of(ALICE).await, 1_000 - 2 * FEE, "each approval pays the fee");
    bench.approve(ALICE, approval(PLATFORM, 0)).await.unwrap();
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, Allowance::NONE, "approving zero removes the approval");
}

async fn expected_allowance_swaps_when_it_matches(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(ALICE, 1_000).await;

    let first = ApproveArgs { expected_allowance: Some(Amount::ZERO), ..approval(PLATFORM, 100) };
    bench.approve(ALICE, first).await.unwrap();
    let swap = ApproveArgs { expected_allowance: Some(amount(100)), ..approval(PLATFORM, 40) };
    bench.approve(ALICE, swap).await.unwrap();

    assert_eq!(bench.allowance(ALICE, PLATFORM).await, allowance(40, None));
    assert_eq!(bench.balance_of(ALICE).await, 1_000 - 2 * FEE);
}

async fn expected_allowance_that_differs_is_allowance_changed(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(ALICE, 1_000).await;
    bench.approve_platform(ALICE, 100).await;
    bench.transfer_from(PLATFORM, transfer(ALICE, BOB, 30)).await.unwrap();
    let balance = bench.balance_of(ALICE).await;

    let revoke = ApproveArgs { expected_allowance: Some(amount(100)), ..approval(PLATFORM, 0) };
    let refused = bench.approve(ALICE, revoke).await;

    assert_eq!(refused, Err(ApproveError::AllowanceChanged { current_allowance: amount(100 - 30 - FEE) }));
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, allowance(60, None), "nothing changed");
    assert_eq!(bench.balance_of(ALICE).await, balance, "no fee for a refused approval");
}

async fn approve_that_expires_before_it_applies_is_expired(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(ALICE, 1_000).await;
    let now = bench.now();

    for expires_at in [now, now - 1, 0] {
        let late = ApproveArgs { expires_at: Some(expires_at), ..approval(PLATFORM, 100) };
        assert_eq!(bench.approve(ALICE, late).await, Err(ApproveError::Expired { ledger_time: now }));
    }
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, Allowance::NONE);
    assert_eq!(bench.balance_of(ALICE).await, 1_000);
    let never = ApproveArgs { expires_at: Some(u64::MAX), ..approval(PLATFORM, 100) };
    bench.approve(ALICE, never).await.unwrap();
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, allowance(100, Some(u64::MAX)), "u64 expiries are exact");
}

async fn an_allowance_that_expires_cannot_be_spent(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(ALICE, 1_000).await;
    let expiry = bench.now() + MINUTE;
    bench.approve(ALICE, ApproveArgs { expires_at: Some(expiry), ..approval(PLATFORM, 500) }).await.unwrap();
    bench.transfer_from(PLATFORM, transfer(ALICE, BOB, 10)).await.unwrap();

    bench.clock.advance(Duration::from_secs(60));

    assert_eq!(bench.allowance(ALICE, PLATFORM).await, Allowance::NONE);
    let refused = bench.transfer_from(PLATFORM, transfer(ALICE, BOB, 10)).await;
    assert_eq!(refused, Err(TransferFromError::InsufficientAllowance { allowance: Amount::ZERO }));
    assert_eq!(bench.balance_of(BOB).await, 10);
    let cas = ApproveArgs { expected_allowance: Some(Amount::ZERO), ..approval(PLATFORM, 50) };
    bench.approve(ALICE, cas).await.expect("an expired allowance is a current allowance of zero");
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, allowance(50, None));
}

async fn transfer_from_draws_amount_and_fee(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(ALICE, 1_000).await;
    bench.approve_platform(ALICE, 500).await;

    bench.transfer_from(PLATFORM, transfer(ALICE, BOB, 100)).await.unwrap();

    assert_eq!(bench.allowance(ALICE, PLATFORM).await, allowance(500 - 100 - FEE, None));
    assert_eq!(bench.balance_of(ALICE).await, 1_000 - FEE - 100 - FEE);
    assert_eq!(bench.balance_of(BOB).await, 100);
    assert_eq!(bench.balance_of(PLATFORM).await, 0, "the spender is not paid unless it is `to`");
    assert_eq!(bench.balance(&bench.ledger.config().minting_account).await, 0, "fees are burned");

    let exact = TransferFromArgs { fee: Some(amount(FEE)), ..transfer(ALICE, PLATFORM, 390 - FEE) };
    bench.transfer_from(PLATFORM, exact).await.unwrap();
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, Allowance::NONE, "spent to exactly zero");
    assert_eq!(bench.balance_of(PLATFORM).await, 380);
}

async fn wrong_fee_is_bad_fee(store: SqlStore) {
    let config = EmbeddedLedgerConfig { fee: amount(FEE), min_burn_amount: amount(1), ..Default::default() };
    let bench = Bench::new(store, config);
    bench.mint(ALICE, 1_000).await;
    let expected_fee = amount(FEE);

    let approve = ApproveArgs { fee: Some(amount(FEE - 1)), ..approval(PLATFORM, 100) };
    assert_eq!(bench.approve(ALICE, approve).await, Err(ApproveError::BadFee { expected_fee }));
    bench.approve(ALICE, ApproveArgs { fee: Some(amount(FEE)), ..approval(PLATFORM, 100) }).await.unwrap();
    for wrong in [0, FEE + 1] {
        let args = TransferFromArgs { fee: Some(amount(wrong)), ..transfer(ALICE, BOB, 5) };
        assert_eq!(bench.transfer_from(PLATFORM, args).await, Err(TransferFromError::BadFee { expected_fee }));
    }
    let minting = bench.ledger.config().minting_account.owner.clone();
    let burn = TransferFromArgs { fee: Some(amount(FEE)), ..transfer(ALICE, &minting, 5) };
    let refused = bench.transfer_from(PLATFORM, burn).await;
    assert_eq!(refused, Err(TransferFromError::BadFee { expected_fee: Amount::ZERO }), "burns are free");

    assert_eq!(bench.balance_of(ALICE).await, 1_000 - FEE);
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, allowance(100, None));
}

async fn approve_fee_needs_funds(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(ALICE, FEE - 1).await;

    let refused = bench.approve(ALICE, approval(PLATFORM, 100)).await;
    assert_eq!(refused, Err(ApproveError::InsufficientFunds { balance: amount(FEE - 1) }));
    let refused = bench.approve(BOB, approval(PLATFORM, 100)).await;
    assert_eq!(refused, Err(ApproveError::InsufficientFunds { balance: Amount::ZERO }));
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, Allowance::NONE);

    bench.mint(ALICE, 1).await;
    bench.approve(ALICE, approval(PLATFORM, 1_000_000)).await.expect("the fee is all an approval needs");
    assert_eq!(bench.balance_of(ALICE).await, 0);
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, allowance(1_000_000, None));
}

async fn transfer_from_needs_funds(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(ALICE, 50 + FEE).await;
    bench.approve_platform(ALICE, 1_000).await;

    let refused = bench.transfer_from(PLATFORM, transfer(ALICE, BOB, 50 - FEE + 1)).await;

    assert_eq!(refused, Err(TransferFromError::InsufficientFunds { balance: amount(50) }));
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, allowance(1_000, None), "nothing changed");
    assert_eq!((bench.balance_of(ALICE).await, bench.balance_of(BOB).await), (50, 0));
    bench.transfer_from(PLATFORM, transfer(ALICE, BOB, 50 - FEE)).await.expect("exactly the balance");
    assert_eq!((bench.balance_of(ALICE).await, bench.balance_of(BOB).await), (0, 40));
}

async fn transfer_from_needs_allowance(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(ALICE, 1_000).await;

    let refused = bench.transfer_from(PLATFORM, transfer(ALICE, BOB, 1)).await;
    assert_eq!(refused, Err(TransferFromError::InsufficientAllowance { allowance: Amount::ZERO }));
    bench.approve_platform(ALICE, 100).await;
    let refused = bench.transfer_from(PLATFORM, transfer(ALICE, BOB, 100 - FEE + 1)).await;
    assert_eq!(refused, Err(TransferFromError::InsufficientAllowance { allowance: amount(100) }));
    let refused = bench.transfer_from(BOB, transfer(ALICE, BOB, 1)).await;
    assert_eq!(refused, Err(TransferFromError::InsufficientAllowance { allowance: Amount::ZERO }), "per spender");
    let other_subaccount = TransferFromArgs { spender_subaccount: Some([7; 32]), ..transfer(ALICE, BOB, 1) };
    let refused = bench.transfer_from(PLATFORM, other_subaccount).await;
    assert_eq!(refused, Err(TransferFromError::InsufficientAllowance { allowance: Amount::ZERO }), "per subaccount");
    let overflowing = transfer(ALICE, BOB, u128::MAX);
    let refused = bench.transfer_from(PLATFORM, overflowing).await;
    assert_eq!(refused, Err(TransferFromError::InsufficientAllowance { allowance: amount(100) }));

    assert_eq!((bench.balance_of(ALICE).await, bench.balance_of(BOB).await), (1_000 - FEE, 0));
    bench.transfer_from(PLATFORM, transfer(ALICE, BOB, 100 - FEE)).await.expect("exactly the allowance");
}

async fn duplicate_approve_returns_the_original_block(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(ALICE, 1_000).await;
    let args = ApproveArgs {
        expected_allowance: Some(Amount::ZERO),
        memo: memo("allowance for weather-pro"),
        created_at_time: Some(bench.now()),
        ..approval(PLATFORM, 100)
    };
    let original = bench.approve(ALICE, args.clone()).await.unwrap();
    bench.clock.advance(Duration::from_secs(3600));

    let retry = bench.approve(ALICE, args.clone()).await;

    assert_eq!(retry, Err(ApproveError::Duplicate { duplicate_of: original }), "even though the CAS would now fail");
    assert_eq!(bench.balance_of(ALICE).await, 1_000 - FEE, "one fee");
    let other_memo = ApproveArgs { memo: memo("another"), expected_allowance: None, ..args.clone() };
    let applied = bench.approve(ALICE, other_memo).await.unwrap();
    assert!(applied > original, "a different memo is a different transaction");
    let untimed = ApproveArgs { created_at_time: None, expected_allowance: None, ..args };
    bench.approve(ALICE, untimed.clone()).await.unwrap();
    bench.approve(ALICE, untimed).await.expect("without created_at_time there is no deduplication");
    assert_eq!(bench.balance_of(ALICE).await, 1_000 - 4 * FEE);
}

async fn duplicate_transfer_from_returns_the_original_block(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(ALICE, 1_000).await;
    bench.approve_platform(ALICE, 500).await;
    let args = TransferFromArgs {
        memo: memo("settlement 42"),
        created_at_time: Some(bench.now()),
        ..transfer(ALICE, BOB, 100)
    };
    let original = bench.transfer_from(PLATFORM, args.clone()).await.unwrap();
    bench.clock.advance(Duration::from_secs(23 * 3600));

    let retry = bench.transfer_from(PLATFORM, args.clone()).await;

    assert_eq!(retry, Err(TransferFromError::Duplicate { duplicate_of: original }));
    assert_eq!(bench.balance_of(BOB).await, 100, "paid once");
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, allowance(500 - 100 - FEE, None));
    let next = TransferFromArgs { memo: memo("settlement 43"), ..args };
    bench.transfer_from(PLATFORM, next).await.expect("another memo is another transfer");
    assert_eq!(bench.balance_of(BOB).await, 200);
}

async fn concurrent_retries_apply_once(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(ALICE, 1_000).await;
    bench.approve_platform(ALICE, 1_000).await;
    let args = TransferFromArgs { created_at_time: Some(bench.now()), ..transfer(ALICE, BOB, 100) };

    let mut racers = JoinSet::new();
    for _ in 0..20 {
        let (ledger, args) = (bench.ledger.clone(), args.clone());
        racers.spawn(async move { ledger.transfer_from(PLATFORM, args).await.unwrap() });
    }
    let answers = racers.join_all().await;

    let blocks: Vec<_> = answers.iter().filter_map(|answer| answer.as_ref().ok()).collect();
    assert_eq!(blocks.len(), 1, "{answers:?}");
    let duplicate = Err(TransferFromError::Duplicate { duplicate_of: *blocks[0] });
    assert_eq!(answers.iter().filter(|answer| **answer == duplicate).count(), 19, "{answers:?}");
    assert_eq!(bench.balance_of(BOB).await, 100);
}

async fn created_at_time_too_old_is_refused(store: SqlStore) {
    let window = TxWindow { window: Duration::from_secs(3600), ..TxWindow::default() };
    let config = EmbeddedLedgerConfig { fee: amount(FEE), tx_window: window, ..EmbeddedLedgerConfig::default() };
    let bench = Bench::new(store, config);
    bench.mint(ALICE, 1_000).await;
    let oldest = bench.now() - 60 * MINUTE - 2 * MINUTE;

    let approve = ApproveArgs { created_at_time: Some(oldest - 1), ..approval(PLATFORM, 100) };
    assert_eq!(bench.approve(ALICE, approve).await, Err(ApproveError::TooOld));
    let approve = ApproveArgs { created_at_time: Some(oldest), ..approval(PLATFORM, 100) };
    bench.approve(ALICE, approve).await.expect("the window's first instant");
    let old = TransferFromArgs { created_at_time: Some(oldest - 1), ..transfer(ALICE, BOB, 10) };
    assert_eq!(bench.transfer_from(PLATFORM, old).await, Err(TransferFromError::TooOld));

    assert_eq!(bench.balance_of(BOB).await, 0);
    assert_eq!(bench.balance_of(ALICE).await, 1_000 - FEE);
}

async fn created_at_time_in_the_future_is_refused(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(ALICE, 1_000).await;
    let now = bench.now();
    let latest = now + 2 * MINUTE;

    let approve = ApproveArgs { created_at_time: Some(latest + 1), ..approval(PLATFORM, 100) };
    assert_eq!(bench.approve(ALICE, approve).await, Err(ApproveError::CreatedInFuture { ledger_time: now }));
    let approve = ApproveArgs { created_at_time: Some(latest), ..approval(PLATFORM, 100) };
    bench.approve(ALICE, approve).await.expect("within the permitted drift");
    let early = TransferFromArgs { created_at_time: Some(latest + 1), ..transfer(ALICE, BOB, 10) };
    let refused = bench.transfer_from(PLATFORM, early).await;
    assert_eq!(refused, Err(TransferFromError::CreatedInFuture { ledger_time: now }));

    assert_eq!(bench.balance_of(BOB).await, 0);
}

async fn approving_yourself_is_a_generic_error(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(ALICE, 1_000).await;

    let other_subaccount = ApproveArgs { spender: Account::with_subaccount(ALICE, [1; 32]), ..approval(ALICE, 100) };
    for args in [approval(ALICE, 100), other_subaccount] {
        let refused = bench.approve(ALICE, args).await;
        let self_approval = |message: &str| message.contains("spender account owner is the caller");
        assert!(
            matches!(
                &refused,
                Err(ApproveError::GenericError { error_code: EmbeddedLedger::SELF_APPROVAL, message })
                    if self_approval(message)
            ),
            "{refused:?}"
        );
    }
    assert_eq!(bench.balance_of(ALICE).await, 1_000);
}

async fn suspended_ledger_is_temporarily_unavailable(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(ALICE, 1_000).await;
    bench.approve_platform(ALICE, 500).await;

    bench.ledger.suspend();
    assert_eq!(bench.approve(ALICE, approval(PLATFORM, 1)).await, Err(ApproveError::TemporarilyUnavailable));
    let refused = bench.transfer_from(PLATFORM, transfer(ALICE, BOB, 1)).await;
    assert_eq!(refused, Err(TransferFromError::TemporarilyUnavailable));
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, allowance(500, None), "reads keep working");
    assert_eq!(bench.balance_of(ALICE).await, 1_000 - FEE);

    bench.ledger.resume();
    bench.transfer_from(PLATFORM, transfer(ALICE, BOB, 1)).await.expect("back after resume");
}

async fn burns_are_free_and_have_a_minimum(store: SqlStore) {
    let config = EmbeddedLedgerConfig { fee: amount(FEE), min_burn_amount: amount(100), ..Default::default() };
    let bench = Bench::new(store, config);
    let minting = bench.ledger.config().minting_account.clone();
    bench.mint(ALICE, 1_000).await;
    bench.approve_platform(ALICE, 500).await;

    let small = bench.transfer_from(PLATFORM, transfer(ALICE, &minting.owner, 99)).await;
    assert_eq!(small, Err(TransferFromError::BadBurn { min_burn_amount: amount(100) }));
    bench.transfer_from(PLATFORM, transfer(ALICE, &minting.owner, 100)).await.unwrap();

    assert_eq!(bench.balance_of(ALICE).await, 1_000 - FEE - 100, "no fee on a burn");
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, allowance(400, None));
    assert_eq!(bench.balance(&minting).await, 0, "burned tokens are gone");
}

async fn the_minting_account_cannot_approve_or_be_debited(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    let minting = bench.ledger.config().minting_account.owner.clone();

    let refused = bench.approve(&minting, approval(PLATFORM, 100)).await;
    assert!(
        matches!(refused, Err(ApproveError::GenericError { error_code: EmbeddedLedger::MINTING_ACCOUNT, .. })),
        "{refused:?}"
    );
    let refused = bench.transfer_from(PLATFORM, transfer(&minting, BOB, 1)).await;
    assert!(
        matches!(refused, Err(TransferFromError::GenericError { error_code: EmbeddedLedger::MINTING_ACCOUNT, .. })),
        "{refused:?}"
    );
    assert_eq!(bench.balance_of(BOB).await, 0);
}

async fn a_credit_past_u128_is_a_generic_error(store: SqlStore) {
    let bench = Bench::with_fee(store, 0);
    bench.mint(ALICE, 10).await;
    bench.mint(BOB, u128::MAX - 5).await;
    bench.approve_platform(ALICE, 10).await;

    let refused = bench.transfer_from(PLATFORM, transfer(ALICE, BOB, 10)).await;

    assert!(
        matches!(refused, Err(TransferFromError::GenericError { error_code: EmbeddedLedger::BALANCE_OVERFLOW, .. })),
        "{refused:?}"
    );
    assert_eq!((bench.balance_of(ALICE).await, bench.balance_of(BOB).await), (10, u128::MAX - 5));
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, allowance(10, None));
}

async fn a_spender_moves_its_own_account_without_allowance(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(PLATFORM, 1_000).await;

    bench.transfer_from(PLATFORM, transfer(PLATFORM, BOB, 100)).await.unwrap();

    assert_eq!(bench.balance_of(PLATFORM).await, 1_000 - 100 - FEE);
    assert_eq!(bench.balance_of(BOB).await, 100);
    let to_itself = bench.transfer_from(PLATFORM, transfer(PLATFORM, PLATFORM, 100)).await;
    to_itself.expect("a transfer to the same account");
    assert_eq!(bench.balance_of(PLATFORM).await, 1_000 - 100 - 2 * FEE, "only the fee leaves");
}

async fn subaccounts_are_separate_accounts(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    let savings = Account::with_subaccount(ALICE, [1; 32]);
    bench.ledger.mint(&savings, amount(500)).await.unwrap();
    bench.mint(ALICE, 1_000).await;
    let default = Account::with_subaccount(ALICE, [0; 32]);
    assert_eq!(bench.balance(&default).await, 1_000, "the all-zero subaccount is the default account");
    assert_eq!(bench.balance(&savings).await, 500);

    let from_savings = ApproveArgs {
        from_subaccount: Some([1; 32]),
        spender: Account::with_subaccount(PLATFORM, [9; 32]),
        ..approval(PLATFORM, 300)
    };
    bench.approve(ALICE, from_savings).await.unwrap();
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, Allowance::NONE, "approved for another account");
    let args =
        TransferFromArgs { spender_subaccount: Some([9; 32]), from: savings.clone(), ..transfer(ALICE, BOB, 50) };
    bench.transfer_from(PLATFORM, args).await.unwrap();

    assert_eq!(bench.balance(&savings).await, 500 - FEE - 50 - FEE);
    assert_eq!(bench.balance_of(ALICE).await, 1_000);
    let spender = Account::with_subaccount(PLATFORM, [9; 32]);
    let left = bench.ledger.allowance(AllowanceArgs { account: savings, spender }).await.unwrap();
    assert_eq!(left, allowance(300 - 50 - FEE, None));
}

async fn refused_calls_leave_no_trace(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    bench.mint(ALICE, 100).await;
    let last = bench.approve_platform(ALICE, 50).await;

    let now = bench.now();
    bench.transfer_from(PLATFORM, transfer(ALICE, BOB, 41)).await.unwrap_err();
    bench.approve(ALICE, ApproveArgs { expires_at: Some(now), ..approval(PLATFORM, 1) }).await.unwrap_err();
    let changed = ApproveArgs { expected_allowance: Some(amount(1)), ..approval(PLATFORM, 1) };
    bench.approve(ALICE, changed).await.unwrap_err();
    bench.approve(BOB, approval(PLATFORM, 1)).await.unwrap_err();

    assert_eq!(bench.balance_of(ALICE).await, 100 - FEE);
    assert_eq!(bench.balance_of(BOB).await, 0);
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, allowance(50, None));
    let next = bench.transfer_from(PLATFORM, transfer(ALICE, BOB, 40)).await.unwrap();
    assert_eq!(next, BlockIndex(last.0 + 1), "no block was taken by a refused call");
}

/// Concurrent spenders racing for one allowance that covers exactly `WINNERS` transfers.
const RACERS: usize = 50;
const WINNERS: usize = 10;

async fn concurrent_transfers_stop_at_the_allowance(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    let price = 7;
    let limit = WINNERS as u128 * (price + FEE);
    bench.mint(ALICE, 10_000).await;
    bench.approve_platform(ALICE, limit).await;

    let mut racers = JoinSet::new();
    for n in 0..RACERS {
        let ledger = bench.ledger.clone();
        let args = TransferFromArgs { memo: memo(&format!("call {n}")), ..transfer(ALICE, BOB, price) };
        racers.spawn(async move { ledger.transfer_from(PLATFORM, args).await.unwrap() });
    }
    let answers = racers.join_all().await;

    let mut blocks: Vec<_> = answers.iter().filter_map(|answer| answer.as_ref().ok()).collect();
    assert_eq!(blocks.len(), WINNERS, "{answers:?}");
    blocks.sort();
    blocks.dedup();
    assert_eq!(blocks.len(), WINNERS, "every success has its own block");
    let exhausted = Err(TransferFromError::InsufficientAllowance { allowance: Amount::ZERO });
    assert!(answers.iter().filter(|answer| answer.is_err()).all(|answer| *answer == exhausted), "{answers:?}");
    assert_eq!(bench.allowance(ALICE, PLATFORM).await, Allowance::NONE);
    assert_eq!(bench.balance_of(ALICE).await, 10_000 - FEE - limit);
    assert_eq!(bench.balance_of(BOB).await, WINNERS as u128 * price);
}

async fn concurrent_transfers_stop_at_the_balance(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    let price = 7;
    let spenders = ["platform", "platform-eu", "platform-us", "platform-ap", "platform-sa"];
    bench.mint(ALICE, spenders.len() as u128 * FEE + WINNERS as u128 * (price + FEE)).await;
    for spender in spenders {
        bench.approve(ALICE, approval(spender, 1_000_000)).await.unwrap();
    }

    let mut racers = JoinSet::new();
    for n in 0..RACERS {
        let ledger = bench.ledger.clone();
        let spender = spenders[n % spenders.len()];
        racers.spawn(async move { ledger.transfer_from(spender, transfer(ALICE, BOB, price)).await.unwrap() });
    }
    let answers = racers.join_all().await;

    assert_eq!(answers.iter().filter(|answer| answer.is_ok()).count(), WINNERS, "{answers:?}");
    let broke = Err(TransferFromError::InsufficientFunds { balance: Amount::ZERO });
    assert!(answers.iter().filter(|answer| answer.is_err()).all(|answer| *answer == broke), "{answers:?}");
    assert_eq!(bench.balance_of(ALICE).await, 0);
    assert_eq!(bench.balance_of(BOB).await, WINNERS as u128 * price);
    let mut spent = 0;
    for spender in spenders {
        spent += 1_000_000 - bench.allowance(ALICE, spender).await.allowance.units();
    }
    assert_eq!(spent, WINNERS as u128 * (price + FEE), "allowances moved with the balance");
}

async fn opposite_transfers_do_not_deadlock(store: SqlStore) {
    let bench = Bench::with_fee(store, FEE);
    for owner in [ALICE, BOB] {
        bench.mint(owner, 1_000).await;
        bench.approve_platform(owner, 1_000).await;
    }

    let mut racers = JoinSet::new();
    for n in 0..40 {
        let ledger = bench.ledger.clone();
        let (from, to) = if n % 2 == 0 { (ALICE, BOB) } else { (BOB, ALICE) };
        racers.spawn(async move { ledger.transfer_from(PLATFORM, transfer(from, to, 5)).await.unwrap() });
    }
    let answers = racers.join_all().await;

    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(bench.balance_of(ALICE).await, 1_000 - FEE - 20 * FEE);
    assert_eq!(bench.balance_of(BOB).await, 1_000 - FEE - 20 * FEE);
}

store_tests!(
    mint_credits_exact_amounts_in_numbered_blocks,
    decimals_and_fee_are_configurable,
    approve_replaces_the_allowance,
    expected_allowance_swaps_when_it_matches,
    expected_allowance_that_differs_is_allowance_changed,
    approve_that_expires_before_it_applies_is_expired,
    an_allowance_that_expires_cannot_be_spent,
    transfer_from_draws_amount_and_fee,
    wrong_fee_is_bad_fee,
    approve_fee_needs_funds,
    transfer_from_needs_funds,
    transfer_from_needs_allowance,
    duplicate_approve_returns_the_original_block,
    duplicate_transfer_from_returns_the_original_block,
    concurrent_retries_apply_once,
    created_at_time_too_old_is_refused,
    created_at_time_in_the_future_is_refused,
    approving_yourself_is_a_generic_error,
    suspended_ledger_is_temporarily_unavailable,
    burns_are_free_and_have_a_minimum,
    the_minting_account_cannot_approve_or_be_debited,
    a_credit_past_u128_is_a_generic_error,
    a_spender_moves_its_own_account_without_allowance,
    subaccounts_are_separate_accounts,
    refused_calls_leave_no_trace,
    concurrent_transfers_stop_at_the_allowance,
    concurrent_transfers_stop_at_the_balance,
    opposite_transfers_do_not_deadlock,
);
