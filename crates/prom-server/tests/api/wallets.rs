//! One wallet behind several budgets: a tenant may approve each service for the whole of its
//! wallet (ICRC-2 allows it), but the services together never commit more than the wallet can
//! pay, fees included — under concurrent load on every service at once, and while the settler
//! drains the wallet round after round. After each: paid results delivered = captures, every
//! settled unit reaches the publisher, and nothing is left owed that the wallet cannot pay.

use prom_core::id::TenantId;
use prom_core::money::Amount;
use prom_server::billing::tenant_wallet;
use serde_json::{Value, json};

use crate::gateway::{call, mcp_post, register_priced, spawn_upstream};
use crate::support::{Cred, TestApp, TestUser};

const PRICE: u128 = 100;
const FEE: u128 = 10;

fn tenant(user: &TestUser) -> TenantId {
    TenantId::from_trusted(user.tenant_id.clone())
}

async fn balance(app: &TestApp, user: &TestUser) -> u128 {
    app.state.ledger.balance_of(&tenant_wallet(&tenant(user))).await.expect("balance").units()
}

/// `n` paid calls of `slug` at once; how many got a result (the others must be refused for money).
async fn paid_calls(app: &TestApp, key: &str, slug: &str, first_id: u64, n: u64) -> u128 {
    let calls = (first_id..first_id + n).map(|id| async move {
        let response = mcp_post(app, slug, Cred::ApiKey(key), &call(id, "echo"), &[]).await;
        let body: Value = response.json().await.expect("json");
        if body.get("result").is_some() {
            1
        } else {
            assert_eq!(body["error"]["data"]["code"], "ALLOWANCE_EXCEEDED", "{body}");
            0
        }
    });
    futures_util::future::join_all(calls).await.into_iter().sum()
}

async fn figures(consumer: &TestUser, slug: &str) -> Value {
    let (status, body) = consumer.get(&format!("/v1/services/{slug}/allowance")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Before: each budget was bounded by the whole balance, so two services approved for the whole
/// wallet bought twice what it held, and the publisher was never paid for half of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_approved_for_the_whole_wallet_share_it() {
    let app = TestApp::spawn_with_fee(FEE, |_| {}).await;
    let publisher = app.with_owner("publisher").await;
    let (url, _upstream) = spawn_upstream().await;
    for slug in ["alpha", "beta"] {
        register_priced(&app, &publisher, slug, &url, &[("echo", PRICE)]).await;
    }
    let consumer = app.with_owner("consumer").await;
    app.state.ledger.mint(&tenant_wallet(&tenant(&consumer)), Amount::new(1_000)).await.expect("mint");
    for slug in ["alpha", "beta"] {
        let (status, body) = consumer.put(&format!("/v1/services/{slug}/allowance"), json!({"amount": "1000"})).await;
        assert_eq!(status, 200, "{body}");
    }
    // Two approval fees paid: 980 left, two settlement fees set aside, 960 shared evenly.
    for slug in ["alpha", "beta"] {
        let view = figures(&consumer, slug).await;
        assert_eq!((view["ledger_cap"].as_str(), view["available"].as_str()), (Some("480"), Some("480")), "{view}");
    }
    let (_, key) = consumer.create_key("agent").await;
    let (a, b) = tokio::join!(paid_calls(&app, &key, "alpha", 0, 12), paid_calls(&app, &key, "beta", 100, 12));
    assert_eq!((a, b), (4, 4), "each service gets its slice, no more");

    // One round settles both and cuts the wallet again: 980 - 800 - 2 fees = 160, less two fees
    // set aside for the next settlements: 70 each, no room for a call of 100.
    let report = app.state.settler.settle_once().await;
    assert_eq!((report.settled_batches, report.settled_amount), (2, Amount::new(8 * PRICE)), "{report:?}");
    assert_eq!(balance(&app, &publisher).await, 8 * PRICE, "every delivered result was paid for");
    assert_eq!(balance(&app, &consumer).await, 980 - 8 * PRICE - 2 * FEE);
    for slug in ["alpha", "beta"] {
        let view = figures(&consumer, slug).await;
        assert_eq!((view["unsettled"].as_str(), view["ledger_cap"].as_str()), (Some("0"), Some("70")), "{view}");
        assert_eq!(view["available"], "70", "{view}");
    }
    let (a, b) = tokio::join!(paid_calls(&app, &key, "alpha", 200, 3), paid_calls(&app, &key, "beta", 300, 3));
    assert_eq!(a + b, 0);

    // Funded again: the next cut gives both services room at once.
    app.state.ledger.mint(&tenant_wallet(&tenant(&consumer)), Amount::new(1_000)).await.expect("mint");
    app.state.settler.settle_once().await;
    let (a, b) = tokio::join!(paid_calls(&app, &key, "alpha", 400, 3), paid_calls(&app, &key, "beta", 500, 3));
    assert_eq!((a, b), (3, 3));
}

/// The wallet runs dry under load while the settler pays round after round: calls stop where the
/// wallet does, every result delivered is settled to the publisher, and nothing is left owed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_that_runs_dry_mid_load_owes_nothing_it_cannot_pay() {
    let app = TestApp::spawn_with_fee(FEE, |_| {}).await;
    let publisher = app.with_owner("publisher").await;
    let (url, _upstream) = spawn_upstream().await;
    register_priced(&app, &publisher, "paid", &url, &[("echo", PRICE)]).await;
    let consumer = app.with_owner("consumer").await;
    app.state.ledger.mint(&tenant_wallet(&tenant(&consumer)), Amount::new(2_000)).await.expect("mint");
    let (status, body) = consumer.put("/v1/services/paid/allowance", json!({"amount": "1000000"})).await;
    assert_eq!(status, 200, "{body}");
    let (_, key) = consumer.create_key("agent").await;

    let settling = tokio::spawn({
        let settler = app.state.settler.clone();
        async move {
            let mut batches = 0;
            for _ in 0..60 {
                batches += settler.settle_once().await.settled_batches;
                tokio::time::sleep(std::time::Duration::from_millis(15)).await;
            }
            batches
        }
    });
    let mut delivered = 0;
    for wave in 0..15 {
        delivered += paid_calls(&app, &key, "paid", wave * 10, 6).await;
    }
    let mut batches = settling.await.expect("settler");
    batches += app.state.settler.settle_once().await.settled_batches;

    let view = figures(&consumer, "paid").await;
    assert_eq!((view["held"].as_str(), view["unsettled"].as_str()), (Some("0"), Some("0")), "all paid: {view}");
    assert_eq!(view["settled"], (delivered * PRICE).to_string(), "results delivered = captures settled");
    assert_eq!(balance(&app, &publisher).await, delivered * PRICE, "each settled unit reached the publisher");
    let spent = delivered * PRICE + batches as u128 * FEE;
    assert_eq!(balance(&app, &consumer).await, 2_000 - FEE - spent, "the wallet paid the calls and the fees");
    assert!(delivered >= 10, "the wallet paid for most of what it held: {delivered}");
}
