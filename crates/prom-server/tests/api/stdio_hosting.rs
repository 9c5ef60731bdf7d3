//! Stdio upstreams as the operator defines them, tried as a hostile tenant would: a service cannot
//! pick another program, add arguments the operator did not allow, or set `PATH`, `LD_PRELOAD`
//! and the like; a process over its memory limit dies and the call is answered with an error (and
//! the hold, for a paid call, released); and one tenant's keys cannot take every process slot.

use std::collections::BTreeMap;

use prom_core::audit::AuditContext;
use prom_core::id::{ServiceId, TenantId};
use prom_core::service::{ServiceSlug, Upstream};
use prom_core::store::NewService;
use prom_core::time::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Cred, TestApp, TestUser, python_stdio};

fn script() -> String {
    format!("{}/tests/fixtures/fake_stdio_mcp.py", env!("CARGO_MANIFEST_DIR"))
}

fn script_path() -> std::path::PathBuf {
    std::path::PathBuf::from(script())
}

async fn register(app: &TestApp, owner: &TestUser, slug: &str) {
    app.state
        .store
        .create_service(
            NewService {
                id: ServiceId::new(),
                tenant_id: TenantId::from_trusted(owner.tenant_id.clone()),
                slug: ServiceSlug::parse(slug).expect("slug"),
                name: slug.into(),
                description: "a stdio upstream".into(),
                upstream: Upstream::Stdio { command: "python3".into(), args: vec![script()], env: BTreeMap::new() },
                prices: BTreeMap::new(),
                charge_tool_errors: false,
                created_at: Timestamp::now(),
            },
            &AuditContext::admin_cli(),
        )
        .await
        .expect("register");
}

async fn post(app: &TestApp, slug: &str, key: &str, session: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = app
        .client
        .request(reqwest::Method::POST, &format!("/mcp/{slug}"), Cred::ApiKey(key))
        .header("accept", "application/json, text/event-stream")
        .json(body);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request.send().await.expect("post")
}

async fn initialize(app: &TestApp, slug: &str, key: &str) -> Result<String, (StatusCode, String)> {
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let response = post(app, slug, key, None, &init).await;
    let status = response.status();
    let session = response.headers().get("mcp-session-id").map(|v| v.to_str().expect("ascii").to_owned());
    let text = response.text().await.expect("text");
    session.ok_or((status, text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_runs_only_what_the_operator_defined() {
    let fixed = prom_server::gateway::StdioCommand {
        name: "fake".into(),
        args: vec![script()],
        extra_args: false,
        env: vec!["FAKE_SETTING".into()],
        ..python_stdio()
    };
    let app = TestApp::spawn_with(|c| c.stdio_commands = vec![fixed]).await;
    let owner = app.with_owner("acme").await;
    let publish = |upstream: Value| {
        let owner = &owner;
        async move { owner.post("/v1/services", json!({"slug": "local", "name": "Local", "upstream": upstream})).await }
    };
    let (status, body) = publish(json!({"command": "python3", "args": ["-c", "print(1)"]})).await;
    assert_eq!(status, 403, "another program: {body}");
    let (status, body) = publish(json!({"command": "fake", "args": ["-c", "import os"]})).await;
    assert_eq!(status, 400, "extra arguments: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("takes no arguments")), "{body}");
    for name in ["PATH", "LD_PRELOAD", "NODE_OPTIONS", "PYTHONSTARTUP", "DYLD_INSERT_LIBRARIES"] {
        let (status, body) = publish(json!({"command": "fake", "env": {name: "/tmp/evil"}})).await;
        assert_eq!(status, 400, "{name}: {body}");
    }
    let (status, body) = publish(json!({"command": "fake", "env": {"OTHER": "x"}})).await;
    assert_eq!(status, 400, "a name the operator did not list: {body}");
    let (status, body) = publish(json!({"command": "fake", "env": {"FAKE_SETTING": "ok"}})).await;
    assert_eq!(status, 201, "{body}");

    // The process sees the fixed PATH and the allowed name, nothing of the gateway's environment.
    let (_, key) = owner.create_key("agent").await;
    let session = initialize(&app, "local", &key).await.expect("a session");
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"env","arguments":{}}});
    let text = post(&app, "local", &key, Some(&session), &call).await.text().await.expect("text");
    assert!(text.contains(r#"\"FAKE_SETTING\": \"ok\""#), "{text}");
    assert!(text.contains(r#"\"PATH\": \"/usr/local/bin:/usr/bin:/bin\""#), "{text}");
    assert!(!text.contains("PROM_") && !text.contains("CARGO"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_over_its_memory_limit_dies_and_its_call_gets_an_error() {
    let app = TestApp::spawn_with(|c| {
        c.stdio_commands = vec![python_stdio()];
        c.stdio_limits.memory_mib = 256;
    })
    .await;
    let owner = app.with_owner("acme").await;
    register(&app, &owner, "local").await;
    let (_, key) = owner.create_key("agent").await;
    let session = initialize(&app, "local", &key).await.expect("python starts within 256 MiB");
    let small = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hog","arguments":{"mib":16}}});
    let text = post(&app, "local", &key, Some(&session), &small).await.text().await.expect("text");
    assert!(text.contains("\"result\""), "16 MiB fits: {text}");
    let big = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"hog","arguments":{"mib":1024}}});
    let text = post(&app, "local", &key, Some(&session), &big).await.text().await.expect("text");
    assert!(text.contains("\"error\"") && text.contains("exited before answering"), "{text}");
    let next = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{}}});
    let response = post(&app, "local", &key, Some(&session), &next).await;
    assert_eq!(response.status(), 404, "the session ended with its process: the client starts a new one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_take_every_process_slot() {
    let app = TestApp::spawn_with(|c| {
        c.stdio_commands = vec![python_stdio()];
        c.max_stdio_sessions = 4;
        c.max_stdio_sessions_per_tenant = 2;
        c.max_stdio_sessions_per_key = 1;
    })
    .await;
    let hog = app.with_owner("hog").await;
    register(&app, &hog, "local").await;
    let (_, first) = hog.create_key("one").await;
    let (_, second) = hog.create_key("two").await;
    let (_, third) = hog.create_key("three").await;
    initialize(&app, "local", &first).await.expect("a first process");
    let (status, body) = initialize(&app, "local", &first).await.expect_err("one per key");
    assert_eq!(status, 429, "{body}");
    initialize(&app, "local", &second).await.expect("a second key of the tenant");
    let (status, body) = initialize(&app, "local", &third).await.expect_err("two per tenant");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("your tenant"), "{body}");

    // Another tenant still gets its process.
    let other = app.with_owner("other").await;
    let (_, key) = other.create_key("agent").await;
    initialize(&app, "local", &key).await.expect("the other tenant is not locked out");
}

/// With `stdio_limits.run_as`, processes run as that user, not as the gateway's (root on CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_can_run_as_another_user() {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status.lines().any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
    });
    if !root {
        eprintln!("SKIPPED: changing user needs the gateway to run as root");
        return;
    }
    // The script where the other user can read it.
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("fake_stdio_mcp.py");
    std::fs::copy(script_path(), &script).expect("copy the fixture");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let fixed = prom_server::gateway::StdioCommand {
        name: "fake".into(),
        args: vec![script.to_string_lossy().into_owned()],
        extra_args: false,
        ..python_stdio()
    };
    let app = TestApp::spawn_with(|c| {
        c.stdio_commands = vec![fixed];
        c.stdio_limits.run_as = Some("nobody:nogroup".into());
    })
    .await;
    let owner = app.with_owner("acme").await;
    let (status, body) =
        owner.post("/v1/services", json!({"slug": "local", "name": "Local", "upstream": {"command": "fake"}})).await;
    assert_eq!(status, 201, "{body}");
    let (_, key) = owner.create_key("agent").await;
    let session = initialize(&app, "local", &key).await.expect("a session");
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"uid","arguments":{}}});
    let text = post(&app, "local", &key, Some(&session), &call).await.text().await.expect("text");
    assert!(text.contains(r#""text": "65534""#), "the process runs as nobody: {text}");
}
