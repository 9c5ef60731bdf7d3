//! Paid calls whose result has `isError: true`: released (not charged) unless the service's
//! publisher turned `charge_tool_errors` on, with `POST /v1/services` or `PATCH`; every caller
//! who can see the service, agents included, sees the setting; a value that is not a boolean is
//! refused. (Runs on PostgreSQL when `PROM_TEST_DATABASE_URL` is set, else on SQLite.)

use std::time::Duration;

use prom_core::id::TenantId;
use prom_core::money::Amount;
use prom_core::service::ServiceSlug;
use prom_core::time::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::allowance::{PRICE, approve, fund, spawn, tool_call};
use crate::gateway::{Scripted, call, spawn_upstream};
use crate::support::{Cred, TestApp, TestUser, actions, expect_error};

const PAID: &str = "/v1/services/paid";

/// Service `paid` published through the API by tenant `publisher` (tools `echo`, `broken` and
/// `broken-later` at [`PRICE`], and the fields of `extra` in the request), and tenant `acme` that
/// approved 1000 for it and has an agent key.
struct Paid {
    app: TestApp,
    publisher: TestUser,
    consumer: TestUser,
    key: String,
    upstream: Scripted,
    /// What `POST /v1/services` answered.
    created: Value,
}

async fn paid(extra: Value) -> Paid {
    let app = spawn().await;
    let publisher = app.with_owner("publisher").await;
    let (url, upstream) = spawn_upstream().await;
    let price = PRICE.to_string();
    let mut body = json!({
        "slug": "paid",
        "name": "Paid",
        "upstream": { "url": url },
        "prices": { "echo": price, "broken": price, "broken-later": price },
    });
    for (field, value) in extra.as_object().cloned().unwrap_or_default() {
        body[field] = value;
    }
    let (status, created) = publisher.post("/v1/services", body).await;
    assert_eq!(status, StatusCode::CREATED, "publishing failed: {created}");
    let consumer = app.with_owner("acme").await;
    fund(&app, &consumer, 10_000).await;
    approve(&consumer, json!({ "amount": "1000" })).await;
    let (_, key) = consumer.create_key("agent").await;
    Paid { app, publisher, consumer, key, upstream, created }
}

impl Paid {
    /// A `broken` call: its result (`isError: true`) reaches the agent either way.
    async fn broken_call(&self, id: u64) {
        let answer = tool_call(&self.app, "paid", &self.key, id, "broken").await;
        assert_eq!(answer["result"]["isError"], true, "{answer}");
    }

    /// (held, unsettled) of the consumer's allowance for `paid`.
    async fn held_and_unsettled(&self) -> (String, String) {
        let (status, view) = self.consumer.get(&format!("{PAID}/allowance")).await;
        assert_eq!(status, StatusCode::OK, "reading the allowance failed: {view}");
        let figure = |field: &str| view[field].as_str().unwrap_or_else(|| panic!("{field} in {view}")).to_owned();
        (figure("held"), figure("unsettled"))
    }

    /// The consumer's budget as the charge book sees it (holds in flight included).
    async fn book_budget(&self) -> prom_core::charge::Budget {
        let tenant = TenantId::from_trusted(self.consumer.tenant_id.clone());
        let slug = ServiceSlug::parse("paid").expect("slug");
        self.app.state.charges.budget(&tenant, &slug).await.expect("the budget")
    }

    /// What `GET /v1/usage` says the consumer was charged, once its `calls` requests are recorded
    /// (usage is written off the request path).
    async fn charged_after(&self, calls: u64) -> String {
        for _ in 0..50 {
            self.app.flush_usage().await;
            let (status, report) = self.consumer.get("/v1/usage").await;
            assert_eq!(status, StatusCode::OK, "reading usage failed: {report}");
            if report["calls"] == calls {
                return report["charged"].as_str().unwrap_or_else(|| panic!("charged in {report}")).to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the usage report never reached {calls} calls");
    }

    /// The setting as the publisher, another tenant, and an agent key each read it, from the
    /// service and from the list.
    async fn setting_as_seen(&self) -> Vec<Value> {
        let mut seen = Vec::new();
        for cred in [self.publisher.cred(), self.consumer.cred(), Cred::ApiKey(&self.key)] {
            let (status, view) = self.app.client.get(PAID, cred).await;
            assert_eq!(status, StatusCode::OK, "{view}");
            seen.push(view["charge_tool_errors"].clone());
            let (status, list) = self.app.client.get("/v1/services", cred).await;
            assert_eq!(status, StatusCode::OK, "{list}");
            seen.push(list["services"][0]["charge_tool_errors"].clone());
        }
        seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_errors_are_not_charged_by_default() {
    let paid = paid(json!({})).await;
    assert_eq!(paid.created["charge_tool_errors"], false, "{}", paid.created);
    assert_eq!(paid.setting_as_seen().await, vec![json!(false); 6]);

    paid.broken_call(1).await;
    assert_eq!(paid.held_and_unsettled().await, ("0".into(), "0".into()), "the hold was released");
    assert_eq!(paid.charged_after(1).await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_charges_tool_errors_charges_them_until_turned_off() {
    let paid = paid(json!({ "charge_tool_errors": true })).await;
    assert_eq!(paid.created["charge_tool_errors"], true, "{}", paid.created);
    assert_eq!(paid.setting_as_seen().await, vec![json!(true); 6], "agents can tell failed calls cost");

    paid.broken_call(1).await;
    assert_eq!(paid.held_and_unsettled().await, ("0".into(), PRICE.to_string()), "charged exactly the price");
    assert_eq!(paid.charged_after(1).await, PRICE.to_string());

    let (status, patched) = paid.publisher.patch(PAID, json!({ "charge_tool_errors": false })).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["charge_tool_errors"], false, "{patched}");
    assert_eq!(paid.setting_as_seen().await, vec![json!(false); 6]);
    let events = paid.publisher.audit("?action=service.update").await;
    assert_eq!(actions(&events), ["service.update"]);
    assert_eq!(events[0]["details"]["changed"], json!(["charge_tool_errors"]), "{events:?}");
    assert_eq!(events[0]["details"]["charge_tool_errors"], json!({ "before": true, "after": false }));

    // The next tool error is released; successful calls are charged as ever.
    paid.broken_call(2).await;
    assert_eq!(paid.held_and_unsettled().await, ("0".into(), PRICE.to_string()), "the second error is free");
    assert_eq!(paid.charged_after(2).await, PRICE.to_string());
    let echoed = tool_call(&paid.app, "paid", &paid.key, 3, "echo").await;
    assert_eq!(echoed["result"]["content"][0]["text"], "hi", "{echoed}");
    assert_eq!(paid.held_and_unsettled().await, ("0".into(), (2 * PRICE).to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charge_tool_errors_must_be_a_boolean() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let body = |value: Value| {
        json!({ "slug": "paid", "name": "Paid", "upstream": { "url": "https://paid.example/mcp" },
                "charge_tool_errors": value })
    };
    for bad in [json!("yes"), json!(1), json!(null)] {
        let refused = owner.post("/v1/services", body(bad.clone())).await;
        let message = expect_error(&refused, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
        assert!(message.contains("charge_tool_errors"), "the message names the field ({bad}): {message}");
    }
    expect_error(&owner.get(PAID).await, StatusCode::NOT_FOUND, "NOT_FOUND");

    let (status, created) = owner.post("/v1/services", body(json!(true))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    for bad in [json!("no"), json!(0)] {
        let refused = owner.patch(PAID, json!({ "charge_tool_errors": bad })).await;
        let message = expect_error(&refused, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
        assert!(message.contains("charge_tool_errors"), "the message names the field ({bad}): {message}");
    }
    assert_eq!(owner.get(PAID).await.1, created, "refused patches change nothing");

    let (status, document) = app.client.get("/v1/openapi.json", Cred::None).await;
    assert_eq!(status, StatusCode::OK);
    for schema in ["CreateServiceRequest", "UpdateServiceRequest", "ServiceView"] {
        let property = &document["components"]["schemas"][schema]["properties"]["charge_tool_errors"];
        assert!(property.is_object(), "{schema} documents charge_tool_errors: {}", document["components"]);
    }
}

/// A tool error the service charges is held back, like any charged result, when its capture
/// fails. Here another node takes the call's hold for dead and releases it while the upstream
/// works (PostgreSQL, where holds live in the database): the agent gets no result and nothing is
/// charged. The embedded database's single process keeps holds in memory, where no one else can
/// release them: there the call is charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charged_tool_error_whose_capture_fails_is_withheld() {
    let paid = paid(json!({ "charge_tool_errors": true })).await;
    let request = paid
        .app
        .client
        .request(reqwest::Method::POST, "/mcp/paid", Cred::ApiKey(&paid.key))
        .header("accept", "application/json, text/event-stream")
        .json(&call(1, "broken-later"));
    let answer = tokio::spawn(async move {
        let response = request.send().await.expect("post");
        (response.status(), response.text().await.expect("body"))
    });
    for _ in 0..100 {
        if paid.book_budget().await.held == Amount::new(PRICE) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(paid.book_budget().await.held, Amount::new(PRICE), "the call holds its price");

    let shared = !paid.app.state.store.single_process();
    if shared {
        // What another node does at start with holds it cannot know are alive.
        let released =
            paid.app.state.store.release_stale_holds(Timestamp::now().plus_seconds(1)).await.expect("release");
        assert_eq!(released, 1);
    }
    paid.upstream.first_event_read.notify_one();
    let answer = answer.await.expect("the call's task");

    let (status, answer) = answer;
    if shared {
        // Nothing of the answer had been sent: the agent is told, under its id, instead of
        // reading a cut body.
        assert_eq!(status, StatusCode::OK);
        let error: Value = serde_json::from_str(&answer).expect("JSON");
        assert_eq!(error["id"], 1, "{error}");
        assert_eq!(error["error"]["code"], -32603, "{error}");
        assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("withheld")), "{error}");
        assert!(error.get("result").is_none());
        assert_eq!(paid.held_and_unsettled().await, ("0".into(), "0".into()));
        assert_eq!(paid.charged_after(1).await, "0");
    } else {
        assert_eq!(status, StatusCode::OK);
        let answer: Value = serde_json::from_str(&answer).expect("JSON");
        assert_eq!(answer["result"]["isError"], true, "{answer}");
        assert_eq!(paid.held_and_unsettled().await, ("0".into(), PRICE.to_string()));
        assert_eq!(paid.charged_after(1).await, PRICE.to_string());
    }
}
