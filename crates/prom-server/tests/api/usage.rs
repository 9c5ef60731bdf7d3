//! `GET /v1/usage`: gateway traffic counted by key, tool and day, with what it was charged
//! (captured and settled charges; refused and failed calls cost nothing), filtered by key,
//! service and time, confined to the caller's tenant, and precise about bad parameters.

use std::time::Duration;

use prom_core::access::Role;
use prom_core::audit::AuditAction;
use prom_core::money::Amount;
use prom_core::time::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::allowance::{PRICE, approve, paid_service, spawn, tool_call};
use crate::gateway::{mcp_post, register_priced, spawn_upstream};
use crate::support::{Cred, TestApp, TestUser, expect_error};

/// Tenant `acme` after its traffic: two keys, two services, six requests, two of them charged.
struct Traffic {
    app: TestApp,
    owner: TestUser,
    laptop_id: String,
    laptop_display: String,
    ci_id: String,
    ci_key: String,
    /// Before the first request.
    started: Timestamp,
}

/// - `laptop agent`: two paid `echo` calls (charged), one `broken` call (a tool error, released);
/// - `ci runner`: a paid `echo` the allowance can no longer cover (refused), an `initialize`
///   (no tool), and an `echo` on the free service `free`.
async fn traffic() -> Traffic {
    let app = spawn().await;
    let owner = paid_service(&app, 10_000).await;
    approve(&owner, json!({ "amount": (2 * PRICE + 50).to_string() })).await;
    let (url, _) = spawn_upstream().await;
    register_priced(&app, &owner, "free", &url, &[]).await;
    let (laptop_id, laptop_key) = owner.create_key("laptop agent").await;
    let (ci_id, ci_key) = owner.create_key("ci runner").await;
    let laptop_display = owner.key(&laptop_id).await["display"].as_str().expect("display").to_owned();

    let started = Timestamp::now();
    // The tool error comes first: its hold needs room in the allowance before it is given back.
    assert!(tool_call(&app, "paid", &laptop_key, 1, "echo").await.get("result").is_some());
    assert_eq!(tool_call(&app, "paid", &laptop_key, 2, "broken").await["result"]["isError"], true);
    assert!(tool_call(&app, "paid", &laptop_key, 3, "echo").await.get("result").is_some());
    let refused = tool_call(&app, "paid", &ci_key, 4, "echo").await;
    assert_eq!(refused["error"]["data"]["code"], "ALLOWANCE_EXCEEDED", "{refused}");
    let init = json!({"jsonrpc":"2.0","id":5,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let response =
        mcp_post(&app, "paid", Cred::ApiKey(&ci_key), &init, &[("mcp-protocol-version", "2025-11-25")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.expect("the initialize answer");
    assert!(tool_call(&app, "free", &ci_key, 6, "echo").await.get("result").is_some());

    let traffic = Traffic { app, owner, laptop_id, laptop_display, ci_id, ci_key, started };
    traffic.wait_for_calls(6).await;
    traffic
}

impl Traffic {
    /// Usage is written off the request path: flush it until the report has `calls` requests.
    async fn wait_for_calls(&self, calls: u64) {
        for _ in 0..50 {
            self.app.flush_usage().await;
            if usage(&self.owner, "").await["calls"] == calls {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the usage report never reached {calls} calls: {}", usage(&self.owner, "").await);
    }
}

/// `GET /v1/usage<query>` (query is empty or starts with `?`), asserting 200.
async fn usage(user: &TestUser, query: &str) -> Value {
    let (status, body) = user.get(&format!("/v1/usage{query}")).await;
    assert_eq!(status, StatusCode::OK, "reading usage failed: {body}");
    body
}

/// (calls, ok, errors, charged) of a report or a row.
fn sums(value: &Value) -> (u64, u64, u64, String) {
    let count = |field: &str| value[field].as_u64().unwrap_or_else(|| panic!("a count {field:?} in {value}"));
    (count("calls"), count("ok"), count("errors"), value["charged"].as_str().expect("charged").to_owned())
}

fn rows(report: &Value) -> &Vec<Value> {
    report["rows"].as_array().unwrap_or_else(|| panic!("a rows array in {report}"))
}

fn row<'a>(report: &'a Value, field: &str, value: &Value) -> &'a Value {
    rows(report).iter().find(|row| row[field] == *value).unwrap_or_else(|| panic!("no row {field}={value} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_calls_and_charges_by_key_tool_service_and_day() {
    let t = traffic().await;
    let charged = (2 * PRICE).to_string();

    let by_key = usage(&t.owner, "?group_by=key").await;
    assert_eq!(sums(&by_key), (6, 4, 2, charged.clone()));
    assert_eq!(by_key["group_by"], "key");
    assert_eq!(rows(&by_key).len(), 2, "{by_key}");
    let laptop = row(&by_key, "key_id", &json!(t.laptop_id));
    assert_eq!((&laptop["label"], &laptop["display"]), (&json!("laptop agent"), &json!(t.laptop_display)));
    assert_eq!(sums(laptop), (3, 2, 1, charged.clone()));
    assert_eq!(laptop["outcomes"], json!({ "ok": 2, "tool_error": 1 }));
    let ci = row(&by_key, "key_id", &json!(t.ci_id));
    assert_eq!(ci["label"], "ci runner");
    assert_eq!(sums(ci), (3, 2, 1, "0".to_owned()));
    assert_eq!(ci["outcomes"], json!({ "allowance_exceeded": 1, "ok": 2 }));

    let by_tool = usage(&t.owner, "?group_by=tool").await;
    assert_eq!(sums(&by_tool), sums(&by_key), "the totals do not depend on the grouping");
    assert_eq!(rows(&by_tool).len(), 3, "{by_tool}");
    assert_eq!(rows(&by_tool)[0]["tool"], "echo", "busiest first: {by_tool}");
    assert_eq!(sums(&rows(&by_tool)[0]), (4, 3, 1, charged.clone()));
    assert_eq!(sums(row(&by_tool, "tool", &json!("broken"))), (1, 0, 1, "0".to_owned()));
    assert_eq!(sums(row(&by_tool, "tool", &Value::Null)), (1, 1, 0, "0".to_owned()), "initialize calls no tool");

    let by_service = usage(&t.owner, "?group_by=service").await;
    assert_eq!(by_service["group_by"], "service");
    assert_eq!(sums(&by_service), sums(&by_key));
    assert_eq!(rows(&by_service).len(), 2, "{by_service}");
    assert_eq!(rows(&by_service)[0]["service"], "paid", "busiest first: {by_service}");
    assert_eq!(sums(&rows(&by_service)[0]), (5, 3, 2, charged.clone()));
    assert_eq!(sums(row(&by_service, "service", &json!("free"))), (1, 1, 0, "0".to_owned()));

    // Days by default, UTC. (A run that straddles midnight may see two.)
    let by_day = usage(&t.owner, "").await;
    assert_eq!(by_day["group_by"], "day");
    assert_eq!(sums(&by_day), sums(&by_key));
    let days = [t.started.date_string(), Timestamp::now().date_string()];
    let calls: u64 = rows(&by_day).iter().map(|row| row["calls"].as_u64().expect("calls")).sum();
    assert_eq!(calls, 6);
    for row in rows(&by_day) {
        assert!(days.contains(&row["day"].as_str().expect("day").to_owned()), "{by_day}");
    }
    if days[0] == days[1] {
        assert_eq!(sums(&rows(&by_day)[0]), (6, 4, 2, charged.clone()));
    }

    // Filters: one key, one service, a time range.
    assert_eq!(sums(&usage(&t.owner, &format!("?key_id={}", t.ci_id)).await), (3, 2, 1, "0".to_owned()));
    assert_eq!(sums(&usage(&t.owner, "?service=free&group_by=tool").await), (1, 1, 0, "0".to_owned()));
    let paid_laptop = usage(&t.owner, &format!("?service=paid&key_id={}&group_by=key", t.laptop_id)).await;
    assert_eq!(sums(&paid_laptop), (3, 2, 1, charged.clone()));
    let before = usage(&t.owner, &format!("?to={}", t.started)).await;
    assert_eq!(sums(&before), (0, 0, 0, "0".to_owned()));
    assert_eq!(rows(&before).len(), 0);
    assert_eq!(before["to"], t.started.to_string(), "the report says which range it covers");
    let since = usage(&t.owner, &format!("?from={}", t.started)).await;
    assert_eq!(sums(&since).0, 6);

    // Settled charges still count as charged.
    let report = t.app.state.settler.settle_once().await;
    assert_eq!(report.settled_amount, Amount::new(2 * PRICE));
    assert_eq!(sums(&usage(&t.owner, "?group_by=key").await), (6, 4, 2, charged));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_confined_to_the_callers_tenant() {
    let t = traffic().await;
    // The publisher of `paid` and a stranger see none of acme's usage, whatever they ask for.
    let rival = t.app.with_owner("rival").await;
    for query in ["?group_by=key".to_owned(), format!("?key_id={}", t.laptop_id), "?service=paid".to_owned()] {
        let report = usage(&rival, &query).await;
        assert_eq!(sums(&report), (0, 0, 0, "0".to_owned()), "{query}: {report}");
        assert_eq!(rows(&report).len(), 0);
    }
    let publisher = t.app.with_owner("publisher").await;
    assert_eq!(sums(&usage(&publisher, "?service=paid").await).0, 0);

    // Any member of acme may read it; an agent key may not; nobody anonymous.
    let member = t.app.with_user("acme", "member@acme.example", Role::Member).await;
    assert_eq!(sums(&usage(&member, "").await).0, 6);
    let as_key = t.app.client.get("/v1/usage", Cred::ApiKey(&t.ci_key)).await;
    expect_error(&as_key, StatusCode::FORBIDDEN, "FORBIDDEN");
    expect_error(&t.app.client.get("/v1/usage", Cred::None).await, StatusCode::UNAUTHORIZED, "TOKEN_MISSING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_usage_parameters_say_what_to_send() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let from_the_future = format!("?from={}", Timestamp::now().plus_seconds(3600));
    for (query, hint) in [
        ("?group_by=week", "key, tool, service or day"),
        ("?group_by=KEY", "key, tool, service or day"),
        ("?key_id=laptop", "GET /v1/keys"),
        ("?service=Not%20A%20Slug", "GET /v1/services"),
        ("?from=yesterday", "RFC 3339"),
        ("?to=2026-13-01T00:00:00Z", "RFC 3339"),
        ("?from=2026-11-01T00:00:00+01:00", "%2B"),
        ("?limit=10", "unknown field"),
    ] {
        let message =
            expect_error(&owner.get(&format!("/v1/usage{query}")).await, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
        assert!(message.contains(hint), "{query}: {message}");
    }
    // A range with its start at or after its end is empty: an empty report, from = to.
    for query in [
        "?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z",
        "?from=2026-11-01T00:00:00Z&to=2026-11-01T00:00:00Z",
        from_the_future.as_str(),
    ] {
        let report = usage(&owner, query).await;
        assert_eq!(report["from"], report["to"], "{query}: {report}");
        assert_eq!((report["calls"].as_u64(), report["rows"].as_array().map(Vec::len)), (Some(0), Some(0)), "{report}");
    }
    let offset = usage(&owner, "?from=2026-11-01T00:00:00%2B01:00&to=2026-11-02T00:00:00Z").await;
    assert_eq!(offset["from"], "2026-10-31T23:00:00Z", "offsets are read and shown in UTC");
    // Empty parameters are absent ones; the default range is the last 30 days.
    let report = usage(&owner, "?key_id=&service=&group_by=").await;
    assert_eq!(sums(&report), (0, 0, 0, "0".to_owned()));
    let from = Timestamp::parse_rfc3339(report["from"].as_str().expect("from")).expect("RFC 3339");
    let to = Timestamp::parse_rfc3339(report["to"].as_str().expect("to")).expect("RFC 3339");
    assert_eq!(to.as_millis() - from.as_millis(), 30 * 86_400_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_usage_and_allowances() {
    let app = TestApp::spawn().await;
    let (status, document) = app.client.get("/v1/openapi.json", Cred::None).await;
    assert_eq!(status, StatusCode::OK);
    // Optional query parameters, not path ones (the audit log's too).
    let params = |path: &str| -> Vec<(String, String, bool)> {
        let operation = &document["paths"][path]["get"];
        operation["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("parameters of GET {path} in {operation}"))
            .iter()
            .map(|param| {
                (param["name"].as_str().unwrap_or("?").to_owned(), param["in"].to_string(), param["required"] == true)
            })
            .collect()
    };
    let query = |names: &[&str]| -> Vec<(String, String, bool)> {
        names.iter().map(|name| ((*name).to_owned(), "\"query\"".to_owned(), false)).collect()
    };
    assert_eq!(params("/v1/usage"), query(&["key_id", "service", "from", "to", "group_by"]));
    assert_eq!(params("/v1/audit"), query(&["action", "key_id", "before", "limit"]));
    // The enums the parameters refer to are in the document.
    let group_by = &document["components"]["schemas"]["GroupBy"]["enum"];
    assert_eq!(group_by, &json!(["", "key", "tool", "day", "service"]), "{group_by}");
    let actions = document["components"]["schemas"]["ActionName"]["enum"].as_array().map(Vec::len);
    assert_eq!(actions, Some(AuditAction::ALL.len() + 1), "every action, and empty for any");
    for schema in ["UsageView", "UsageRowView", "UsageGroupView"] {
        assert!(document["components"]["schemas"][schema].is_object(), "{schema}");
    }
    for method in ["get", "put"] {
        let path = &document["paths"]["/v1/services/{slug}/allowance"][method];
        assert!(path.is_object(), "{method} /v1/services/{{slug}}/allowance");
    }
}

/// `/metrics` as text.
async fn metrics_text(app: &TestApp) -> String {
    let response =
        app.client.request(reqwest::Method::GET, "/metrics", Cred::None).send().await.expect("/metrics answers");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("the metrics text")
}

/// Sends `message` to `/mcp/free` and reads the answer whole, whatever it is.
async fn send(app: &TestApp, key: &str, message: &Value) {
    let response = mcp_post(app, "free", Cred::ApiKey(key), message, &[]).await;
    response.bytes().await.expect("the gateway's answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_method_and_tool_names_leave_metrics_and_usage_bounded() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let (url, _) = spawn_upstream().await;
    register_priced(&app, &owner, "free", &url, &[]).await;
    let (_, key) = owner.create_key("agent").await;
    let huge = "m".repeat(250_000);

    send(&app, &key, &json!({"jsonrpc":"2.0","id":0,"method":format!("warm-up{huge}")})).await;
    let before = metrics_text(&app).await;
    for id in 1..=40 {
        send(&app, &key, &json!({"jsonrpc":"2.0","id":id,"method":format!("{id:02}{huge}")})).await;
    }
    let after = metrics_text(&app).await;
    // Forty more requests change a few counters' digits, never the set of series.
    assert!(after.len().abs_diff(before.len()) < 256, "/metrics grew from {} to {} bytes", before.len(), after.len());
    assert!(after.contains(r#"method="other""#), "{after}");
    assert!(!after.contains("mmmmmmmm"), "a method name became a label");

    for id in 41..=80 {
        let call = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":format!("{id:02}{huge}"),"arguments":{}}});
        send(&app, &key, &call).await;
    }
    for _ in 0..50 {
        app.flush_usage().await;
        if usage(&owner, "").await["calls"] == 81 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let by_tool = usage(&owner, "?group_by=tool").await;
    assert_eq!(by_tool["calls"], 81);
    let tools: Vec<&str> = rows(&by_tool).iter().filter_map(|row| row["tool"].as_str()).collect();
    assert_eq!(tools.len(), 40, "forty distinct tools, each cut to its first 128 bytes");
    assert!(tools.iter().all(|tool| tool.len() == 128), "tool names are stored cut to 128 bytes");

    let uses = owner.audit("?action=api_key.use").await;
    let listed: usize = uses.iter().map(|row| row["details"]["tools"].as_array().map_or(0, Vec::len)).sum();
    let omitted: u64 = uses.iter().map(|row| row["details"]["tools_omitted"].as_u64().unwrap_or(0)).sum();
    assert!(uses.iter().all(|row| row["details"]["tools"].as_array().map_or(0, Vec::len) <= 32), "{uses:?}");
    assert_eq!(listed as u64 + omitted, 40, "every tool is listed or counted");
    let size = serde_json::to_string(&uses).expect("JSON").len();
    assert!(size < 40 * 1024, "the api_key.use rows hold {size} bytes");
}
