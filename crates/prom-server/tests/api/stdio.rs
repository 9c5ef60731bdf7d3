//! Services whose upstream is a local command: one process per MCP session, messages routed by
//! id and progress token, server-initiated messages on the GET stream, processes reaped when the
//! session ends or the process dies, and nothing of the agent's credential in the process's
//! environment. The upstream is a small Python script (`tests/fixtures/fake_stdio_mcp.py`).

use std::collections::BTreeMap;
use std::time::Duration;

use prom_core::audit::AuditContext;
use prom_core::id::{ServiceId, TenantId};
use prom_core::service::{ServiceSlug, Upstream};
use prom_core::store::NewService;
use prom_core::time::Timestamp;
use serde_json::{Value, json};

use crate::support::{Cred, TestApp, TestUser};

struct Setup {
    app: TestApp,
    owner: TestUser,
    key: String,
}

async fn setup() -> Setup {
    let app = TestApp::spawn_with(|c| c.stdio_commands = vec![crate::support::python_stdio()]).await;
    let owner = app.with_owner("acme").await;
    let script = format!("{}/tests/fixtures/fake_stdio_mcp.py", env!("CARGO_MANIFEST_DIR"));
    let env: BTreeMap<String, String> = [("FAKE_SETTING".to_owned(), "configured".to_owned())].into_iter().collect();
    app.state
        .store
        .create_service(
            NewService {
                id: ServiceId::new(),
                tenant_id: TenantId::from_trusted(owner.tenant_id.clone()),
                slug: ServiceSlug::parse("local").expect("slug"),
                name: "local".into(),
                description: "a stdio upstream".into(),
                upstream: Upstream::Stdio { command: "python3".into(), args: vec![script], env },
                prices: BTreeMap::new(),
                charge_tool_errors: false,
                created_at: Timestamp::now(),
            },
            &AuditContext::admin_cli(),
        )
        .await
        .expect("register");
    let (_, key) = owner.create_key("agent").await;
    Setup { app, owner, key }
}

async fn post(app: &TestApp, key: &str, session: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = app
        .client
        .request(reqwest::Method::POST, "/mcp/local", Cred::ApiKey(key))
        .header("accept", "application/json, text/event-stream")
        .json(body);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request.send().await.expect("post")
}

/// The `data:` payloads of an SSE body, parsed.
fn events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|event| {
            event.lines().find_map(|line| line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")))
        })
        .map(|data| serde_json::from_str(data).expect("json event"))
        .collect()
}

async fn initialize(app: &TestApp, key: &str) -> String {
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let response = post(app, key, None, &init).await;
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"].to_str().expect("session").to_owned();
    let events = events(&response.text().await.expect("text"));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["result"]["serverInfo"]["name"], "fake-stdio");
    session
}

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{"n":1},"_meta":{"progressToken":format!("p{id}")}}})
}

fn text_of(event: &Value) -> String {
    event["result"]["content"][0]["text"].as_str().expect("text").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_a_process_and_messages_find_their_way() {
    let s = setup().await;
    let session = initialize(&s.app, &s.key).await;
    assert_eq!(s.app.state.gateway.stdio.running(), 1);

    let echo = events(&post(&s.app, &s.key, Some(&session), &call(1, "echo")).await.text().await.expect("text"));
    assert_eq!(text_of(&echo[0]), r#"echo:{"n": 1}"#);

    // Progress carrying the request's token travels on that request's stream, in order.
    let countdown =
        events(&post(&s.app, &s.key, Some(&session), &call(2, "countdown")).await.text().await.expect("text"));
    let progress: Vec<i64> = countdown.iter().filter_map(|e| e["params"]["progress"].as_i64()).collect();
    assert_eq!(progress, vec![1, 2, 3]);
    assert_eq!(countdown.last().expect("result")["id"], 2);

    // A server-to-client request goes to the GET stream; the client's answer comes back as 202.
    let mut stream = s
        .app
        .client
        .request(reqwest::Method::GET, "/mcp/local", Cred::ApiKey(&s.key))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .expect("get");
    assert_eq!(stream.status(), 200);
    let ask = events(&post(&s.app, &s.key, Some(&session), &call(3, "ask")).await.text().await.expect("text"));
    assert_eq!(ask.len(), 1, "the sampling request is not on the tool call's stream: {ask:?}");
    let first = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .expect("event")
        .expect("chunk")
        .expect("bytes");
    let request = &events(std::str::from_utf8(&first).expect("utf8"))[0];
    assert_eq!(request["method"], "sampling/createMessage");
    let answer = json!({"jsonrpc":"2.0","id":"srv-1","result":{"model":"m"}});
    let accepted = post(&s.app, &s.key, Some(&session), &answer).await;
    assert_eq!(accepted.status(), 202);
    let second = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .expect("event")
        .expect("chunk")
        .expect("bytes");
    let note = &events(std::str::from_utf8(&second).expect("utf8"))[0];
    assert_eq!(note["method"], "notifications/message");

    // The process sees the configured environment and nothing of the agent's credential.
    let env = events(&post(&s.app, &s.key, Some(&session), &call(4, "env")).await.text().await.expect("text"));
    let env: Value = serde_json::from_str(&text_of(&env[0])).expect("env json");
    assert_eq!(env["FAKE_SETTING"], "configured");
    assert!(!env.to_string().contains(&s.key[10..]));
    assert!(env.get("PROM_TEST_DATABASE_URL").is_none(), "the gateway's own environment is not inherited");

    // Another key of the same tenant cannot use the session.
    let (_, other) = s.owner.create_key("other").await;
    assert_eq!(post(&s.app, &other, Some(&session), &call(5, "echo")).await.status(), 404);

    // DELETE ends the process (and no zombie is left).
    let pid = events(&post(&s.app, &s.key, Some(&session), &call(6, "pid")).await.text().await.expect("text"));
    let pid = text_of(&pid[0]);
    let deleted = s
        .app
        .client
        .request(reqwest::Method::DELETE, "/mcp/local", Cred::ApiKey(&s.key))
        .header("mcp-session-id", &session)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    assert_eq!(s.app.state.gateway.stdio.running(), 0);
    wait_gone(&pid).await;
    assert_eq!(post(&s.app, &s.key, Some(&session), &call(7, "echo")).await.status(), 404);
}

/// Waits until `/proc/<pid>` is gone: killed and reaped.
async fn wait_gone(pid: &str) {
    for _ in 0..100 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("process {pid} is still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_process_fails_its_requests_and_is_reaped() {
    let s = setup().await;
    let session = initialize(&s.app, &s.key).await;
    let pid = events(&post(&s.app, &s.key, Some(&session), &call(1, "pid")).await.text().await.expect("text"));
    let pid = text_of(&pid[0]);
    let crashed = events(&post(&s.app, &s.key, Some(&session), &call(2, "crash")).await.text().await.expect("text"));
    assert_eq!(crashed.len(), 1);
    assert_eq!(crashed[0]["id"], 2);
    assert_eq!(crashed[0]["error"]["code"], -32603);
    wait_gone(&pid).await;
    assert_eq!(s.app.state.gateway.stdio.running(), 0);
    let after = post(&s.app, &s.key, Some(&session), &call(3, "echo")).await;
    assert!(after.status() == 404 || after.status() == 502, "{}", after.status());

    // Without a session, only initialize may start a process.
    let no_session = post(&s.app, &s.key, None, &call(4, "echo")).await;
    assert_eq!(no_session.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_every_process() {
    let s = setup().await;
    let first = initialize(&s.app, &s.key).await;
    let second = initialize(&s.app, &s.key).await;
    assert_ne!(first, second);
    let mut pids = Vec::new();
    for session in [&first, &second] {
        let pid = events(&post(&s.app, &s.key, Some(session), &call(1, "pid")).await.text().await.expect("text"));
        pids.push(text_of(&pid[0]));
    }
    assert_eq!(s.app.state.gateway.stdio.running(), 2);
    s.app.state.gateway.stdio.shutdown();
    for pid in pids {
        wait_gone(&pid).await;
    }
}
