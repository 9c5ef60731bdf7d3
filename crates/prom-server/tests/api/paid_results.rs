//! A paid result never leaves uncharged — tried as a hostile agent and a careless upstream would:
//! float and exponent ids (SDKs answer `1.0` with `1`), a paid stream dropped and resumed with
//! `Last-Event-ID`, a dropped stream left past its time, ids reused while pending (HTTP sessions
//! and stdio), null and reserved ids, and upstreams that answer with the wrong id or on the wrong
//! stream. After each: paid results delivered = captures, and nothing stays held.
//!
//! The upstream here behaves like the SDKs do (numeric ids written back as integers, an event
//! store that replays a stream after `Last-Event-ID`), with a few lies on request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prom_core::audit::AuditContext;
use prom_core::id::{ServiceId, TenantId};
use prom_core::money::Amount;
use prom_core::service::{ServiceSlug, Upstream};
use prom_core::store::NewService;
use prom_core::time::Timestamp;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

use crate::gateway::register_priced;
use crate::support::{Cred, TestApp, TestUser};

const PRICE: u128 = 100;
const TOOLS: [&str; 5] = ["json", "sse", "slow-sse", "liar-id", "liar-get"];

/// Stored events by stream: (event id, data).
type EventStore = HashMap<String, Vec<(String, String)>>;

/// An SDK-like upstream with an event store.
#[derive(Clone, Default)]
struct SdkLike {
    events: Arc<Mutex<EventStore>>,
    /// Releases the result of each `slow-sse` call.
    gate: Arc<Notify>,
    /// `notifications/cancelled` the upstream received.
    cancelled: Arc<Mutex<Vec<Value>>>,
    /// Tool calls that reached the upstream.
    calls: Arc<Mutex<usize>>,
}

impl SdkLike {
    fn store(&self, stream: &str, data: String) -> String {
        let mut events = self.events.lock().expect("lock");
        let list = events.entry(stream.to_owned()).or_default();
        let id = format!("{stream}-{}", list.len());
        list.push((id.clone(), data));
        id
    }

    fn stored(&self, stream: &str) -> usize {
        self.events.lock().expect("lock").get(stream).map_or(0, Vec::len)
    }
}

/// Ids as SDK servers write them back: a whole number as an integer.
fn normalized(id: &Value) -> Value {
    match id.as_f64() {
        Some(number) if number.fract() == 0.0 && id.is_f64() => json!(number as i64),
        _ => id.clone(),
    }
}

fn event(id: &str, data: &str) -> String {
    format!("id: {id}\ndata: {data}\n\n")
}

async fn upstream_post(State(up): State<SdkLike>, body: String) -> Response {
    let message: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let id = normalized(&message["id"]);
    let result = json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":"paid work"}]}});
    match (message["method"].as_str(), message["params"]["name"].as_str()) {
        (Some("initialize"), _) => {
            let answer = json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-11-25","capabilities":{}}});
            ([("mcp-session-id", "sdk-session")], axum::Json(answer)).into_response()
        }
        (Some("notifications/cancelled"), _) => {
            up.cancelled.lock().expect("lock").push(message["params"].clone());
            StatusCode::ACCEPTED.into_response()
        }
        (Some("tools/call"), Some(tool)) => {
            *up.calls.lock().expect("lock") += 1;
            match tool {
                "json" => axum::Json(result).into_response(),
                "liar-id" => axum::Json(json!({"jsonrpc":"2.0","id":999,"result":{"content":[]}})).into_response(),
                "sse" => sse_body(event("x-0", &result.to_string())),
                "liar-get" => {
                    up.store("get", result.to_string());
                    sse_body(String::new())
                }
                _ => slow_sse(up, result),
            }
        }
        (Some(_), _) if message.get("id").is_some() => {
            axum::Json(json!({"jsonrpc":"2.0","id":id,"result":{"tools":[]}})).into_response()
        }
        _ => StatusCode::ACCEPTED.into_response(),
    }
}

fn sse_body(text: String) -> Response {
    ([("content-type", "text/event-stream")], text).into_response()
}

/// A priming event at once; the result once the test opens the gate, stored whether or not the
/// agent is still there to read it.
fn slow_sse(up: SdkLike, result: Value) -> Response {
    let stream = format!("s{}", uuid::Uuid::now_v7().simple());
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let priming = up.store(&stream, String::new());
    let _ = tx.send(event(&priming, ""));
    tokio::spawn(async move {
        up.gate.notified().await;
        let data = result.to_string();
        let id = up.store(&stream, data.clone());
        let _ = tx.send(event(&id, &data));
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    ([("content-type", "text/event-stream")], Body::from_stream(body)).into_response()
}

/// Replays a stream after `Last-Event-ID`, or the session's own stream, then ends.
async fn upstream_get(State(up): State<SdkLike>, headers: HeaderMap) -> Response {
    let after = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (stream, skip) = match &after {
        Some(after) => {
            let (stream, n) = after.rsplit_once('-').unwrap_or((after, "0"));
            (stream.to_owned(), n.parse::<usize>().unwrap_or(0) + 1)
        }
        None => ("get".to_owned(), 0),
    };
    let events = up.events.lock().expect("lock").get(&stream).cloned().unwrap_or_default();
    let text: String = events.iter().skip(skip).map(|(id, data)| event(id, data)).collect();
    sse_body(text)
}

async fn spawn_sdk_like() -> (String, SdkLike) {
    let up = SdkLike::default();
    let app = axum::Router::new().route("/mcp", post(upstream_post).get(upstream_get)).with_state(up.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/mcp"), up)
}

struct Setup {
    app: TestApp,
    owner: TestUser,
    key: String,
    up: SdkLike,
}

async fn setup_with(configure: impl FnOnce(&mut prom_server::ServerConfig)) -> Setup {
    let app = TestApp::spawn_with(configure).await;
    let owner = app.with_owner("acme").await;
    let (url, up) = spawn_sdk_like().await;
    let prices: Vec<(&str, u128)> = TOOLS.iter().map(|tool| (*tool, PRICE)).collect();
    register_priced(&app, &owner, "paid", &url, &prices).await;
    approve(&app, &owner, "paid", 1_000_000).await;
    let (_, key) = owner.create_key("agent").await;
    Setup { app, owner, key, up }
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

fn tenant(owner: &TestUser) -> TenantId {
    TenantId::from_trusted(owner.tenant_id.clone())
}

async fn approve(app: &TestApp, owner: &TestUser, slug: &str, amount: u128) {
    let slug = ServiceSlug::parse(slug).expect("slug");
    app.state
        .store
        .set_approved(&tenant(owner), &slug, Amount::new(amount), None, None, None, None)
        .await
        .expect("approve");
    app.state.charges.reload(&tenant(owner), &slug).await.expect("refresh");
}

/// (held, captured) as the charge book sees them.
async fn money(s: &Setup, slug: &str) -> (u128, u128) {
    let budget =
        s.app.state.charges.budget(&tenant(&s.owner), &ServiceSlug::parse(slug).expect("slug")).await.expect("budget");
    (budget.held.units(), budget.unsettled.units() + budget.settled.units())
}

/// Polls until `check` holds (up to 5 s), so a test waits for background work, never on a timer.
async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..250 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn raw_call(id: &str, tool: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#)
}

async fn post_raw(s: &Setup, slug: &str, body: String, session: Option<&str>) -> reqwest::Response {
    let mut request = s
        .app
        .client
        .request(reqwest::Method::POST, &format!("/mcp/{slug}"), Cred::ApiKey(&s.key))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session).header("mcp-protocol-version", "2025-11-25");
    }
    request.send().await.expect("post")
}

/// The JSON-RPC messages of an answer, JSON or SSE.
fn messages(text: &str) -> Vec<Value> {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return vec![value];
    }
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
            serde_json::from_str(&data.join("\n")).ok()
        })
        .collect()
}

/// The paid results among `messages`.
fn results(messages: &[Value]) -> Vec<&Value> {
    messages.iter().filter(|m| m["result"]["content"][0]["text"] == "paid work").collect()
}

async fn initialize(s: &Setup) -> String {
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let response = post_raw(s, "paid", init.to_string(), None).await;
    assert_eq!(response.status(), 200);
    response.headers()["mcp-session-id"].to_str().expect("session").to_owned()
}

async fn resume(s: &Setup, session: &str, last_event_id: &str) -> String {
    let response = s
        .app
        .client
        .request(reqwest::Method::GET, "/mcp/paid", Cred::ApiKey(&s.key))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("last-event-id", last_event_id)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    response.text().await.expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn float_and_exponent_ids_are_charged_on_json_and_sse() {
    let s = setup().await;
    let mut delivered = 0;
    for tool in ["json", "sse"] {
        for id in ["1.0", "2e0", "-0", "50e-1", "7"] {
            let response = post_raw(&s, "paid", raw_call(id, tool), None).await;
            assert_eq!(response.status(), 200, "{tool} {id}");
            let text = response.text().await.expect("text");
            let answers = messages(&text);
            let paid = results(&answers);
            assert_eq!(paid.len(), 1, "{tool} {id}: {text}");
            let sent: Value = serde_json::from_str(id).expect("id");
            assert_eq!(paid[0]["id"].as_f64(), sent.as_f64(), "{tool}: the agent gets its own id back: {text}");
            delivered += 1;
        }
    }
    assert_eq!(money(&s, "paid").await, (0, delivered * PRICE), "every paid result delivered was captured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_paid_stream_keeps_its_hold_and_is_charged_when_resumed() {
    let s = setup().await;
    let session = initialize(&s).await;
    let mut response = post_raw(&s, "paid", raw_call("5", "slow-sse"), Some(&session)).await;
    assert_eq!(response.status(), 200);
    let priming = response.chunk().await.expect("chunk").expect("the priming event");
    let priming = String::from_utf8(priming.to_vec()).expect("utf8");
    let last_event_id = priming.lines().find_map(|l| l.strip_prefix("id: ")).expect("an event id").to_owned();
    drop(response);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(money(&s, "paid").await, (PRICE, 0), "the agent hung up: the hold stays while the result may come");

    s.up.gate.notify_one();
    let stream = last_event_id.rsplit_once('-').expect("stream id").0.to_owned();
    assert!(eventually(async || s.up.stored(&stream) == 2).await, "the upstream finished the call");
    let text = resume(&s, &session, &last_event_id).await;
    let answers = messages(&text);
    let paid = results(&answers);
    assert_eq!(paid.len(), 1, "the resumed stream delivers the result: {text}");
    assert_eq!(paid[0]["id"], 5, "under the agent's id");
    assert_eq!(money(&s, "paid").await, (0, PRICE), "captured when delivered through the resumed stream");

    let again = resume(&s, &session, &last_event_id).await;
    assert!(results(&messages(&again)).is_empty(), "a second replay is withheld: {again}");
    assert_eq!(money(&s, "paid").await, (0, PRICE), "and charged nothing more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_call_past_its_time_is_released_cancelled_and_its_late_result_withheld() {
    let s = setup_with(|c| c.paid_result_secs = 1).await;
    let session = initialize(&s).await;
    let mut response = post_raw(&s, "paid", raw_call("\"job-1\"", "slow-sse"), Some(&session)).await;
    let priming = response.chunk().await.expect("chunk").expect("the priming event");
    let priming = String::from_utf8(priming.to_vec()).expect("utf8");
    let last_event_id = priming.lines().find_map(|l| l.strip_prefix("id: ")).expect("an event id").to_owned();
    drop(response);
    assert!(eventually(async || money(&s, "paid").await == (0, 0)).await, "released once its time ran out");
    assert!(eventually(async || !s.up.cancelled.lock().expect("lock").is_empty()).await, "the upstream was told");
    let cancelled = s.up.cancelled.lock().expect("lock").clone();
    assert!(cancelled[0]["requestId"].as_str().is_some_and(|id| id.starts_with("prom-call-")), "{cancelled:?}");

    s.up.gate.notify_one();
    let stream = last_event_id.rsplit_once('-').expect("stream id").0.to_owned();
    assert!(eventually(async || s.up.stored(&stream) == 2).await);
    let text = resume(&s, &session, &last_event_id).await;
    assert!(results(&messages(&text)).is_empty(), "a result after the hold ended is withheld: {text}");
    assert_eq!(money(&s, "paid").await, (0, 0), "nothing was charged, nothing delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_pending_in_a_session_cannot_be_reused() {
    let s = setup().await;
    let session = initialize(&s).await;
    let mut first = post_raw(&s, "paid", raw_call("7", "slow-sse"), Some(&session)).await;
    let _priming = first.chunk().await.expect("chunk").expect("the priming event");
    for reused in ["7", "7.0", "70e-1"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{reused},"method":"tools/list"}}"#);
        let response = post_raw(&s, "paid", body, Some(&session)).await;
        assert_eq!(response.status(), 400, "{reused}");
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["error"]["code"], -32600, "{error}");
        assert!(error["error"]["message"].as_str().expect("message").contains("pending"), "{error}");
    }
    let other = post_raw(&s, "paid", r#"{"jsonrpc":"2.0","id":8,"method":"tools/list"}"#.into(), Some(&session)).await;
    assert_eq!(other.status(), 200, "other ids go on");

    s.up.gate.notify_one();
    let mut text = String::new();
    while let Some(chunk) = first.chunk().await.expect("chunk") {
        text.push_str(std::str::from_utf8(&chunk).expect("utf8"));
    }
    assert_eq!(results(&messages(&text)).len(), 1, "{text}");
    assert_eq!(money(&s, "paid").await, (0, PRICE));
    let after = post_raw(&s, "paid", r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#.into(), Some(&session)).await;
    assert_eq!(after.status(), 200, "an id is free again once its call ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_do_not_answer_the_paid_call_are_withheld() {
    let s = setup().await;
    let response = post_raw(&s, "paid", raw_call("3", "liar-id"), None).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["id"], 3, "{body}");
    assert!(body["error"]["message"].as_str().expect("message").contains("withheld"), "{body}");
    assert!(body.get("result").is_none());
    assert_eq!(money(&s, "paid").await, (0, 0), "nothing delivered, nothing charged");

    // An upstream that puts a paid result on the session's stream instead of the call's: it is
    // delivered there only once captured, under the agent's id.
    let session = initialize(&s).await;
    let response = post_raw(&s, "paid", raw_call("4", "liar-get"), Some(&session)).await;
    assert!(response.text().await.expect("text").trim().is_empty());
    let get = s
        .app
        .client
        .request(reqwest::Method::GET, "/mcp/paid", Cred::ApiKey(&s.key))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .expect("get");
    let text = get.text().await.expect("text");
    let answers = messages(&text);
    let paid = results(&answers);
    assert_eq!(paid.len(), 1, "{text}");
    assert_eq!(paid[0]["id"], 4);
    assert_eq!(money(&s, "paid").await, (0, PRICE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_and_reserved_ids_are_refused_before_the_upstream() {
    let s = setup().await;
    for id in ["null", "true", "{}", "\"prom-call-0123456789abcdef0123456789abcdef\""] {
        let response = post_raw(&s, "paid", raw_call(id, "json"), None).await;
        assert_eq!(response.status(), 400, "{id}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], -32600, "{id}: {body}");
    }
    assert_eq!(*s.up.calls.lock().expect("lock"), 0, "none reached the upstream");
    assert_eq!(money(&s, "paid").await, (0, 0));
}

/// A priced stdio service (the Python fixture).
async fn register_stdio(s: &Setup) {
    let script = format!("{}/tests/fixtures/fake_stdio_mcp.py", env!("CARGO_MANIFEST_DIR"));
    let prices = [("echo", PRICE), ("wait", PRICE)]
        .into_iter()
        .map(|(tool, price)| (tool.to_owned(), Amount::new(price)))
        .collect();
    s.app
        .state
        .store
        .create_service(
            NewService {
                id: ServiceId::new(),
                tenant_id: tenant(&s.owner),
                slug: ServiceSlug::parse("local").expect("slug"),
                name: "local".into(),
                description: "a stdio upstream".into(),
                upstream: Upstream::Stdio { command: "python3".into(), args: vec![script], env: Default::default() },
                prices,
                charge_tool_errors: false,
                created_at: Timestamp::now(),
            },
            &AuditContext::admin_cli(),
        )
        .await
        .expect("register");
    approve(&s.app, &s.owner, "local", 1_000_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_paid_calls_keep_the_agents_id_and_refuse_pending_ones() {
    let s = setup_with(|c| c.stdio_commands = vec![crate::support::python_stdio()]).await;
    register_stdio(&s).await;
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let response = post_raw(&s, "local", init.to_string(), None).await;
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"].to_str().expect("session").to_owned();

    let text = post_raw(&s, "local", raw_call("1.0", "echo"), Some(&session)).await.text().await.expect("text");
    let answers = messages(&text);
    assert_eq!(answers.len(), 1, "{text}");
    assert_eq!(answers[0]["id"].as_f64(), Some(1.0), "{text}");
    assert!(answers[0]["result"]["content"][0]["text"].as_str().is_some_and(|t| t.starts_with("echo")), "{text}");

    let slow = {
        let request = s
            .app
            .client
            .request(reqwest::Method::POST, "/mcp/local", Cred::ApiKey(&s.key))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-session-id", &session)
            .body(raw_call("9", "wait"));
        tokio::spawn(async move { request.send().await.expect("post").text().await.expect("text") })
    };
    assert!(eventually(async || money(&s, "local").await.0 == PRICE).await, "the slow call is held");
    let reused = post_raw(&s, "local", raw_call("9", "echo"), Some(&session)).await;
    assert_eq!(reused.status(), 400);
    let error: Value = reused.json().await.expect("json");
    assert_eq!(error["error"]["code"], -32600);
    let slow = slow.await.expect("slow call");
    let answers = messages(&slow);
    assert_eq!(answers.len(), 1, "{slow}");
    assert_eq!(answers[0]["id"], 9);
    assert_eq!(money(&s, "local").await, (0, 2 * PRICE), "two results, two captures");
}
