//! Holds backed by funds: an approval larger than the wallet is allowed (ICRC-2 allows it), but paid
//! calls stop at what the wallet can pay, less the fee of the settlement that pays them; the
//! allowance view says why; a re-approval never hides what is owed; and every settled unit reaches
//! the publisher. Run with a ledger fee of 0 and above 0.

use prom_core::id::TenantId;
use prom_core::money::Amount;
use prom_core::service::ServiceSlug;
use prom_server::billing::tenant_wallet;
use serde_json::{Value, json};

use crate::gateway::{call, mcp_post, register_priced, spawn_upstream};
use crate::support::{Cred, TestApp, TestUser};

const PRICE: u128 = 100;

struct Setup {
    app: TestApp,
    publisher: TestUser,
    consumer: TestUser,
    key: String,
}

async fn setup(fee: u128) -> Setup {
    let app = TestApp::spawn_with_fee(fee, |_| {}).await;
    let publisher = app.with_owner("publisher").await;
    let (url, _upstream) = spawn_upstream().await;
    register_priced(&app, &publisher, "paid", &url, &[("echo", PRICE)]).await;
    let consumer = app.with_owner("consumer").await;
    let (_, key) = consumer.create_key("agent").await;
    Setup { app, publisher, consumer, key }
}

fn tenant(user: &TestUser) -> TenantId {
    TenantId::from_trusted(user.tenant_id.clone())
}

async fn balance(s: &Setup, user: &TestUser) -> u128 {
    s.app.state.ledger.balance_of(&tenant_wallet(&tenant(user))).await.expect("balance").units()
}

async fn mint(s: &Setup, amount: u128) {
    s.app.state.ledger.mint(&tenant_wallet(&tenant(&s.consumer)), Amount::new(amount)).await.expect("mint");
}

async fn allowance(s: &Setup) -> Value {
    let (status, body) = s.consumer.get("/v1/services/paid/allowance").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Paid calls made at once; how many got a result.
async fn paid_calls(s: &Setup, n: u64) -> usize {
    let calls = (0..n).map(|id| {
        let app = &s.app;
        let key = s.key.clone();
        async move {
            let response = mcp_post(app, "paid", Cred::ApiKey(&key), &call(id, "echo"), &[]).await;
            let body: Value = response.json().await.expect("json");
            if body.get("result").is_some() {
                1
            } else {
                assert_eq!(body["error"]["data"]["code"], "ALLOWANCE_EXCEEDED", "{body}");
                0
            }
        }
    });
    futures_util::future::join_all(calls).await.into_iter().sum()
}

/// held + unsettled + settled stays within the approval, and within what the wallet can pay.
async fn assert_funded(s: &Setup) {
    let budget = s
        .app
        .state
        .charges
        .budget(&tenant(&s.consumer), &ServiceSlug::parse("paid").expect("slug"))
        .await
        .expect("budget");
    budget.check().expect("the budget adds up");
    if let Some(cap) = budget.ledger_cap {
        assert!(budget.open().expect("open") <= cap, "open calls past what the wallet can pay: {budget:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_wallet_buys_nothing_whatever_was_approved() {
    let s = setup(0).await;
    let (status, body) = s.consumer.put("/v1/services/paid/allowance", json!({"amount": "1000000"})).await;
    assert_eq!(status, 200, "approving more than the wallet holds is allowed: {body}");
    assert_eq!(body["approved"], "1000000");
    assert_eq!(body["ledger_cap"], "0", "{body}");
    assert_eq!(body["available"], "0", "{body}");
    assert_eq!(body["stopped_by"], "wallet", "{body}");
    assert_eq!(paid_calls(&s, 20).await, 0, "a wallet of 0 pays for nothing");

    // Funded with 250: exactly two calls of 100 fit, however many are made at once.
    mint(&s, 250).await;
    s.app.state.settler.settle_once().await;
    assert_eq!(allowance(&s).await["ledger_cap"], "250");
    assert_eq!(paid_calls(&s, 20).await, 2);
    assert_funded(&s).await;
    let view = allowance(&s).await;
    assert_eq!((view["available"].as_str(), view["approved"].as_str()), (Some("50"), Some("1000000")), "{view}");

    // Approving again does not hide what is owed, nor buy more without funds.
    let (status, body) = s.consumer.put("/v1/services/paid/allowance", json!({"amount": "2000000"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["unsettled"], "200", "{body}");
    assert_eq!(paid_calls(&s, 5).await, 0, "the wallet holds 250, 200 of it owed");
    assert_funded(&s).await;

    s.app.state.settler.settle_once().await;
    assert_eq!(balance(&s, &s.publisher).await, 2 * PRICE, "every settled unit reaches the publisher");
    assert_eq!(balance(&s, &s.consumer).await, 50);
    assert_eq!(allowance(&s).await["unsettled"], "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settlement_fee_is_reserved_before_calls_are_held() {
    const FEE: u128 = 10;
    let s = setup(FEE).await;
    let (status, body) = s.consumer.put("/v1/services/paid/allowance", json!({"amount": "1000"})).await;
    assert_eq!(status, 400, "the approval's own fee needs funds: {body}");
    mint(&s, 1000).await;
    let (status, body) = s.consumer.put("/v1/services/paid/allowance", json!({"amount": "1000"})).await;
    assert_eq!(status, 200, "{body}");
    // The approval paid its fee (990 left); one settlement fee is kept aside: 980 for calls.
    assert_eq!(body["ledger_cap"], "980", "{body}");
    assert_eq!(paid_calls(&s, 12).await, 9);
    assert_funded(&s).await;

    let report = s.app.state.settler.settle_once().await;
    assert_eq!((report.settled_batches, report.settled_amount), (1, Amount::new(9 * PRICE)));
    assert_eq!(balance(&s, &s.publisher).await, 9 * PRICE, "the publisher gets every captured unit");
    assert_eq!(balance(&s, &s.consumer).await, 990 - 9 * PRICE - FEE, "the consumer paid the calls and one fee");
    // The allowance has 1000 - 910 = 90 left and the wallet 80: less one fee, 70; no call fits.
    assert_eq!(allowance(&s).await["ledger_cap"], "70");
    assert_eq!(paid_calls(&s, 3).await, 0);
    assert_funded(&s).await;
}

/// A publisher deletes a service while consumers owe it money, and another tenant wants the
/// slug: it waits until the first publisher is paid, and then inherits no allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_slug_pays_its_publisher_and_its_successor_inherits_no_allowance() {
    let s = setup(0).await;
    mint(&s, 10_000).await;
    let (status, body) = s.consumer.put("/v1/services/paid/allowance", json!({"amount": "1000"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(paid_calls(&s, 2).await, 2);
    let (status, body) = s.publisher.delete("/v1/services/paid").await;
    assert_eq!(status, 204, "{body}");

    // Another tenant asks for the slug (at eight times the price) while 200 is owed: refused.
    let (url, _upstream) = spawn_upstream().await;
    let successor = s.app.with_owner("successor").await;
    let body = json!({"slug": "paid", "name": "Paid again", "upstream": {"url": url}, "prices": {"echo": "800"}});
    let (status, refused) = successor.post("/v1/services", body.clone()).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["error"]["message"].as_str().is_some_and(|m| m.contains("not all settled")), "{refused}");

    // Settlement pays the publisher that served the calls, though its service is gone.
    s.app.state.settler.settle_once().await;
    assert_eq!(balance(&s, &s.publisher).await, 2 * PRICE);
    let (status, created) = successor.post("/v1/services", body).await;
    assert_eq!(status, 201, "free once nothing is owed: {created}");

    // The consumer's old approval does not carry over to the new service.
    assert_eq!(paid_calls(&s, 1).await, 0, "no inherited allowance");
    let view = allowance(&s).await;
    assert_eq!(view["available"], "0", "{view}");
    let (status, body) = s.consumer.put("/v1/services/paid/allowance", json!({"amount": "1600"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(paid_calls(&s, 2).await, 2);
    s.app.state.settler.settle_once().await;
    assert_eq!(balance(&s, &successor).await, 2 * 800, "the successor is paid for its own calls only");
    assert_eq!(balance(&s, &s.publisher).await, 2 * PRICE, "and the first publisher keeps what it earned");
}

/// A publisher raises a price while a consumer holds an allowance: the consumer goes on paying
/// what it approved until it approves again; a newly priced tool waits for its approval; a price
/// cut applies at once; and both tenants' audit logs show the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_raised_applies_to_a_consumer_only_once_it_approves_again() {
    let s = setup(0).await;
    mint(&s, 100_000).await;
    let (status, body) = s.consumer.put("/v1/services/paid/allowance", json!({"amount": "10000"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["prices_in_force"], json!({"echo": "100"}), "{body}");
    assert_eq!(paid_calls(&s, 1).await, 1);

    let raise = json!({"prices": {"echo": "800", "stream": "50"}});
    let (status, body) = s.publisher.patch("/v1/services/paid", raise).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(paid_calls(&s, 1).await, 1);
    let view = allowance(&s).await;
    assert_eq!(view["unsettled"], "200", "the raise does not apply without consent: {view}");
    assert_eq!(view["prices_in_force"], json!({"echo": "100"}), "{view}");
    assert_eq!(
        view["pending_increases"],
        json!([{"tool": "echo", "approved": "100", "price": "800"}, {"tool": "stream", "approved": null, "price": "50"}]),
        "{view}"
    );
    let refused = mcp_post(&s.app, "paid", Cred::ApiKey(&s.key), &call(9, "stream"), &[]).await;
    let refused: Value = refused.json().await.expect("json");
    assert_eq!(refused["error"]["data"]["reason"], "price_not_approved", "{refused}");

    let changes = s.consumer.audit("?action=service.price_change").await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["actor"]["type"], "publisher", "{changes:?}");
    assert_eq!(changes[0]["details"]["after"]["echo"], "800", "{changes:?}");
    let updates = s.publisher.audit("?action=service.update").await;
    assert_eq!(updates[0]["details"]["prices"]["after"]["echo"], "800", "{updates:?}");

    // Approving again accepts the new prices.
    let (status, body) = s.consumer.put("/v1/services/paid/allowance", json!({"amount": "10000"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pending_increases"], json!([]), "{body}");
    assert_eq!(paid_calls(&s, 1).await, 1);
    assert_eq!(allowance(&s).await["unsettled"], "1000");

    // A cut applies at once.
    let (status, body) =
        s.publisher.patch("/v1/services/paid", json!({"prices": {"echo": "30", "stream": "50"}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(paid_calls(&s, 1).await, 1);
    assert_eq!(allowance(&s).await["unsettled"], "1030");
    assert_funded(&s).await;
}
