//! `PUT|GET /v1/services/{slug}/allowance` on the embedded ledger: an approval replaces the
//! allowance (ICRC-2), with compare-and-swap and expiry; paid calls draw on it and show up as
//! unsettled, then settled; who may change and who may read it; what a bad request is told; and
//! the `allowance.approve` row each approval writes.

use std::time::Duration;

use prom_core::id::TenantId;
use prom_core::money::Amount;
use prom_core::time::Timestamp;
use prom_server::billing::tenant_wallet;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::gateway::{call, mcp_post, register_priced, spawn_upstream};
use crate::support::{Cred, TestApp, TestUser, actions, expect_error};

pub(crate) const PRICE: u128 = 100;
const ALLOWANCE: &str = "/v1/services/paid/allowance";

/// A server whose settler only runs when a test says so (its first round, at start, finds
/// nothing), so `unsettled` and `settled` hold still while a test looks at them.
pub(crate) async fn spawn() -> TestApp {
    TestApp::spawn_with(|c| c.settle_interval_secs = 3600).await
}

/// Service `paid` of a publisher tenant, its tools `echo` and `broken` at [`PRICE`], and the
/// consumer tenant `acme`'s owner, whose wallet holds `funds`.
pub(crate) async fn paid_service(app: &TestApp, funds: u128) -> TestUser {
    let publisher = app.with_owner("publisher").await;
    let (url, _) = spawn_upstream().await;
    register_priced(app, &publisher, "paid", &url, &[("echo", PRICE), ("broken", PRICE)]).await;
    let owner = app.with_owner("acme").await;
    fund(app, &owner, funds).await;
    owner
}

/// Mints `units` into the user's tenant's wallet on the embedded ledger.
pub(crate) async fn fund(app: &TestApp, user: &TestUser, units: u128) {
    let wallet = tenant_wallet(&TenantId::from_trusted(user.tenant_id.clone()));
    app.state.ledger.mint(&wallet, Amount::new(units)).await.expect("mint into the wallet");
}

/// Moves `units` out of the user's tenant's wallet, outside Prometheus (another spender the
/// tenant approved takes them).
async fn drain(app: &TestApp, user: &TestUser, units: u128) {
    use prom_core::ledger::{Account, ApproveArgs, TransferFromArgs};
    let tenant = TenantId::from_trusted(user.tenant_id.clone());
    let elsewhere = Account::new("elsewhere");
    let args = ApproveArgs {
        from_subaccount: None,
        spender: elsewhere.clone(),
        amount: Amount::new(units),
        expected_allowance: None,
        expires_at: None,
        fee: None,
        memo: None,
        created_at_time: None,
    };
    let owner = prom_server::billing::tenant_owner(&tenant);
    app.state.ledger.approve(&owner, args).await.expect("ledger").expect("approved");
    let args = TransferFromArgs {
        spender_subaccount: None,
        from: tenant_wallet(&tenant),
        to: Account::new("a-shop"),
        amount: Amount::new(units),
        fee: None,
        memo: None,
        created_at_time: None,
    };
    app.state.ledger.transfer_from("elsewhere", args).await.expect("ledger").expect("transferred");
}

/// `PUT /v1/services/paid/allowance` with `body`, asserting 200; returns the view.
pub(crate) async fn approve(user: &TestUser, body: Value) -> Value {
    let (status, view) = user.put(ALLOWANCE, body).await;
    assert_eq!(status, StatusCode::OK, "approving failed: {view}");
    view
}

async fn allowance(user: &TestUser) -> Value {
    let (status, view) = user.get(ALLOWANCE).await;
    assert_eq!(status, StatusCode::OK, "reading the allowance failed: {view}");
    view
}

/// One `tools/call` of `tool` on `slug` with `key`; returns the JSON-RPC answer.
pub(crate) async fn tool_call(app: &TestApp, slug: &str, key: &str, id: u64, tool: &str) -> Value {
    let response = mcp_post(app, slug, Cred::ApiKey(key), &call(id, tool), &[]).await;
    assert_eq!(response.status(), StatusCode::OK, "a JSON-RPC answer, not an HTTP error");
    response.json().await.expect("a JSON-RPC answer")
}

/// The budget's figures: (approved, held, unsettled, settled, available).
fn figures(view: &Value) -> [&str; 5] {
    ["approved", "held", "unsettled", "settled", "available"].map(|field| view[field].as_str().unwrap_or("<none>"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_sets_the_budget_that_paid_calls_draw_on() {
    let app = spawn().await;
    let owner = paid_service(&app, 10_000).await;

    let view = approve(&owner, json!({ "amount": "1000" })).await;
    assert_eq!(
        view,
        json!({
            "service": "paid",
            "approved": "1000", "held": "0", "unsettled": "0", "settled": "0", "available": "1000",
            "expires_at": null, "paid_calls_stop_at": null, "ledger_allowance": "1000", "wallet_balance": "10000",
            "ledger_cap": "1000", "stopped_by": null,
            "prices_in_force": {"broken": "100", "echo": "100"}, "pending_increases": [],
        })
    );
    assert_eq!(allowance(&owner).await, view, "GET shows what PUT answered");

    // Two paid calls: captured, not yet settled. The funds are still in the wallet.
    let (_, key) = owner.create_key("agent").await;
    for id in 1..=2 {
        let answer = tool_call(&app, "paid", &key, id, "echo").await;
        assert_eq!(answer["result"]["content"][0]["text"], "hi", "{answer}");
    }
    let after_calls = allowance(&owner).await;
    assert_eq!(figures(&after_calls), ["1000", "0", "200", "0", "800"]);
    assert_eq!((&after_calls["ledger_allowance"], &after_calls["wallet_balance"]), (&json!("1000"), &json!("10000")));

    // A failed call costs nothing.
    let broken = tool_call(&app, "paid", &key, 3, "broken").await;
    assert_eq!(broken["result"]["isError"], true, "{broken}");
    assert_eq!(figures(&allowance(&owner).await), ["1000", "0", "200", "0", "800"]);

    // Settlement moves the money: out of the wallet, out of the ledger allowance.
    let report = app.state.settler.settle_once().await;
    assert_eq!(report.settled_amount, Amount::new(2 * PRICE));
    let settled = allowance(&owner).await;
    assert_eq!(figures(&settled), ["1000", "0", "0", "200", "800"]);
    assert_eq!((&settled["ledger_allowance"], &settled["wallet_balance"]), (&json!("800"), &json!("9800")));

    // The approval is in the audit log, by the owner, about the service.
    let rows = owner.audit("?action=allowance.approve").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["actor"]["id"], owner.user_id.as_str(), "{rows:?}");
    assert_eq!(rows[0]["target"]["id"], "paid");
    assert_eq!(rows[0]["details"], json!({ "amount": "1000", "expires_at": null }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_approval_replaces_the_old_one_with_compare_and_swap() {
    let app = spawn().await;
    let owner = paid_service(&app, 10_000).await;
    approve(&owner, json!({ "amount": "1000" })).await;
    let replaced = approve(&owner, json!({ "amount": "300" })).await;
    assert_eq!(figures(&replaced), ["300", "0", "0", "0", "300"], "replaced, not added: {replaced}");
    assert_eq!(replaced["ledger_allowance"], "300");

    let (_, key) = owner.create_key("agent").await;
    assert!(tool_call(&app, "paid", &key, 1, "echo").await.get("result").is_some());
    assert_eq!(figures(&allowance(&owner).await), ["300", "0", "100", "0", "200"]);

    // Compare-and-swap against the ledger's current allowance: a stale value is a conflict and
    // changes nothing; the current one swaps. What is unsettled still counts against the new one.
    let stale = owner.put(ALLOWANCE, json!({ "amount": "500", "expected_allowance": "1000" })).await;
    let message = expect_error(&stale, StatusCode::CONFLICT, "CONFLICT");
    assert!(message.contains("300"), "the message says what the allowance is: {message}");
    assert_eq!(figures(&allowance(&owner).await), ["300", "0", "100", "0", "200"]);
    let swapped = approve(&owner, json!({ "amount": "500", "expected_allowance": "300" })).await;
    assert_eq!(figures(&swapped), ["500", "0", "100", "0", "400"]);
    assert_eq!(swapped["ledger_allowance"], "500");

    // One audit row per approval that happened; the refused one wrote none.
    let rows = owner.audit("?action=allowance.approve").await;
    let amounts: Vec<&Value> = rows.iter().map(|row| &row["details"]["amount"]).collect();
    assert_eq!(amounts, [&json!("500"), &json!("300"), &json!("1000")], "{rows:?}");
    assert_eq!(actions(&rows), ["allowance.approve"; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_calls_stop_a_margin_before_the_allowance_expires_so_every_charge_settles() {
    let app = spawn().await;
    let margin = app.state.charges.margins();
    let owner = paid_service(&app, 10_000).await;
    let past = owner.put(ALLOWANCE, json!({ "amount": "1000", "expires_at": "2020-01-01T00:00:00Z" })).await;
    let message = expect_error(&past, StatusCode::CONFLICT, "CONFLICT");
    assert!(message.contains("past"), "{message}");
    let vague = owner.put(ALLOWANCE, json!({ "amount": "1000", "expires_at": "tomorrow" })).await;
    let message = expect_error(&vague, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert!(message.contains("RFC 3339"), "{message}");
    // An expiry within the margin would approve an allowance no paid call could use.
    let soon = Timestamp::now().plus_millis(margin.hold_ms - 1_000);
    let too_soon = owner.put(ALLOWANCE, json!({ "amount": "1000", "expires_at": soon.to_string() })).await;
    let message = expect_error(&too_soon, StatusCode::CONFLICT, "CONFLICT");
    assert!(message.contains(&format!("paid calls stop {} s before", margin.hold_ms / 1000)), "{message}");
    assert_eq!(figures(&allowance(&owner).await), ["0", "0", "0", "0", "0"], "nothing was approved");

    // Paid calls stop 3 s from now, a margin before the allowance expires.
    let expires_at = Timestamp::now().plus_millis(margin.hold_ms + 3_000);
    let stop = expires_at.plus_millis(-margin.hold_ms);
    let view = approve(&owner, json!({ "amount": "1000", "expires_at": expires_at.to_string() })).await;
    assert_eq!(view["expires_at"], expires_at.to_string());
    assert_eq!(view["paid_calls_stop_at"], stop.to_string());
    assert_eq!(view["available"], "1000");
    let (_, key) = owner.create_key("agent").await;
    let paid = tool_call(&app, "paid", &key, 1, "echo").await;
    assert!(paid.get("result").is_some(), "before the stop the call is paid: {paid}");

    let wait = stop.as_millis() - Timestamp::now().as_millis() + 200;
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
    let refused = tool_call(&app, "paid", &key, 2, "echo").await;
    let data = &refused["error"]["data"];
    assert_eq!((&data["code"], &data["expiring"]), (&json!("ALLOWANCE_EXCEEDED"), &json!(true)), "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("later expires_at"), "the refusal says what to do: {message}");
    let stopped = allowance(&owner).await;
    assert_eq!(figures(&stopped), ["1000", "0", "100", "0", "0"]);
    // The allowance still stands on the ledger, so the charge captured before the stop settles.
    assert_eq!(stopped["ledger_allowance"], "1000");
    let report = app.state.settler.settle_once().await;
    assert_eq!((report.settled_batches, report.failed_batches), (1, 0), "{report:?}");
    let settled = allowance(&owner).await;
    assert_eq!(figures(&settled), ["1000", "0", "0", "100", "0"]);
    assert_eq!(settled["ledger_allowance"], "900");
}

/// The wallet holds less than the paid calls captured (its funds went elsewhere, outside
/// Prometheus, before settlement): settlement pays what the wallet covers, in a batch the ledger
/// accepts, instead of a batch for everything that the ledger refuses whole, and the rest waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_pays_what_the_wallet_covers_and_leaves_the_rest_unsettled() {
    let app = spawn().await;
    let owner = paid_service(&app, 1000).await;
    approve(&owner, json!({ "amount": "1000" })).await;
    let (_, key) = owner.create_key("agent").await;
    for id in 1..=3 {
        let paid = tool_call(&app, "paid", &key, id, "echo").await;
        assert!(paid.get("result").is_some(), "{paid}");
    }
    assert_eq!(figures(&allowance(&owner).await), ["1000", "0", "300", "0", "700"]);
    drain(&app, &owner, 750).await;

    let report = app.state.settler.settle_once().await;
    assert_eq!((report.settled_batches, report.failed_batches), (1, 0), "{report:?}");
    assert_eq!(report.settled_amount, Amount::new(2 * PRICE));
    // New holds stop at what the wallet can still pay (the approval stays what the person
    // approved); the third charge waits for funds.
    let after = allowance(&owner).await;
    assert_eq!(figures(&after), ["1000", "0", "100", "200", "0"]);
    assert_eq!(after["wallet_balance"], "50");
    // The wallet's slice is only what is already owed: nothing new fits.
    assert_eq!((after["ledger_cap"].as_str(), after["stopped_by"].as_str()), (Some("100"), Some("wallet")), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_change_the_allowance_and_members_read_it() {
    let app = spawn().await;
    let owner = paid_service(&app, 500).await;
    let member = app.with_user("acme", "member@acme.example", prom_core::access::Role::Member).await;
    let admin = app.with_user("acme", "admin@acme.example", prom_core::access::Role::Admin).await;

    // Nothing approved yet: zeros, and the wallet as funded.
    let untouched = allowance(&member).await;
    assert_eq!(figures(&untouched), ["0", "0", "0", "0", "0"]);
    assert_eq!((&untouched["ledger_allowance"], &untouched["wallet_balance"]), (&json!("0"), &json!("500")));

    let refused = member.put(ALLOWANCE, json!({ "amount": "100" })).await;
    expect_error(&refused, StatusCode::FORBIDDEN, "FORBIDDEN");
    assert_eq!(approve(&admin, json!({ "amount": "100" })).await["approved"], "100");
    assert_eq!(allowance(&member).await["approved"], "100", "members may look");
    assert_eq!(owner.audit("?action=allowance.approve").await.len(), 1);

    // Agent keys do not manage money; unknown services are not found, for reading or writing.
    let (_, key) = owner.create_key("agent").await;
    expect_error(&app.client.get(ALLOWANCE, Cred::ApiKey(&key)).await, StatusCode::FORBIDDEN, "FORBIDDEN");
    expect_error(&app.client.get(ALLOWANCE, Cred::None).await, StatusCode::UNAUTHORIZED, "TOKEN_MISSING");
    for path in ["/v1/services/nope/allowance", "/v1/services/Not%20A%20Slug/allowance"] {
        expect_error(&owner.get(path).await, StatusCode::NOT_FOUND, "NOT_FOUND");
        expect_error(&owner.put(path, json!({ "amount": "1" })).await, StatusCode::NOT_FOUND, "NOT_FOUND");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_amounts_are_refused_with_what_to_send() {
    let app = spawn().await;
    let owner = paid_service(&app, 500).await;
    for body in [
        json!({ "amount": 100 }),
        json!({ "amount": "-5" }),
        json!({ "amount": "1.5" }),
        json!({ "amount": "" }),
        json!({ "amount": "340282366920938463463374607431768211456" }),
        json!({ "amount": "100", "expected_allowance": 0 }),
        json!({}),
        json!({ "amount": "100", "budget": "100" }),
    ] {
        let message =
            expect_error(&owner.put(ALLOWANCE, body.clone()).await, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
        let explains = ["decimal digits", "expected a string", "missing field `amount`", "unknown field `budget`"];
        assert!(explains.iter().any(|hint| message.contains(hint)), "{body}: {message}");
    }
    assert_eq!(figures(&allowance(&owner).await), ["0", "0", "0", "0", "0"], "nothing was approved");
    assert!(owner.audit("?action=allowance.approve").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_must_cover_what_paid_calls_already_committed() {
    let app = spawn().await;
    let owner = paid_service(&app, 10_000).await;
    approve(&owner, json!({ "amount": "1000" })).await;
    let (_, key) = owner.create_key("agent").await;
    for id in 1..=2 {
        assert!(tool_call(&app, "paid", &key, id, "echo").await.get("result").is_some());
    }

    // 200 is captured and waits for settlement: an allowance below it could never pay it.
    let below = owner.put(ALLOWANCE, json!({ "amount": "100" })).await;
    let message = expect_error(&below, StatusCode::CONFLICT, "CONFLICT");
    assert!(message.contains("200"), "{message}");
    let unchanged = allowance(&owner).await;
    assert_eq!(figures(&unchanged), ["1000", "0", "200", "0", "800"]);
    assert_eq!(unchanged["ledger_allowance"], "1000", "the ledger was not touched");
    assert_eq!(approve(&owner, json!({ "amount": "200" })).await["available"], "0", "exactly enough is enough");

    // Once settled, the money has moved: any new allowance is fine, and the settlement went through.
    let report = app.state.settler.settle_once().await;
    assert_eq!((report.settled_amount, report.failed_batches), (Amount::new(2 * PRICE), 0));
    let lowered = approve(&owner, json!({ "amount": "100" })).await;
    assert_eq!(figures(&lowered), ["100", "0", "0", "0", "100"]);
    assert_eq!(lowered["wallet_balance"], "9800");
}

/// Two paid calls captured, and their batch recorded 25 hours ago: past the ledger's 24-hour
/// deduplication window, as when the ledger was out of reach (or refused the batch) for a day.
async fn batch_from_yesterday(app: &TestApp, owner: &TestUser) -> prom_core::charge::Settlement {
    approve(owner, json!({ "amount": "1000" })).await;
    let (_, key) = owner.create_key("agent").await;
    for id in 1..=2 {
        let paid = tool_call(app, "paid", &key, id, "echo").await;
        assert!(paid.get("result").is_some(), "{paid}");
    }
    let yesterday = Timestamp::now().plus_millis(-25 * 3600 * 1000);
    let nanos = u64::try_from(yesterday.as_millis()).expect("after 1970") * 1_000_000;
    let tenant = TenantId::from_trusted(owner.tenant_id.clone());
    let slug = prom_core::service::ServiceSlug::parse("paid").expect("slug");
    app.state
        .store
        .open_settlement(&tenant, &slug, nanos, yesterday, Amount::new(u128::MAX))
        .await
        .expect("record a batch")
        .expect("there is something to settle")
}

/// A batch past the ledger's deduplication window that the ledger never carried out (every
/// earlier call was refused) is answered `TooOld`, and goes again with a new `created_at_time`:
/// it settles once, instead of staying pending forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_older_than_the_ledger_remembers_goes_again_when_it_was_never_carried_out() {
    let app = spawn().await;
    let owner = paid_service(&app, 10_000).await;
    let batch = batch_from_yesterday(&app, &owner).await;
    assert_eq!((batch.amount, batch.in_doubt), (Amount::new(2 * PRICE), false));

    let report = app.state.settler.settle_once().await;
    assert_eq!((report.settled_batches, report.settled_amount), (1, Amount::new(2 * PRICE)), "{report:?}");
    assert_eq!(report.failed_batches, 1, "the first try is refused as too old: {report:?}");
    let after = allowance(&owner).await;
    assert_eq!(figures(&after), ["1000", "0", "0", "200", "800"]);
    assert_eq!((after["ledger_allowance"].as_str(), after["wallet_balance"].as_str()), (Some("800"), Some("9800")));
    assert!(app.state.store.pending_settlements().await.expect("pending").is_empty());
    let again = app.state.settler.settle_once().await;
    assert_eq!(again.settled_batches, 0, "nothing is paid twice: {again:?}");
    assert_eq!(allowance(&owner).await["wallet_balance"], "9800");
}

/// The same batch, but an earlier call for it went unanswered (`in_doubt`): the ledger may have
/// carried it out, and can no longer say. It is not re-submitted (that could pay twice); it stays
/// pending for an operator, and nothing moves on the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_older_than_the_ledger_remembers_is_not_paid_again_when_a_call_went_unanswered() {
    let app = spawn().await;
    let owner = paid_service(&app, 10_000).await;
    let batch = batch_from_yesterday(&app, &owner).await;
    app.state.store.set_settlement_in_doubt(&batch.id, true).await.expect("in doubt");

    for _ in 0..2 {
        let report = app.state.settler.settle_once().await;
        assert_eq!(report.settled_batches, 0, "{report:?}");
    }
    let pending = app.state.store.pending_settlements().await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].created_at_time, pending[0].in_doubt), (batch.created_at_time, true), "not re-dated");
    let after = allowance(&owner).await;
    assert_eq!(figures(&after), ["1000", "0", "200", "0", "800"]);
    assert_eq!((after["ledger_allowance"].as_str(), after["wallet_balance"].as_str()), (Some("1000"), Some("10000")));
}
