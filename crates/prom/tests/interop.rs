//! Interop with real MCP clients: the official TypeScript MCP SDK (the scripts in tests/interop/)
//! over Streamable HTTP with either key header, and over stdio through `prom connect` started the
//! way Claude Desktop starts it; and `prom connect` itself without a key and with a refused one.
//!
//! The scripts take their target from the environment (see tests/interop/lib.mjs), so [`run_node`]
//! runs them against any endpoint: today demo-mcp served in-process, a fake gateway that refuses
//! every key, and later the gateway's `/mcp/demo` behind `prom serve` with real and revoked keys.
//! Without node or tests/interop/node_modules the SDK tests say SKIPPED; with `CI` set they fail.

// Tests fail by panicking; the library lints against it do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, CustomNotification, CustomRequest,
    CustomResult, ErrorData, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    ServerNotification,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[path = "common/demo_gateway.rs"]
mod demo_gateway;

use self::demo_gateway::{DemoGateway, spawn_demo_gateway, spawn_demo_gateway_with};

const PROM: &str = env!("CARGO_BIN_EXE_prom");
const ECHO_TEXT: &str = "hello from the TypeScript SDK";
const REFUSAL: &str = "this key was revoked; mint a new one with `prom keys create`";

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

/// Whether the SDK tests can run. Says SKIPPED loudly when they cannot, and fails under CI, where
/// scripts/test has installed the SDK.
fn node_ready() -> bool {
    let node = Command::new("node").arg("--version").output().is_ok_and(|output| output.status.success());
    let sdk = interop_dir().join("node_modules/@modelcontextprotocol/sdk/package.json").is_file();
    if node && sdk {
        return true;
    }
    let missing = "node/npm or tests/interop/node_modules missing \
                   (install with `npm ci --prefix tests/interop`, which ./scripts/test does)";
    if std::env::var_os("CI").is_some_and(|value| !value.is_empty()) {
        panic!("{missing}; CI is set, and there the TypeScript SDK interop tests must run");
    }
    eprintln!("SKIPPED: {missing}");
    false
}

/// Runs `tests/interop/{script}` with `envs` added to this process's environment, and returns the
/// one JSON line it prints. Panics with the script's stderr when it fails.
fn run_node(script: &str, envs: &[(&str, &str)]) -> Value {
    let output = Command::new("node")
        .arg(script)
        .current_dir(interop_dir())
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("start node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} {envs:?} failed ({}):\n{stderr}\nstdout:\n{stdout}", output.status);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|error| panic!("{script} printed no JSON ({error}):\n{stdout}\n{stderr}"))
}

/// demo-mcp on a free loopback port, in this process, until the test ends.
async fn spawn_demo() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(demo_mcp::serve_http(listener, std::future::pending()));
    format!("http://{address}{}", demo_mcp::MCP_PATH)
}

/// What every SDK run against the demo must have seen.
fn assert_demo_exercised(result: &Value, transport: &str) {
    assert_eq!(result["transport"], transport, "{result}");
    assert_eq!(result["server"], "demo-mcp", "{result}");
    assert_eq!(result["tools"], json!(["countdown", "echo", "fortune"]), "{result}");
    assert_eq!(result["echo"], ECHO_TEXT, "{result}");
    assert_eq!(result["countdown"], "liftoff after 5", "{result}");
    assert_eq!(result["progress"], json!([1, 2, 3, 4, 5]), "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_over_streamable_http_with_either_key_header() {
    if !node_ready() {
        return;
    }
    let url = spawn_demo().await;
    for mode in ["bearer", "x-api-key"] {
        let result = run_node(
            "http.mjs",
            &[("MCP_URL", &url), ("PROM_KEY", "prom_test_not_checked_by_demo"), ("HEADER_MODE", mode)],
        );
        assert_demo_exercised(&result, "http");
        assert_eq!(result["session"], true, "demo-mcp is stateful: {result}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_over_stdio_through_prom_connect() {
    if !node_ready() {
        return;
    }
    let url = spawn_demo().await;
    let result =
        run_node("stdio.mjs", &[("MCP_URL", &url), ("PROM_KEY", "prom_test_not_checked_by_demo"), ("PROM_BIN", PROM)]);
    assert_demo_exercised(&result, "stdio");
}

/// An upstream whose tool `ask_host` asks the host for roots, a sampled message and an elicited
/// answer while it runs, logs, sends a custom notification, and later announces a changed tool list
/// outside any request (so on the session's GET stream); it also answers `prometheus/echo`.
#[derive(Debug, Clone)]
struct AskingServer;

// Roots, sampling and logging are deprecated by the 2026-07-28 spec, and what hosts of 2025-11-25 use.
#[allow(deprecated)]
impl ServerHandler for AskingServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_logging().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(serde_json::from_value(json!({ "tools": [{
            "name": "ask_host", "description": "Ask the host three questions", "inputSchema": { "type": "object" }
        }] }))
        .unwrap())
    }

    async fn call_tool(
        &self,
        _request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let peer = context.peer.clone();
        let failed = |error: rmcp::ServiceError| ErrorData::internal_error(error.to_string(), None);
        let roots = peer.list_roots().await.map_err(failed)?;
        let sampling = serde_json::from_value(json!({
            "messages": [{ "role": "user", "content": { "type": "text", "text": "a question" } }], "maxTokens": 10
        }))
        .unwrap();
        let sampled = peer.create_message(sampling).await.map_err(failed)?;
        let elicit = serde_json::from_value(json!({ "method": "elicitation/create", "params": {
            "mode": "form", "message": "your name?",
            "requestedSchema": { "type": "object", "properties": { "name": { "type": "string" } } }
        } }))
        .unwrap();
        let elicited = serde_json::to_value(peer.send_request(elicit).await.map_err(failed)?).unwrap();
        let log = serde_json::from_value(json!({ "level": "info", "data": "asked the host" })).unwrap();
        peer.notify_logging_message(log).await.map_err(failed)?;
        let custom = CustomNotification::new("notifications/prometheus/custom", Some(json!({ "n": 1 })));
        peer.send_notification(ServerNotification::CustomNotification(custom)).await.map_err(failed)?;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = peer.notify_tool_list_changed().await;
        });
        let sampled = serde_json::to_value(&sampled).unwrap();
        let answer = format!(
            "roots={} sampled={} elicited={}:{}",
            roots.roots[0].uri, sampled["content"]["text"], elicited["action"], elicited["content"]["name"]
        );
        Ok(CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text(answer)])))
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        Ok(CustomResult::new(json!({ "method": request.method, "params": request.params })))
    }
}

async fn spawn_asking_server() -> String {
    let service = StreamableHttpService::new(
        || Ok(AskingServer),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = axum::Router::new().nest_service("/mcp", service);
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}/mcp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_requests_notifications_and_custom_methods_cross_prom_connect() {
    if !node_ready() {
        return;
    }
    let url = spawn_asking_server().await;
    let direct = run_node("two-way.mjs", &[("TRANSPORT", "http"), ("MCP_URL", &url)]);
    let bridged =
        run_node("two-way.mjs", &[("TRANSPORT", "stdio"), ("MCP_URL", &url), ("PROM_KEY", "k"), ("PROM_BIN", PROM)]);
    for result in [&direct, &bridged] {
        assert_eq!(
            result["answer"], "roots=file:///interop sampled=\"sampled: a question\" elicited=\"accept\":\"ada\"",
            "{result}"
        );
        assert_eq!(result["logs"], json!(["asked the host"]), "{result}");
        assert_eq!(result["tools_changed"], true, "{result}");
        assert_eq!(
            result["custom_notifications"],
            json!([{ "jsonrpc": "2.0", "method": "notifications/prometheus/custom", "params": { "n": 1 } }]),
            "{result}"
        );
        assert_eq!(
            result["custom_result"],
            json!({ "method": "prometheus/echo", "params": { "said": "hi" } }),
            "{result}"
        );
    }
}

/// A gateway that refuses every key as Prometheus does: 401 with `{"error":{"code","message"}}`,
/// with or without a `WWW-Authenticate` challenge. Returns its URL and the key headers it saw.
async fn spawn_refusing_gateway(challenge: bool) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_by_handler = seen.clone();
    let refuse = move |headers: HeaderMap| {
        let seen = seen_by_handler.clone();
        async move {
            for name in [header::AUTHORIZATION.as_str(), "x-api-key"] {
                if let Some(value) = headers.get(name).and_then(|value| value.to_str().ok()) {
                    seen.lock().unwrap().push(format!("{name}: {value}"));
                }
            }
            let body = axum::Json(json!({ "error": { "code": "TOKEN_INVALID", "message": REFUSAL } }));
            let mut response = (StatusCode::UNAUTHORIZED, body).into_response();
            if challenge {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer realm=\"prometheus\"".parse().unwrap());
            }
            response
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(refuse)).await });
    (format!("http://{address}/mcp/demo"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_sees_token_invalid_over_http_and_stdio() {
    if !node_ready() {
        return;
    }
    let (url, _) = spawn_refusing_gateway(false).await;
    // Built at run time so no full-length key literal sits in the repository.
    let key = &format!("prom_test_{}", "0".repeat(64));
    let over_http = run_node("revoked.mjs", &[("TRANSPORT", "http"), ("MCP_URL", &url), ("PROM_KEY", key)]);
    assert_eq!(over_http["error_code"], "TOKEN_INVALID", "{over_http}");
    assert_eq!(over_http["http_status"], 401, "{over_http}");
    assert_eq!(over_http["step"], "connect", "{over_http}");

    let over_stdio =
        run_node("revoked.mjs", &[("TRANSPORT", "stdio"), ("MCP_URL", &url), ("PROM_KEY", key), ("PROM_BIN", PROM)]);
    assert_eq!(over_stdio["error_code"], "TOKEN_INVALID", "{over_stdio}");
    assert_eq!(over_stdio["jsonrpc_code"], -32001, "{over_stdio}");
    assert!(over_stdio["message"].as_str().unwrap().contains(REFUSAL), "{over_stdio}");
    let stderr = over_stdio["prom_stderr"].as_str().unwrap();
    assert!(stderr.starts_with(&format!("TOKEN_INVALID: {REFUSAL}\n")), "{stderr}");
}

/// `prom connect` with a clean environment plus `envs`, its stdin a pipe we hold open.
fn prom_connect(args: &[&str], envs: &[(&str, &str)]) -> tokio::process::Child {
    tokio::process::Command::new(PROM)
        .arg("connect")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn prom connect")
}

async fn stderr_of(child: &mut tokio::process::Child) -> String {
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    stderr
}

#[tokio::test]
async fn connect_without_a_key_says_token_missing_and_exits_2() {
    for envs in [&[][..], &[("PROMETHEUS_API_KEY", ""), ("AGENT_TOKEN", "  ")][..]] {
        let mut child = prom_connect(&["http://127.0.0.1:9/mcp/demo"], envs);
        // Standard input stays open: the answer must not wait for it.
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits at once").unwrap();
        let stderr = stderr_of(&mut child).await;
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.starts_with("TOKEN_MISSING:"), "{stderr}");
        assert!(stderr.contains("PROMETHEUS_API_KEY") && stderr.contains("AGENT_TOKEN"), "{stderr}");
        let mut stdout = String::new();
        child.stdout.take().unwrap().read_to_string(&mut stdout).await.unwrap();
        assert_eq!(stdout, "", "nothing but MCP may reach standard output");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_with_a_refused_key_answers_the_request_and_exits_2() {
    let key = &format!("prom_test_{}", "1".repeat(64));
    for (challenge, key_header, variable) in
        [(false, "bearer", "PROMETHEUS_API_KEY"), (true, "x-api-key", "AGENT_TOKEN")]
    {
        let (url, seen) = spawn_refusing_gateway(challenge).await;
        let mut child = prom_connect(&[&url, "--key-header", key_header], &[(variable, key)]);
        let initialize = json!({
            "jsonrpc": "2.0", "id": 7, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": { "name": "interop-test", "version": "1" }
            }
        });
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{initialize}\n").as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();

        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line)).await.expect("an answer").unwrap();
        let answer: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON-RPC: {line:?}"));
        assert_eq!(answer["id"], 7, "{answer}");
        assert_eq!(answer["error"]["code"], -32001, "{answer}");
        assert_eq!(answer["error"]["data"]["code"], "TOKEN_INVALID", "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(REFUSAL), "{answer}");

        // It exits by itself, standard input still open.
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits").unwrap();
        let stderr = stderr_of(&mut child).await;
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.starts_with(&format!("TOKEN_INVALID: {REFUSAL}\n")), "{stderr}");
        assert!(stderr.contains(variable), "names where the key came from: {stderr}");
        assert!(!stderr.contains(key), "the key must never be printed: {stderr}");
        drop(stdin);

        let expected = match key_header {
            "bearer" => format!("authorization: Bearer {key}"),
            _ => format!("x-api-key: {key}"),
        };
        let seen = seen.lock().unwrap().clone();
        assert!(!seen.is_empty() && seen.iter().all(|header| *header == expected), "{seen:?}");
    }
}

/// Runs revoked.mjs connected with a working key, revokes the key, then lets it call again.
async fn revoked_mid_session(gateway: &DemoGateway, transport: &str, token: &str, label: &str) -> Value {
    let (id, key) = gateway.create_key(token, label).await;
    let mut node = tokio::process::Command::new("node")
        .arg("revoked.mjs")
        .current_dir(interop_dir())
        .envs([
            ("MCP_URL", gateway.mcp_url.as_str()),
            ("PROM_KEY", key.as_str()),
            ("HEADER_MODE", "x-api-key"),
            ("TRANSPORT", transport),
            ("PROM_BIN", PROM),
            ("WAIT_STDIN", "1"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(node.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(60), stdout.read_line(&mut line)).await.expect("connected").unwrap();
    assert_eq!(line.trim(), r#"{"connected":true}"#, "revoked.mjs did not connect with a valid key");
    gateway.revoke(token, &id).await;
    let mut stdin = node.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    drop(stdin);
    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(60), stdout.read_to_string(&mut rest)).await.expect("result").unwrap();
    let status = node.wait().await.unwrap();
    assert!(status.success(), "revoked.mjs failed: {rest}");
    let result: Value = serde_json::from_str(rest.lines().last().unwrap_or_default()).unwrap();
    assert!(!result.to_string().contains(&key[10..]), "no error shows the key: {result}");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_through_the_gateway_with_real_and_revoked_keys() {
    if !node_ready() {
        return;
    }
    let gateway = spawn_demo_gateway().await;
    for mode in ["bearer", "x-api-key"] {
        let result =
            run_node("http.mjs", &[("MCP_URL", &gateway.mcp_url), ("PROM_KEY", &gateway.key), ("HEADER_MODE", mode)]);
        assert_demo_exercised(&result, "http");
    }
    let result =
        run_node("stdio.mjs", &[("MCP_URL", &gateway.mcp_url), ("PROM_KEY", &gateway.key), ("PROM_BIN", PROM)]);
    assert_demo_exercised(&result, "stdio");

    // A key revoked while its client is connected fails on its very next call, both ways.
    let token = gateway.owner_token().await;
    let http = revoked_mid_session(&gateway, "http", &token, "sdk over http").await;
    assert_eq!(http["error_code"], "TOKEN_INVALID", "{http}");
    assert_eq!(http["step"], "listTools", "{http}");
    let stdio = revoked_mid_session(&gateway, "stdio", &token, "sdk over prom connect").await;
    assert_eq!(stdio["error_code"], "TOKEN_INVALID", "{stdio}");
    assert!(stdio["prom_stderr"].as_str().unwrap_or_default().contains("TOKEN_INVALID"), "{stdio}");

    drop(gateway.child);
}

/// An upstream on the official Rust SDK whose tool `route` mirrors its `region` argument into an
/// `Mcp-Param-Region` header (`x-mcp-header`, 2026-07-28): the SDK refuses a call whose header is
/// missing or differs from the body.
#[derive(Debug, Clone)]
struct RegionServer;

fn route_tool() -> rmcp::model::Tool {
    serde_json::from_value(json!({
        "name": "route", "description": "Routes to a region",
        "inputSchema": { "type": "object", "required": ["region"],
            "properties": { "region": { "type": "string", "x-mcp-header": "Region" } } }
    }))
    .unwrap()
}

impl ServerHandler for RegionServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(serde_json::from_value(json!({ "tools": [route_tool()] })).unwrap())
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        (name == "route").then(route_tool)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let region = request.arguments.as_ref().and_then(|a| a.get("region")).and_then(Value::as_str).unwrap_or("?");
        Ok(CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text(format!("routed to {region}"))])))
    }
}

/// A stateless (2026-07-28) `tools/call route` with its standard headers, and `Mcp-Param-Region`
/// when given; the JSON-RPC answer.
async fn call_route(url: &str, key: Option<&str>, param: Option<&str>) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "route", "arguments": {"region": "eu-west"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}});
    let mut request = reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "route")
        .json(&body);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    if let Some(param) = param {
        request = request.header("mcp-param-region", param);
    }
    let text = request.send().await.unwrap().text().await.unwrap();
    let json = text.lines().find_map(|line| line.strip_prefix("data:")).map_or(text.as_str(), str::trim);
    serde_json::from_str(json).unwrap_or_else(|_| panic!("not JSON-RPC: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_with_an_x_mcp_header_argument_works_through_the_gateway() {
    let service = StreamableHttpService::new(
        || Ok(RegionServer),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().nest_service("/mcp", service)).await });
    let upstream = format!("http://{address}/mcp");

    // The SDK checks the header against the body, directly.
    let direct = call_route(&upstream, None, Some("eu-west")).await;
    assert_eq!(direct["result"]["content"][0]["text"], "routed to eu-west", "{direct}");
    let refused = call_route(&upstream, None, None).await;
    assert!(refused.get("error").is_some(), "the SDK requires the header: {refused}");

    // Through the gateway: the header reaches the SDK.
    let allow = format!("[\"{address}\"]");
    let gateway = spawn_demo_gateway_with(&[("PROM_EGRESS__ALLOW_HOSTS", &allow)]).await;
    let token = gateway.owner_token().await;
    let published = reqwest::Client::new()
        .post(format!("{}/v1/services", gateway.base))
        .bearer_auth(&token)
        .json(&json!({"slug": "regions", "name": "Regions", "upstream": {"url": upstream}}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201, "{}", published.text().await.unwrap());
    let (_, key) = gateway.create_key(&token, "regions agent").await;
    let url = format!("{}/mcp/regions", gateway.base);
    let through = call_route(&url, Some(&key), Some("eu-west")).await;
    assert_eq!(through["result"]["content"][0]["text"], "routed to eu-west", "{through}");
    let mismatched = call_route(&url, Some(&key), Some("us-east")).await;
    assert!(mismatched.get("error").is_some(), "a header that contradicts the body is refused: {mismatched}");
}
