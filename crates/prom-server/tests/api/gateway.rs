//! The MCP gateway against scripted upstreams: what reaches the upstream (never the agent's key),
//! what comes back (SSE relayed event by event, `Last-Event-ID` resume), sessions bound to keys,
//! both protocol versions' header rules, Origin, body limits, and upstreams that hang, vanish or
//! speak garbage.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prom_core::audit::AuditContext;
use prom_core::id::ServiceId;
use prom_core::money::Amount;
use prom_core::service::{ServiceSlug, Upstream};
use prom_core::store::NewService;
use prom_core::time::Timestamp;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::support::{Cred, TestApp, TestUser};

/// Events of the scripted `stream` tool and of the resumable GET stream.
fn sse_event(id: &str, data: &Value) -> String {
    format!("id: {id}\nretry: 1000\ndata: {data}\n\n")
}

fn progress(n: u64) -> Value {
    json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":n,"total":3}})
}

#[derive(Clone, Default)]
pub(crate) struct Scripted {
    pub(crate) seen: Arc<Mutex<Vec<HeaderMap>>>,
    /// Released by the test once it has read the first event, to prove the relay does not buffer.
    pub(crate) first_event_read: Arc<Notify>,
}

async fn upstream_post(State(up): State<Scripted>, headers: HeaderMap, body: String) -> Response {
    up.seen.lock().expect("lock").push(headers.clone());
    let message: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let id = message["id"].clone();
    let result = |result: Value| axum::Json(json!({"jsonrpc":"2.0","id":id,"result":result}));
    match (message["method"].as_str(), message["params"]["name"].as_str()) {
        (Some("initialize"), _) => {
            let session = format!("sess-{}", up.seen.lock().expect("lock").len());
            ([("mcp-session-id", session)], result(json!({"protocolVersion":"2025-11-25","capabilities":{}})))
                .into_response()
        }
        (Some("tools/call"), Some("echo")) => {
            result(json!({"content":[{"type":"text","text":message["params"]["arguments"]["text"]}]})).into_response()
        }
        (Some("tools/call"), Some("broken")) => result(json!({"content":[],"isError":true})).into_response(),
        (Some("tools/call"), Some("echo-later")) => {
            // A result, once the test says so (it changes the world meanwhile).
            up.first_event_read.notified().await;
            result(json!({"content":[{"type":"text","text":"later"}]})).into_response()
        }
        (Some("tools/call"), Some("broken-later")) => {
            // A tool error, once the test says so (it changes the world meanwhile).
            up.first_event_read.notified().await;
            result(json!({"content":[],"isError":true})).into_response()
        }
        (Some("tools/call"), Some("stream")) => {
            let gate = up.first_event_read.clone();
            let final_event = sse_event("e4", &json!({"jsonrpc":"2.0","id":id,"result":{"content":[]}}));
            let stream = async_stream(gate, final_event);
            ([("content-type", "text/event-stream")], Body::from_stream(stream)).into_response()
        }
        (Some("tools/call"), Some("linger")) => {
            // The response, then (against the spec's advice) the stream stays open: a late
            // event once the test has read the response, then nothing for 30 s.
            let response = sse_event("r", &json!({"jsonrpc":"2.0","id":id,"result":{"content":[]}}));
            let gate = up.first_event_read.clone();
            let stream = futures_util::stream::unfold(0u8, move |step| {
                let response = response.clone();
                let gate = gate.clone();
                async move {
                    let chunk = match step {
                        0 => response,
                        1 => {
                            gate.notified().await;
                            sse_event("late", &progress(9))
                        }
                        _ => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return None;
                        }
                    };
                    Some((Ok::<_, std::io::Error>(chunk), step + 1))
                }
            });
            ([("content-type", "text/event-stream")], Body::from_stream(stream)).into_response()
        }
        (Some("tools/call"), Some("hang")) => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
        (None, _) => StatusCode::ACCEPTED.into_response(),
        _ => StatusCode::ACCEPTED.into_response(),
    }
}

/// e1, then (only once the test has read e1) e2, e3 and the final response.
fn async_stream(
    gate: Arc<Notify>,
    final_event: String,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    futures_util::stream::unfold(0u8, move |step| {
        let gate = gate.clone();
        let final_event = final_event.clone();
        async move {
            let chunk = match step {
                0 => sse_event("e1", &progress(1)),
                1 => {
                    gate.notified().await;
                    sse_event("e2", &progress(2))
                }
                2 => sse_event("e3", &progress(3)),
                3 => final_event,
                _ => return None,
            };
            Some((Ok(chunk), step + 1))
        }
    })
}

async fn upstream_get(State(up): State<Scripted>, headers: HeaderMap) -> Response {
    up.seen.lock().expect("lock").push(headers.clone());
    let after = headers.get("last-event-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    let all = [("e1", 1), ("e2", 2), ("e3", 3)];
    let replay: String = all
        .iter()
        .skip_while(|(id, _)| !after.is_empty() && *id != after)
        .skip(usize::from(!after.is_empty()))
        .map(|(id, n)| sse_event(id, &progress(*n)))
        .collect();
    ([("content-type", "text/event-stream")], replay).into_response()
}

async fn upstream_delete(State(up): State<Scripted>, headers: HeaderMap) -> StatusCode {
    up.seen.lock().expect("lock").push(headers);
    StatusCode::OK
}

pub(crate) async fn spawn_upstream() -> (String, Scripted) {
    let up = Scripted::default();
    let app = axum::Router::new()
        .route("/mcp", post(upstream_post).get(upstream_get).delete(upstream_delete))
        .with_state(up.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/mcp"), up)
}

/// An upstream that answers every connection with bytes that are not HTTP, then hangs up.
async fn spawn_garbage_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"\x00\x01garbage that is not HTTP\r\n\r\n").await;
            drop(socket);
        }
    });
    format!("http://{addr}/mcp")
}

pub(crate) async fn register(app: &TestApp, owner: &TestUser, slug: &str, url: &str) {
    register_priced(app, owner, slug, url, &[]).await;
}

/// Registers a scripted upstream with prices per tool.
pub(crate) async fn register_priced(app: &TestApp, owner: &TestUser, slug: &str, url: &str, prices: &[(&str, u128)]) {
    let tenant = prom_core::id::TenantId::from_trusted(owner.tenant_id.clone());
    let prices = prices.iter().map(|(tool, price)| ((*tool).to_owned(), Amount::new(*price))).collect();
    app.state
        .store
        .create_service(
            NewService {
                id: ServiceId::new(),
                tenant_id: tenant,
                slug: ServiceSlug::parse(slug).expect("slug"),
                name: slug.to_owned(),
                description: "scripted upstream".into(),
                upstream: Upstream::Http { url: url.to_owned() },
                prices,
                charge_tool_errors: false,
                created_at: Timestamp::now(),
            },
            &AuditContext::admin_cli(),
        )
        .await
        .expect("register service");
}

pub(crate) fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{"text":"hi"}}})
}

pub(crate) async fn mcp_post(
    app: &TestApp,
    slug: &str,
    cred: Cred<'_>,
    body: &Value,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app
        .client
        .request(reqwest::Method::POST, &format!("/mcp/{slug}"), cred)
        .header("accept", "application/json, text/event-stream")
        .json(body);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.send().await.expect("mcp request")
}

struct Setup {
    app: TestApp,
    owner: TestUser,
    key: String,
    upstream: Scripted,
}

async fn setup_with(configure: impl FnOnce(&mut prom_server::ServerConfig)) -> Setup {
    let app = TestApp::spawn_with(configure).await;
    let owner = app.with_owner("acme").await;
    let (url, upstream) = spawn_upstream().await;
    register(&app, &owner, "scripted", &url).await;
    let (_, key) = owner.create_key("agent").await;
    Setup { app, owner, key, upstream }
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_never_sees_the_agent_key() {
    let s = setup().await;
    for cred in [Cred::ApiKey(&s.key), Cred::Bearer(&s.key)] {
        let response = mcp_post(&s.app, "scripted", cred, &call(1, "echo"), &[("cookie", "session=abc")]).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["result"]["content"][0]["text"], "hi");
    }
    let seen = s.upstream.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    for headers in &seen {
        assert!(headers.get("authorization").is_none(), "{headers:?}");
        assert!(headers.get("x-api-key").is_none());
        assert!(headers.get("cookie").is_none());
        assert_eq!(headers["x-prometheus-tenant-id"], s.owner.tenant_id.as_str());
        assert!(headers.get("x-prometheus-key-id").is_some());
        let all = format!("{headers:?}");
        assert!(!all.contains(&s.key[10..]), "no part of the key's secret reaches the upstream");
    }
}

/// The gateway waits a moment after the response event for the stream's end (to send both in
/// one write); a stream that stays open still gets its response, and what follows, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_left_open_after_its_response_still_delivers_it() {
    let s = setup().await;
    let mut response = mcp_post(&s.app, "scripted", Cred::ApiKey(&s.key), &call(7, "linger"), &[]).await;
    assert_eq!(response.status(), 200);
    let response_event = sse_event("r", &json!({"jsonrpc":"2.0","id":7,"result":{"content":[]}}));
    let mut text = String::new();
    let mut when_response_seen = None;
    while !text.contains("late") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("events arrive while the stream stays open")
            .expect("chunk")
            .expect("the stream is still open");
        text.push_str(std::str::from_utf8(&chunk).expect("utf8"));
        if when_response_seen.is_none() && text.contains("\"id\":7") {
            when_response_seen = Some(text.clone());
            // Only now does the upstream send its late event: a gateway that held the response
            // until the stream's next item would wait here forever.
            s.upstream.first_event_read.notify_one();
        }
    }
    assert_eq!(
        when_response_seen,
        Some(response_event.clone()),
        "the response came alone, not held for the late event"
    );
    assert_eq!(text, response_event + &sse_event("late", &progress(9)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_is_relayed_event_by_event_untouched() {
    let s = setup().await;
    let mut response = mcp_post(&s.app, "scripted", Cred::ApiKey(&s.key), &call(9, "stream"), &[]).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().expect("ct").starts_with("text/event-stream"));
    // The upstream holds e2 back until we have read e1: if the gateway buffered, this would hang.
    let first = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("e1 arrives alone")
        .expect("chunk");
    let mut text = String::from_utf8(first.expect("some bytes").to_vec()).expect("utf8");
    assert!(text.starts_with("id: e1\nretry: 1000\ndata: "), "{text}");
    s.upstream.first_event_read.notify_one();
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        text.push_str(std::str::from_utf8(&chunk).expect("utf8"));
    }
    let expected: String =
        [sse_event("e1", &progress(1)), sse_event("e2", &progress(2)), sse_event("e3", &progress(3))].concat()
            + &sse_event("e4", &json!({"jsonrpc":"2.0","id":9,"result":{"content":[]}}));
    assert_eq!(text, expected, "events arrive byte for byte, ids and retry intact");

    s.app.flush_usage().await;
    let uses = s.owner.audit("?action=api_key.use").await;
    assert_eq!(uses.len(), 1, "{uses:?}");
    assert_eq!(uses[0]["details"]["requests"], 1);
    assert_eq!(uses[0]["details"]["tools"], json!(["stream"]));
    let metrics = s.app.client.request(reqwest::Method::GET, "/metrics", Cred::None).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("text");
    assert!(
        metrics.contains(r#"prometheus_gateway_requests_total{service="scripted",method="tools/call",outcome="ok"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("prometheus_key_cache_hits_total"), "{metrics}");
    assert!(!metrics.contains(&s.key[10..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_bound_to_their_key_and_resume_by_last_event_id() {
    let s = setup().await;
    let (_, other_key) = s.owner.create_key("other agent").await;
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let response =
        mcp_post(&s.app, "scripted", Cred::ApiKey(&s.key), &init, &[("mcp-protocol-version", "2025-11-25")]).await;
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"].to_str().expect("session").to_owned();

    // The same key continues the session; another key of the same tenant cannot ride it.
    let ok =
        mcp_post(&s.app, "scripted", Cred::ApiKey(&s.key), &call(1, "echo"), &[("mcp-session-id", &session)]).await;
    assert_eq!(ok.status(), 200);
    let stolen =
        mcp_post(&s.app, "scripted", Cred::ApiKey(&other_key), &call(2, "echo"), &[("mcp-session-id", &session)]).await;
    assert_eq!(stolen.status(), 404);
    let body: Value = stolen.json().await.expect("json");
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    let made_up =
        mcp_post(&s.app, "scripted", Cred::ApiKey(&s.key), &call(3, "echo"), &[("mcp-session-id", "sess-999")]).await;
    assert_eq!(made_up.status(), 404);
    let forwarded_posts = s.upstream.seen.lock().expect("lock").len();
    assert_eq!(forwarded_posts, 2, "refused requests never reach the upstream");

    // GET stream resumed after e1: the upstream sees Last-Event-ID and the agent gets e2, e3.
    let resumed = s
        .app
        .client
        .request(reqwest::Method::GET, "/mcp/scripted", Cred::ApiKey(&s.key))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("last-event-id", "e1")
        .send()
        .await
        .expect("get");
    assert_eq!(resumed.status(), 200);
    let text = resumed.text().await.expect("text");
    assert_eq!(text, sse_event("e2", &progress(2)) + &sse_event("e3", &progress(3)));
    let seen = s.upstream.seen.lock().expect("lock").clone();
    assert_eq!(seen.last().expect("get seen")["last-event-id"], "e1");
    assert_eq!(seen.last().expect("get seen")["mcp-session-id"], session.as_str());

    // Another key cannot open the GET stream either; DELETE ends the binding.
    let foreign_get = s
        .app
        .client
        .request(reqwest::Method::GET, "/mcp/scripted", Cred::ApiKey(&other_key))
        .header("mcp-session-id", &session)
        .send()
        .await
        .expect("get");
    assert_eq!(foreign_get.status(), 404);
    let deleted = s
        .app
        .client
        .request(reqwest::Method::DELETE, "/mcp/scripted", Cred::ApiKey(&s.key))
        .header("mcp-session-id", &session)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 200);
    let after =
        mcp_post(&s.app, "scripted", Cred::ApiKey(&s.key), &call(4, "echo"), &[("mcp-session-id", &session)]).await;
    assert_eq!(after.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_protocol_headers_must_match_the_body() {
    let s = setup().await;
    let modern = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "echo")];
    let ok = mcp_post(&s.app, "scripted", Cred::ApiKey(&s.key), &call(1, "echo"), &modern).await;
    assert_eq!(ok.status(), 200);
    let seen = s.upstream.seen.lock().expect("lock").last().cloned().expect("seen");
    assert_eq!(seen["mcp-method"], "tools/call");
    assert_eq!(seen["mcp-name"], "echo");
    assert_eq!(seen["mcp-protocol-version"], "2026-07-28");

    for headers in [
        vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "fortune")],
        vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list"), ("mcp-name", "echo")],
        vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call")],
        vec![("mcp-protocol-version", "2026-07-28")],
        vec![("mcp-name", "other")],
    ] {
        let refused = mcp_post(&s.app, "scripted", Cred::ApiKey(&s.key), &call(7, "echo"), &headers).await;
        assert_eq!(refused.status(), 400, "{headers:?}");
        let body: Value = refused.json().await.expect("json");
        assert_eq!(body["error"]["code"], -32020, "{body}");
        assert_eq!(body["id"], 7);
    }
    assert_eq!(s.upstream.seen.lock().expect("lock").len(), 1, "mismatches never reach the upstream");

    let batch = mcp_post(&s.app, "scripted", Cred::ApiKey(&s.key), &json!([call(1, "echo")]), &[]).await;
    assert_eq!(batch.status(), 400);
    let not_json = s
        .app
        .client
        .request(reqwest::Method::POST, "/mcp/scripted", Cred::ApiKey(&s.key))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .expect("post");
    assert_eq!(not_json.status(), 400);
    let body: Value = not_json.json().await.expect("json");
    assert_eq!(body["error"]["code"], -32700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_auth_and_size_are_checked_first() {
    let s = setup_with(|c| {
        c.allowed_origins = vec!["https://app.example".into()];
        c.max_mcp_request_bytes = 2048;
    })
    .await;
    let evil =
        mcp_post(&s.app, "scripted", Cred::ApiKey(&s.key), &call(1, "echo"), &[("origin", "https://evil.example")])
            .await;
    assert_eq!(evil.status(), 403);
    let body: Value = evil.json().await.expect("json");
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    let allowed =
        mcp_post(&s.app, "scripted", Cred::ApiKey(&s.key), &call(1, "echo"), &[("origin", "https://app.example")])
            .await;
    assert_eq!(allowed.status(), 200);

    let huge = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x".repeat(4096)}}});
    let too_big = mcp_post(&s.app, "scripted", Cred::ApiKey(&s.key), &huge, &[]).await;
    assert_eq!(too_big.status(), 413);
    let body: Value = too_big.json().await.expect("json");
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");

    let missing = mcp_post(&s.app, "scripted", Cred::None, &call(1, "echo"), &[]).await;
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.expect("json");
    assert_eq!(body["error"]["code"], "TOKEN_MISSING");
    let session_token = mcp_post(&s.app, "scripted", Cred::Bearer(&s.owner.token), &call(1, "echo"), &[]).await;
    assert_eq!(session_token.status(), 403, "a sign-in session is not an agent key");
    let unknown = mcp_post(&s.app, "nope", Cred::ApiKey(&s.key), &call(1, "echo"), &[]).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(s.upstream.seen.lock().expect("lock").len(), 1, "only the allowed-origin call was forwarded");

    // Revocation takes effect on the very next MCP request.
    let keys = s.owner.keys().await;
    let id = keys[0]["id"].as_str().expect("id").to_owned();
    let (status, _) = s.owner.post_empty(&format!("/v1/keys/{id}/revoke")).await;
    assert_eq!(status, StatusCode::OK);
    let revoked = mcp_post(&s.app, "scripted", Cred::ApiKey(&s.key), &call(1, "echo"), &[]).await;
    assert_eq!(revoked.status(), 401);
    let body: Value = revoked.json().await.expect("json");
    assert_eq!(body["error"]["code"], "TOKEN_INVALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_upstreams_give_clear_errors() {
    let s = setup_with(|c| c.upstream_timeout_secs = 1).await;
    let hang = mcp_post(&s.app, "scripted", Cred::ApiKey(&s.key), &call(1, "hang"), &[]).await;
    assert_eq!(hang.status(), 504);
    let body: Value = hang.json().await.expect("json");
    assert_eq!(body["error"]["code"], "UPSTREAM_TIMEOUT");

    let garbage = spawn_garbage_upstream().await;
    register(&s.app, &s.owner, "garbage", &garbage).await;
    let response = mcp_post(&s.app, "garbage", Cred::ApiKey(&s.key), &call(1, "echo"), &[]).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "UPSTREAM_UNAVAILABLE");
    assert!(body["error"]["message"].as_str().expect("message").contains("garbage"));

    // Nothing listens on a port we just released.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead = format!("http://{}/mcp", closed.local_addr().expect("addr"));
    drop(closed);
    register(&s.app, &s.owner, "dead", &dead).await;
    let response = mcp_post(&s.app, "dead", Cred::ApiKey(&s.key), &call(1, "echo"), &[]).await;
    assert_eq!(response.status(), 502);

    let tool_error = mcp_post(&s.app, "scripted", Cred::ApiKey(&s.key), &call(2, "broken"), &[]).await;
    assert_eq!(tool_error.status(), 200);
    s.app.flush_usage().await;
    let metrics = s.app.client.request(reqwest::Method::GET, "/metrics", Cred::None).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("text");
    for line in [
        r#"prometheus_gateway_requests_total{service="scripted",method="tools/call",outcome="upstream_error"} 1"#,
        r#"prometheus_gateway_requests_total{service="scripted",method="tools/call",outcome="tool_error"} 1"#,
        r#"prometheus_gateway_upstream_errors_total{service="scripted",kind="timeout"} 1"#,
        r#"prometheus_gateway_upstream_errors_total{service="dead",kind="connect"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
}

/// A session id that is not visible ASCII would slip past the binding check (which compares
/// text) and reach the upstream: it is refused before either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_id_that_is_not_visible_ascii_is_refused() {
    let s = setup().await;
    for bad in [&b"sess-\xff"[..], b"sess 1", b"sess\tx"] {
        let value = reqwest::header::HeaderValue::from_bytes(bad).expect("a header value");
        let response = s
            .app
            .client
            .request(reqwest::Method::POST, "/mcp/scripted", Cred::ApiKey(&s.key))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", value)
            .json(&call(1, "echo"))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 400, "{bad:?}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "INVALID_REQUEST", "{body}");
    }
    assert!(s.upstream.seen.lock().expect("lock").is_empty(), "nothing reached the upstream");
}
