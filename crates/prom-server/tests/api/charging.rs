//! Paid tool calls through the gateway: a hold before the upstream is called, a capture when the
//! call succeeds, a release when it fails, and a JSON-RPC `ALLOWANCE_EXCEEDED` error — without
//! calling the upstream — when the allowance cannot cover the price. Under any concurrency and
//! over any number of keys, the allowance is never exceeded. (Runs on PostgreSQL when
//! `PROM_TEST_DATABASE_URL` is set, else on SQLite; `scripts/test` runs both.)

use prom_core::id::TenantId;
use prom_core::money::Amount;
use prom_core::service::ServiceSlug;
use prom_core::time::Timestamp;
use serde_json::Value;

use crate::gateway::{call, mcp_post, register_priced, spawn_upstream};
use crate::support::{Cred, TestApp, TestUser};

const PRICE: u128 = 100;

async fn paid_setup(approved: u128) -> (TestApp, TestUser, crate::gateway::Scripted) {
    let app = TestApp::spawn_with(|c| c.upstream_timeout_secs = 1).await;
    let owner = app.with_owner("acme").await;
    let (url, upstream) = spawn_upstream().await;
    register_priced(
        &app,
        &owner,
        "paid",
        &url,
        &[("echo", PRICE), ("broken", PRICE), ("hang", PRICE), ("stream", PRICE), ("echo-later", PRICE)],
    )
    .await;
    approve(&app, &owner, approved).await;
    (app, owner, upstream)
}

/// Approves in the store directly (as `PUT …/allowance` does after the ledger call) and tells the
/// charge book, as every writer of a budget row outside the book must.
async fn approve(app: &TestApp, owner: &TestUser, amount: u128) {
    approve_until(app, owner, amount, None).await;
}

/// [`approve`], with an expiry.
async fn approve_until(app: &TestApp, owner: &TestUser, amount: u128, expires_at: Option<Timestamp>) {
    let slug = ServiceSlug::parse("paid").expect("slug");
    let approved = Amount::new(amount);
    app.state.store.set_approved(&tenant(owner), &slug, approved, expires_at, None, None, None).await.expect("approve");
    app.state.charges.reload(&tenant(owner), &slug).await.expect("refresh");
}

fn tenant(owner: &TestUser) -> TenantId {
    TenantId::from_trusted(owner.tenant_id.clone())
}

/// The budget as the charge book sees it (holds in flight included).
async fn budget(app: &TestApp, owner: &TestUser) -> prom_core::charge::Budget {
    app.state.charges.budget(&tenant(owner), &ServiceSlug::parse("paid").expect("slug")).await.expect("budget")
}

/// Starts a paid `echo-later` call (answered once the upstream is told) and waits until its hold
/// is placed; the task yields the HTTP response.
async fn held_call_later(
    app: &TestApp,
    owner: &TestUser,
    key: &str,
    id: u64,
) -> tokio::task::JoinHandle<reqwest::Response> {
    let request = app
        .client
        .request(reqwest::Method::POST, "/mcp/paid", Cred::ApiKey(key))
        .header("accept", "application/json, text/event-stream")
        .json(&call(id, "echo-later"));
    let later = tokio::spawn(async move { request.send().await.expect("post") });
    for _ in 0..100 {
        if budget(app, owner).await.held == Amount::new(PRICE) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(budget(app, owner).await.held, Amount::new(PRICE), "the call is held");
    later
}

/// A call's JSON-RPC answer, from a JSON or an SSE body.
async fn answer(response: reqwest::Response) -> Value {
    let sse = response
        .headers()
        .get("content-type")
        .is_some_and(|ct| ct.to_str().unwrap_or("").starts_with("text/event-stream"));
    let text = response.text().await.expect("body");
    if !sse {
        return serde_json::from_str(&text).expect("json");
    }
    text.split("\n\n")
        .filter_map(|event| event.lines().find_map(|line| line.strip_prefix("data: ")))
        .map(|data| serde_json::from_str::<Value>(data).expect("json event"))
        .find(|message| message.get("result").is_some() || message.get("error").is_some())
        .expect("a response event")
}

/// `calls` concurrent paid `echo` calls, spread over `keys` in turn; each task yields the answer.
fn spawn_paid_calls(app: &TestApp, keys: &[String], calls: u64) -> tokio::task::JoinSet<Value> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..calls {
        let client = app.client.clone();
        let key = keys[(i % keys.len() as u64) as usize].clone();
        set.spawn(async move {
            let response = client
                .request(reqwest::Method::POST, "/mcp/paid", Cred::ApiKey(&key))
                .header("accept", "application/json, text/event-stream")
                .json(&call(i, "echo"))
                .send()
                .await
                .expect("post");
            answer(response).await
        });
    }
    set
}

fn upstream_calls(upstream: &crate::gateway::Scripted) -> usize {
    upstream.seen.lock().expect("lock").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_calls_are_charged_until_the_allowance_runs_out() {
    let (app, owner, upstream) = paid_setup(3 * PRICE + 50).await;
    let (_, key) = owner.create_key("agent").await;
    for id in 1..=3 {
        let answer = answer(mcp_post(&app, "paid", Cred::ApiKey(&key), &call(id, "echo"), &[]).await).await;
        assert_eq!(answer["result"]["content"][0]["text"], "hi", "{answer}");
    }
    let refused = mcp_post(&app, "paid", Cred::ApiKey(&key), &call(4, "echo"), &[]).await;
    assert_eq!(refused.status(), 200, "a JSON-RPC error, not an HTTP one");
    let refused = answer(refused).await;
    assert_eq!(refused["id"], 4);
    let data = &refused["error"]["data"];
    assert_eq!(data["code"], "ALLOWANCE_EXCEEDED", "{refused}");
    assert_eq!(data["price"], "100");
    assert_eq!(data["available"], "50");
    assert!(data["manage_url"].as_str().expect("url").ends_with("/app/store/paid"), "{data}");
    assert!(refused["error"]["message"].as_str().expect("message").contains("ALLOWANCE_EXCEEDED"));
    assert_eq!(upstream_calls(&upstream), 3, "a refused call never reaches the upstream");

    let after = budget(&app, &owner).await;
    assert_eq!((after.held, after.unsettled), (Amount::ZERO, Amount::new(3 * PRICE)));

    // Raising the allowance lets calls through again, at once.
    approve(&app, &owner, 10 * PRICE).await;
    let answer = answer(mcp_post(&app, "paid", Cred::ApiKey(&key), &call(5, "echo"), &[]).await).await;
    assert!(answer.get("result").is_some(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_calls_are_released_and_free_tools_need_no_allowance() {
    let (app, owner, upstream) = paid_setup(2 * PRICE).await;
    let (_, key) = owner.create_key("agent").await;
    // isError results, upstream timeouts: the hold is given back.
    let broken = answer(mcp_post(&app, "paid", Cred::ApiKey(&key), &call(1, "broken"), &[]).await).await;
    assert_eq!(broken["result"]["isError"], true);
    let hang = mcp_post(&app, "paid", Cred::ApiKey(&key), &call(2, "hang"), &[]).await;
    assert_eq!(hang.status(), 504);
    let after_failures = budget(&app, &owner).await;
    assert_eq!((after_failures.held, after_failures.unsettled), (Amount::ZERO, Amount::ZERO), "{after_failures:?}");
    // A paid SSE call is captured once its response event is seen.
    let streamed = answer(mcp_post(&app, "paid", Cred::ApiKey(&key), &call(3, "stream"), &[]).await);
    // The scripted stream waits for the test to read its first event; release it.
    upstream.first_event_read.notify_one();
    let streamed = streamed.await;
    assert!(streamed.get("result").is_some(), "{streamed}");
    let after_stream = budget(&app, &owner).await;
    assert_eq!((after_stream.held, after_stream.unsettled), (Amount::ZERO, Amount::new(PRICE)), "{after_stream:?}");

    // A free tool on a service with no allowance at all.
    let free_owner = app.with_owner("free").await;
    let (url, _) = spawn_upstream().await;
    register_priced(&app, &free_owner, "freebie", &url, &[("stream", 5)]).await;
    let (_, free_key) = free_owner.create_key("agent").await;
    let free = answer(mcp_post(&app, "freebie", Cred::ApiKey(&free_key), &call(1, "echo"), &[]).await).await;
    assert_eq!(free["result"]["content"][0]["text"], "hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_over_many_keys_never_overspend() {
    const N: u128 = 10;
    let (app, owner, upstream) = paid_setup(N * PRICE).await;
    let mut keys = Vec::new();
    for i in 0..5 {
        keys.push(owner.create_key(&format!("agent {i}")).await.1);
    }
    // Cold keys are a different test (the verifier); here every key is already verified.
    for key in &keys {
        assert_eq!(app.whoami(key).await.0, reqwest::StatusCode::OK);
    }
    let mut calls = spawn_paid_calls(&app, &keys, 20 * N as u64);
    let (mut served, mut refused) = (0, 0);
    while let Some(result) = calls.join_next().await {
        let answer = result.expect("task");
        if answer.get("result").is_some() {
            served += 1;
        } else {
            assert_eq!(answer["error"]["data"]["code"], "ALLOWANCE_EXCEEDED", "{answer}");
            refused += 1;
        }
    }
    assert_eq!((served, refused), (N, 19 * N));
    assert_eq!(upstream_calls(&upstream) as u128, N, "exactly N calls reached the upstream");
    let after = budget(&app, &owner).await;
    assert_eq!((after.held, after.unsettled), (Amount::ZERO, Amount::new(N * PRICE)), "{after:?}");
}

/// Approvals made while paid calls are being written: each tells the book to re-read the budget
/// row, which must neither drop a capture the book has not written yet (and so let more calls
/// through than approved) nor count one twice (and refuse calls the allowance covers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_during_paid_load_lose_and_double_no_capture() {
    const CALLS: u128 = 300;
    const COVERED: u128 = 100;
    let (app, owner, upstream) = paid_setup(COVERED * PRICE).await;
    let (_, key) = owner.create_key("agent").await;
    let mut calls = spawn_paid_calls(&app, std::slice::from_ref(&key), CALLS as u64);
    // Approve again and again (the same amount) while the calls run.
    let (mut approvals, mut served, mut refused) = (0, 0, 0);
    while !calls.is_empty() {
        approve(&app, &owner, COVERED * PRICE).await;
        approvals += 1;
        while let Some(done) = calls.try_join_next() {
            let answer = done.expect("task");
            if answer.get("result").is_some() {
                served += 1;
            } else {
                assert_eq!(answer["error"]["data"]["code"], "ALLOWANCE_EXCEEDED", "{answer}");
                refused += 1;
            }
        }
        tokio::task::yield_now().await;
    }
    assert!(approvals > 1, "approvals ran during the load");
    assert_eq!((served, refused), (COVERED, CALLS - COVERED));
    assert_eq!(upstream_calls(&upstream) as u128, COVERED);
    let book = budget(&app, &owner).await;
    let stored =
        app.state.store.budget(&tenant(&owner), &ServiceSlug::parse("paid").expect("slug")).await.expect("budget");
    assert_eq!((book.held, book.unsettled), (Amount::ZERO, Amount::new(COVERED * PRICE)), "{book:?}");
    assert_eq!(stored.unsettled, Amount::new(COVERED * PRICE), "the database agrees with the book: {stored:?}");
}

/// A backlog bigger than one settlement batch (1,000 charges) settles in one round, as several
/// bounded batches, each moved on the ledger once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_settles_in_one_round_as_bounded_batches() {
    use prom_core::charge::{ChargeState, NewCharge, ResolvedCharge};
    use prom_server::billing::tenant_wallet;

    let app = TestApp::spawn().await;
    let provider = app.with_owner("provider").await;
    let (url, _upstream) = spawn_upstream().await;
    register_priced(&app, &provider, "paid", &url, &[("echo", 1)]).await;
    let consumer = app.with_owner("consumer").await;
    let wallet = tenant_wallet(&tenant(&consumer));
    app.state.ledger.mint(&wallet, Amount::new(10_000)).await.expect("mint");
    let approved = app
        .client
        .request(reqwest::Method::PUT, "/v1/services/paid/allowance", Cred::Bearer(&consumer.token))
        .json(&serde_json::json!({"amount": "5000"}))
        .send()
        .await
        .expect("put");
    assert_eq!(approved.status(), 200);
    let (key_id, _) = consumer.create_key("agent").await;
    // 2,500 captured calls of 1, written as the charge book writes them.
    let slug = ServiceSlug::parse("paid").expect("slug");
    let now = prom_core::time::Timestamp::now();
    let charges: Vec<ResolvedCharge> = (0..2_500)
        .map(|_| ResolvedCharge {
            charge: NewCharge {
                id: prom_core::id::ChargeId::new(),
                tenant_id: tenant(&consumer),
                service: slug.clone(),
                key_id: prom_core::id::KeyId::from_trusted(key_id.clone()),
                tool: "echo".into(),
                amount: Amount::new(1),
                at: now,
                cap: None,
            },
            state: ChargeState::Captured,
            resolved_at: now,
        })
        .collect();
    app.state.store.record_resolved(&charges, &[], now).await.expect("charges");
    app.state.charges.reload(&tenant(&consumer), &slug).await.expect("refresh");

    let report = app.state.settler.settle_once().await;
    assert_eq!((report.settled_batches, report.settled_amount), (3, Amount::new(2_500)));
    assert_eq!(app.state.ledger.balance_of(&wallet).await.expect("balance"), Amount::new(10_000 - 2_500));
    let budget = app.state.store.budget(&tenant(&consumer), &slug).await.expect("budget");
    assert_eq!((budget.unsettled, budget.settled), (Amount::ZERO, Amount::new(2_500)));
    assert_eq!(app.state.settler.settle_once().await.settled_batches, 0, "nothing is settled twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_moves_exactly_what_was_charged_once_even_across_a_crash() {
    use prom_core::ledger::{AllowanceArgs, ApproveArgs, Memo, TransferFromArgs};
    use prom_server::billing::{PLATFORM_OWNER, platform_spender, tenant_owner, tenant_wallet};

    let app = TestApp::spawn().await;
    let provider = app.with_owner("provider").await;
    let (url, _upstream) = spawn_upstream().await;
    register_priced(&app, &provider, "paid", &url, &[("echo", PRICE)]).await;
    let consumer = app.with_owner("consumer").await;
    let wallet = tenant_wallet(&tenant(&consumer));
    let provider_wallet = tenant_wallet(&tenant(&provider));
    app.state.ledger.mint(&wallet, Amount::new(10_000)).await.expect("mint");

    // The consumer approves 1000 through the API (the ledger approve and the budget).
    let approved = app
        .client
        .request(reqwest::Method::PUT, "/v1/services/paid/allowance", Cred::Bearer(&consumer.token))
        .json(&serde_json::json!({"amount": "1000"}))
        .send()
        .await
        .expect("put");
    assert_eq!(approved.status(), 200, "{}", approved.text().await.unwrap_or_default());
    let (_, key) = consumer.create_key("agent").await;
    for id in 1..=3 {
        let answer = answer(mcp_post(&app, "paid", Cred::ApiKey(&key), &call(id, "echo"), &[]).await).await;
        assert!(answer.get("result").is_some(), "{answer}");
    }

    let report = app.state.settler.settle_once().await;
    assert_eq!((report.settled_batches, report.settled_amount), (1, Amount::new(3 * PRICE)));
    assert_eq!(app.state.ledger.balance_of(&wallet).await.expect("balance"), Amount::new(10_000 - 3 * PRICE));
    assert_eq!(app.state.ledger.balance_of(&provider_wallet).await.expect("balance"), Amount::new(3 * PRICE));
    let spender = platform_spender(&ServiceSlug::parse("paid").expect("slug"));
    let on_ledger = app
        .state
        .ledger
        .allowance(AllowanceArgs { account: wallet.clone(), spender: spender.clone() })
        .await
        .expect("allowance");
    assert_eq!(on_ledger.allowance, Amount::new(1000 - 3 * PRICE), "transfer_from consumed the allowance");
    let settled =
        app.state.store.budget(&tenant(&consumer), &ServiceSlug::parse("paid").expect("slug")).await.expect("budget");
    assert_eq!((settled.unsettled, settled.settled), (Amount::ZERO, Amount::new(3 * PRICE)));
    assert_eq!(
        settled.available(prom_core::time::Timestamp::now(), prom_core::charge::ExpiryMargins::NONE).expect("sums"),
        Amount::new(1000 - 3 * PRICE)
    );
    assert_eq!(app.state.settler.settle_once().await.settled_batches, 0, "nothing is settled twice");

    // A crash between the ledger call and its record: the batch is recorded, the ledger applied
    // it, the record of success was lost. The next round re-submits and gets Duplicate.
    for id in 4..=5 {
        let answer = answer(mcp_post(&app, "paid", Cred::ApiKey(&key), &call(id, "echo"), &[]).await).await;
        assert!(answer.get("result").is_some(), "{answer}");
    }
    let slug = ServiceSlug::parse("paid").expect("slug");
    let batch = app
        .state
        .store
        .open_settlement(&tenant(&consumer), &slug, now_nanos(), Timestamp::now(), Amount::new(u128::MAX))
        .await
        .expect("open")
        .expect("a batch");
    assert_eq!(batch.amount, Amount::new(2 * PRICE));
    let applied = app
        .state
        .ledger
        .transfer_from(
            PLATFORM_OWNER,
            TransferFromArgs {
                spender_subaccount: spender.subaccount,
                from: wallet.clone(),
                to: provider_wallet.clone(),
                amount: batch.amount,
                fee: None,
                memo: Memo::new(batch.id.as_str().replace('-', "").into_bytes()).ok(),
                created_at_time: Some(batch.created_at_time),
            },
        )
        .await
        .expect("ledger");
    assert!(applied.is_ok(), "{applied:?}");
    let report = app.state.settler.settle_once().await;
    assert_eq!((report.settled_batches, report.settled_amount), (1, Amount::new(2 * PRICE)));
    assert_eq!(
        app.state.ledger.balance_of(&wallet).await.expect("balance"),
        Amount::new(10_000 - 5 * PRICE),
        "charged once"
    );
    assert_eq!(app.state.ledger.balance_of(&provider_wallet).await.expect("balance"), Amount::new(5 * PRICE));

    // The user lowers the allowance on the ledger directly: the next round caps the budget, and
    // paid calls stop at what the ledger will still pay.
    let lowered = app
        .state
        .ledger
        .approve(
            &tenant_owner(&tenant(&consumer)),
            ApproveArgs {
                from_subaccount: None,
                spender,
                amount: Amount::new(PRICE),
                expected_allowance: None,
                expires_at: None,
                fee: None,
                memo: None,
                created_at_time: None,
            },
        )
        .await
        .expect("ledger");
    assert!(lowered.is_ok());
    app.state.settler.settle_once().await;
    let capped = app.state.store.budget(&tenant(&consumer), &slug).await.expect("budget");
    assert_eq!(
        capped.available(prom_core::time::Timestamp::now(), prom_core::charge::ExpiryMargins::NONE).expect("sums"),
        Amount::new(PRICE),
        "{capped:?}"
    );
    assert_eq!(capped.approved, Amount::new(1000), "the cap never rewrites what the person approved");
    assert_eq!(capped.ledger_cap, Some(Amount::new(PRICE)), "{capped:?}");
    assert!(
        answer(mcp_post(&app, "paid", Cred::ApiKey(&key), &call(6, "echo"), &[]).await).await.get("result").is_some()
    );
    let refused = answer(mcp_post(&app, "paid", Cred::ApiKey(&key), &call(7, "echo"), &[]).await).await;
    assert_eq!(refused["error"]["data"]["code"], "ALLOWANCE_EXCEEDED", "{refused}");
}

fn now_nanos() -> u64 {
    u64::try_from(prom_core::time::Timestamp::now().as_millis()).expect("after 1970") * 1_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_of_calls_that_died_with_the_process_are_released_at_start() {
    use prom_core::charge::{ChargeOp, ChargeOpResult, NewCharge};
    use prom_core::id::{ChargeId, KeyId};
    use prom_core::time::Timestamp;

    let (app, owner, _upstream) = paid_setup(10 * PRICE).await;
    let (key_id, _) = owner.create_key("agent").await;
    let hold = NewCharge {
        id: ChargeId::new(),
        tenant_id: tenant(&owner),
        service: ServiceSlug::parse("paid").expect("slug"),
        key_id: KeyId::parse(&key_id).expect("key id"),
        tool: "echo".into(),
        amount: Amount::new(PRICE),
        at: Timestamp::now(),
        cap: None,
    };
    let placed = app
        .state
        .store
        .apply_charges(&[ChargeOp::Reserve(hold)], Timestamp::now(), prom_core::charge::ExpiryMargins::NONE)
        .await
        .expect("hold");
    assert_eq!(placed, vec![ChargeOpResult::Held]);
    // Placed in the database, as a node sharing it (or an earlier process) would: read it there.
    let slug = ServiceSlug::parse("paid").expect("slug");
    assert_eq!(app.state.store.budget(&tenant(&owner), &slug).await.expect("budget").held, Amount::new(PRICE));
    // What `AppState::build` does at start: the hold's request cannot be alive any more.
    let released = app.state.store.release_stale_holds(Timestamp::now().plus_seconds(1)).await.expect("release");
    assert_eq!(released, 1);
    let after = app.state.store.budget(&tenant(&owner), &slug).await.expect("budget");
    assert_eq!((after.held, after.unsettled), (Amount::ZERO, Amount::ZERO));
    assert_eq!(app.state.store.release_stale_holds(Timestamp::now().plus_seconds(1)).await.expect("again"), 0);
}

/// A call held in time that ends within the capture margin of the allowance's expiry could not be
/// settled before the ledger stops honouring the allowance: it is released, its result withheld,
/// and new calls are refused as expiring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_ending_too_close_to_the_expiry_is_released_and_its_result_withheld() {
    let (app, owner, upstream) = paid_setup(10 * PRICE).await;
    let (_, key) = owner.create_key("agent").await;
    let margins = app.state.charges.margins();
    // The stream's result waits for the test: meanwhile the allowance is re-approved to expire
    // within the capture margin.
    let streamed = mcp_post(&app, "paid", Cred::ApiKey(&key), &call(1, "stream"), &[]).await;
    assert_eq!(budget(&app, &owner).await.held, Amount::new(PRICE), "the call is held");
    let within_the_capture_margin = Timestamp::now().plus_millis(margins.capture_ms / 2);
    approve_until(&app, &owner, 10 * PRICE, Some(within_the_capture_margin)).await;
    upstream.first_event_read.notify_one();
    // The body is cut off before the result: the agent never gets what it was not charged for.
    let body = streamed.text().await.unwrap_or_default();
    assert!(!body.contains("\"result\""), "the result was withheld: {body}");
    let after = budget(&app, &owner).await;
    assert_eq!((after.held, after.unsettled), (Amount::ZERO, Amount::ZERO), "released, not captured: {after:?}");

    // A JSON answer is held back whole, so the agent is told why instead of reading a cut body.
    approve(&app, &owner, 10 * PRICE).await;
    let later = held_call_later(&app, &owner, &key, 2).await;
    let within_the_capture_margin = Timestamp::now().plus_millis(margins.capture_ms / 2);
    approve_until(&app, &owner, 10 * PRICE, Some(within_the_capture_margin)).await;
    upstream.first_event_read.notify_one();
    let told = answer(later.await.expect("the call's task")).await;
    assert_eq!(told["id"], 2, "{told}");
    assert_eq!(told["error"]["data"]["code"], "ALLOWANCE_EXCEEDED", "{told}");
    assert_eq!(told["error"]["data"]["expiring"], true, "{told}");
    let after = budget(&app, &owner).await;
    assert_eq!((after.held, after.unsettled), (Amount::ZERO, Amount::ZERO), "released, not captured: {after:?}");

    // New calls are refused as expiring, without reaching the upstream.
    let calls_before = upstream_calls(&upstream);
    let refused = answer(mcp_post(&app, "paid", Cred::ApiKey(&key), &call(3, "echo"), &[]).await).await;
    assert_eq!(refused["error"]["data"]["code"], "ALLOWANCE_EXCEEDED", "{refused}");
    assert_eq!(refused["error"]["data"]["expiring"], true, "{refused}");
    assert_eq!(upstream_calls(&upstream), calls_before);
}

/// Lowering the allowance: while the approval is on its way to the ledger, paid calls go on, and
/// a ceiling keeps what they hold and capture within the new amount (without it, calls starting
/// meanwhile could commit more than the lowered allowance covers). A refused approval lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_the_allowance_caps_new_holds_before_the_ledger_is_asked() {
    let (app, owner, upstream) = paid_setup(10 * PRICE).await;
    // Funds behind the approvals made through the API below (which bound holds by the wallet).
    let wallet = prom_server::billing::tenant_wallet(&tenant(&owner));
    app.state.ledger.mint(&wallet, Amount::new(10_000)).await.expect("mint");
    let (_, key) = owner.create_key("agent").await;
    let slug = ServiceSlug::parse("paid").expect("slug");
    let served = answer(mcp_post(&app, "paid", Cred::ApiKey(&key), &call(1, "echo"), &[]).await).await;
    assert_eq!(served["result"]["content"][0]["text"], "hi", "{served}");
    let later = held_call_later(&app, &owner, &key, 2).await;

    // The moment `PUT …/allowance` to 300 has set its ceiling and is waiting for the ledger.
    app.state.store.set_ceiling(&tenant(&owner), &slug, Some(Amount::new(3 * PRICE))).await.expect("ceiling");
    app.state.charges.reload(&tenant(&owner), &slug).await.expect("refresh");
    let within = answer(mcp_post(&app, "paid", Cred::ApiKey(&key), &call(3, "echo"), &[]).await).await;
    assert_eq!(within["result"]["content"][0]["text"], "hi", "held + unsettled reach the ceiling: {within}");
    let beyond = answer(mcp_post(&app, "paid", Cred::ApiKey(&key), &call(4, "echo"), &[]).await).await;
    assert_eq!(
        beyond["error"]["data"]["code"], "ALLOWANCE_EXCEEDED",
        "the old approval has room, the new one not: {beyond}"
    );
    assert_eq!(beyond["error"]["data"]["available"], "0", "{beyond}");

    // The approval itself: what is committed (held 100 + unsettled 200) fits in 300.
    let path = "/v1/services/paid/allowance";
    let (status, view) = owner.put(path, serde_json::json!({ "amount": "300" })).await;
    assert_eq!(status, 200, "{view}");
    let after = budget(&app, &owner).await;
    assert_eq!((after.approved, after.ceiling), (Amount::new(3 * PRICE), None), "{after:?}");
    upstream.first_event_read.notify_one();
    let told = answer(later.await.expect("the call's task")).await;
    assert_eq!(told["result"]["content"][0]["text"], "later", "{told}");
    let after = budget(&app, &owner).await;
    assert_eq!((after.held, after.unsettled), (Amount::ZERO, Amount::new(3 * PRICE)), "{after:?}");

    // Below what is committed: refused, and the ceiling it set is lifted again.
    let (status, refused) = owner.put(path, serde_json::json!({ "amount": "250" })).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(budget(&app, &owner).await.ceiling, None, "a refused approval leaves no ceiling behind");
    let (status, raised) = owner.put(path, serde_json::json!({ "amount": "1000" })).await;
    assert_eq!(status, 200, "{raised}");
    let again = answer(mcp_post(&app, "paid", Cred::ApiKey(&key), &call(5, "echo"), &[]).await).await;
    assert_eq!(again["result"]["content"][0]["text"], "hi", "{again}");
}
