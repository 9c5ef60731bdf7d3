//! End-to-end tests of the demo server through rmcp's real clients: Streamable HTTP (in both the
//! session-based 2025-11-25 protocol and the stateless 2026-07-28 one) and stdio via the binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    future::Future,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use demo_mcp::{Countdown, CountdownError, FORTUNE_PREFIX, FORTUNES, SERVER_NAME};
use rmcp::{
    ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceError, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ClientJsonRpcMessage, ErrorCode,
        Implementation, ProtocolVersion, ServerJsonRpcMessage,
    },
    service::RunningService,
    transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess, Transport},
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    sync::oneshot,
    task::JoinHandle,
};

/// Every test gives up after this rather than hang the suite.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A demo server on `127.0.0.1:0`, shut down (and checked to stop) by [`TestServer::stop`].
struct TestServer {
    url: String,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    async fn spawn() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{}", listener.local_addr().unwrap(), demo_mcp::MCP_PATH);
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(demo_mcp::serve_http(listener, async move {
            let _ = signal.await;
        }));
        Self { url, shutdown, task }
    }

    /// Connects a client that speaks `era`, recording every message on the wire.
    async fn connect(&self, era: Era) -> (RunningService<RoleClient, ClientConfig>, WireLog) {
        let log = WireLog::default();
        let transport =
            Recorded { inner: StreamableHttpClientTransport::from_uri(self.url.as_str()), log: log.clone() };
        let client = match era {
            Era::Sessions => client_config(ProtocolVersion::V_2025_11_25).serve(transport).await.unwrap(),
            Era::Stateless => client_config(ProtocolVersion::V_2026_07_28)
                .serve_with_lifecycle(
                    transport,
                    ClientLifecycleMode::Discover { preferred_versions: vec![ProtocolVersion::V_2026_07_28] },
                )
                .await
                .unwrap(),
        };
        (client, log)
    }

    async fn stop(self) {
        self.shutdown.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve_http did not return after shutdown")
            .unwrap()
            .unwrap();
    }
}

/// The two ways a client can talk to the server; the gateway may meet either.
#[derive(Debug, Clone, Copy)]
enum Era {
    /// `initialize` handshake and an `Mcp-Session-Id` (protocol 2025-11-25).
    Sessions,
    /// `server/discover` and self-contained requests (protocol 2026-07-28).
    Stateless,
}

const ERAS: [Era; 2] = [Era::Sessions, Era::Stateless];

fn client_config(version: ProtocolVersion) -> ClientConfig {
    ClientConfig::new(ClientCapabilities::default(), Implementation::new("demo-mcp-test", "0.0.0"))
        .with_protocol_version(version)
}

/// Every JSON-RPC message a client sent (`"sent"`) or received (`"received"`), in wire order.
#[derive(Debug, Clone, Default)]
struct WireLog(Arc<Mutex<Vec<(&'static str, Value)>>>);

impl WireLog {
    fn push(&self, direction: &'static str, message: Value) {
        self.0.lock().unwrap().push((direction, message));
    }

    fn entries(&self) -> Vec<(&'static str, Value)> {
        self.0.lock().unwrap().clone()
    }
}

/// A client transport that notes each message before passing it on. rmcp hands notifications to
/// the client handler on spawned tasks, so only the transport sees their true order.
struct Recorded<T> {
    inner: T,
    log: WireLog,
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Recorded<T> {
    type Error = T::Error;

    fn send(&mut self, item: ClientJsonRpcMessage) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.log.push("sent", serde_json::to_value(&item).unwrap());
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        let message = self.inner.receive().await?;
        self.log.push("received", serde_json::to_value(&message).unwrap());
        Some(message)
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

fn call(tool: &str, arguments: Value) -> CallToolRequestParams {
    let Value::Object(arguments) = arguments else {
        panic!("tool arguments must be an object");
    };
    CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments)
}

fn only_text(result: &CallToolResult) -> &str {
    assert_eq!(result.content.len(), 1, "{result:?}");
    &result.content[0].as_text().expect("text content").text
}

async fn with_timeout<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, test).await.expect("test timed out")
}

#[tokio::test]
async fn lists_three_tools_with_object_input_schemas() {
    with_timeout(async {
        let server = TestServer::spawn().await;
        for era in ERAS {
            let (client, _) = server.connect(era).await;
            let info = client.peer_info().unwrap();
            assert_eq!(info.server_info.as_ref().unwrap().name, SERVER_NAME, "{era:?}");
            assert!(info.instructions.as_deref().unwrap().contains("Prometheus demo service"), "{era:?}");

            let mut tools = client.list_all_tools().await.unwrap();
            tools.sort_by(|a, b| a.name.cmp(&b.name));
            let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
            assert_eq!(names, ["countdown", "echo", "fortune"], "{era:?}");
            for tool in &tools {
                assert_eq!(tool.input_schema.get("type"), Some(&json!("object")));
                assert!(tool.description.is_some(), "{} has no description", tool.name);
            }
            let required = |index: usize| tools[index].input_schema.get("required").cloned();
            assert_eq!(required(0), Some(json!(["n"])), "countdown");
            assert_eq!(required(1), Some(json!(["text"])), "echo");
            let countdown_n = &tools[0].input_schema["properties"]["n"];
            assert_eq!(countdown_n["minimum"], json!(1));
            assert_eq!(countdown_n["maximum"], json!(100));
            client.cancel().await.unwrap();
        }
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn echo_returns_its_text_and_fortune_a_known_fortune() {
    with_timeout(async {
        let server = TestServer::spawn().await;
        for era in ERAS {
            let (client, _) = server.connect(era).await;

            let text = "héllo, gateway ✓";
            let echoed = client.call_tool(call("echo", json!({ "text": text }))).await.unwrap();
            assert_ne!(echoed.is_error, Some(true), "{era:?}");
            assert_eq!(only_text(&echoed), text, "{era:?}");

            let fortune = client.call_tool(call("fortune", json!({}))).await.unwrap();
            assert_ne!(fortune.is_error, Some(true), "{era:?}");
            let fortune = only_text(&fortune);
            let body =
                fortune.strip_prefix(FORTUNE_PREFIX).unwrap_or_else(|| panic!("{fortune:?} lacks the fortune prefix"));
            assert!(FORTUNES.contains(&body), "{fortune:?} is not a known fortune");
            client.cancel().await.unwrap();
        }
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn countdown_sends_progress_in_order_before_its_result() {
    with_timeout(async {
        let server = TestServer::spawn().await;
        for era in ERAS {
            let (client, log) = server.connect(era).await;
            let started = Instant::now();
            let result = client.call_tool(call("countdown", json!({ "n": 5, "interval_ms": 20 }))).await.unwrap();
            // Four pauses separate five notifications.
            assert!(started.elapsed() >= Duration::from_millis(80), "{era:?}");
            assert_ne!(result.is_error, Some(true), "{era:?}");
            assert_eq!(only_text(&result), "liftoff after 5", "{era:?}");

            let entries = log.entries();
            let request_at = entries
                .iter()
                .position(|(direction, message)| *direction == "sent" && message["method"] == "tools/call")
                .expect("the call was sent");
            let request = &entries[request_at].1;
            let token = request["params"]["_meta"]["progressToken"].clone();
            assert!(!token.is_null(), "rmcp sends a progress token: {request}");

            // Everything the server sent about this call, from the request on, in wire order.
            let replies: Vec<&Value> = entries[request_at + 1..]
                .iter()
                .filter(|(direction, _)| *direction == "received")
                .map(|(_, message)| message)
                .filter(|message| message["id"] == request["id"] || message["params"]["progressToken"] == token)
                .collect();
            let expected: Vec<Value> = (1..=5)
                .map(|step| {
                    json!({
                        "jsonrpc": "2.0",
                        "method": "notifications/progress",
                        "params": {
                            "progressToken": token,
                            "progress": f64::from(step),
                            "total": 5.0,
                            "message": format!("{} left", 5 - step),
                        },
                    })
                })
                .collect();
            assert_eq!(replies.len(), 6, "{era:?}: {replies:#?}");
            for (got, want) in replies.iter().zip(&expected) {
                assert_eq!(*got, want, "{era:?}");
            }
            assert_eq!(replies[5]["id"], request["id"], "{era:?}: the result comes last");
            client.cancel().await.unwrap();
        }
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn countdown_refuses_bad_input_without_breaking_the_session() {
    with_timeout(async {
        let server = TestServer::spawn().await;
        for era in ERAS {
            let (client, _) = server.connect(era).await;
            for (arguments, reason) in [
                (json!({ "n": 0 }), "n must be between 1 and 100, got 0"),
                (json!({ "n": 1000 }), "n must be between 1 and 100, got 1000"),
                (json!({ "n": -1 }), "n must be between 1 and 100, got -1"),
                (json!({ "n": 3, "interval_ms": 60000 }), "interval_ms must be between 0 and 1000, got 60000"),
            ] {
                let refused = client.call_tool(call("countdown", arguments)).await.unwrap();
                assert_eq!(refused.is_error, Some(true), "{era:?}");
                assert_eq!(only_text(&refused), reason, "{era:?}");
            }

            // Arguments that do not fit the schema are refused by rmcp before the tool runs, also
            // as a tool error.
            for arguments in [json!({}), json!({ "n": "five" })] {
                let refused = client.call_tool(call("countdown", arguments.clone())).await.unwrap();
                assert_eq!(refused.is_error, Some(true), "{era:?} {arguments}");
                assert!(
                    only_text(&refused).starts_with("failed to deserialize parameters"),
                    "{era:?} {arguments}: {refused:?}"
                );
            }

            // An unknown tool is a protocol error.
            let error = client.call_tool(call("nope", json!({}))).await.unwrap_err();
            let ServiceError::McpError(error) = error else {
                panic!("{era:?}: expected an MCP error, got {error:?}");
            };
            assert_eq!(error.code, ErrorCode::INVALID_PARAMS, "{era:?}");

            // The server is still healthy afterwards.
            let result = client.call_tool(call("countdown", json!({ "n": 1 }))).await.unwrap();
            assert_eq!(only_text(&result), "liftoff after 1", "{era:?}");
            client.cancel().await.unwrap();
        }
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_ends_open_sessions() {
    with_timeout(async {
        let server = TestServer::spawn().await;
        // A session-era client keeps an SSE stream open; stopping must not wait for it to leave.
        let (client, _) = server.connect(Era::Sessions).await;
        client.list_all_tools().await.unwrap();
        server.stop().await;
        drop(client);
    })
    .await;
}

#[tokio::test]
async fn stdio_binary_serves_echo() {
    with_timeout(async {
        let transport =
            TokioChildProcess::new(tokio::process::Command::new(env!("CARGO_BIN_EXE_demo-mcp")).configure(|command| {
                command.arg("--stdio");
            }))
            .unwrap();
        let client = client_config(ProtocolVersion::V_2025_11_25).serve(transport).await.unwrap();
        assert_eq!(client.peer_info().unwrap().server_info.as_ref().unwrap().name, SERVER_NAME);
        let echoed = client.call_tool(call("echo", json!({ "text": "over stdio" }))).await.unwrap();
        assert_eq!(only_text(&echoed), "over stdio");
        client.cancel().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn http_binary_announces_its_address_and_stops_on_sigterm() {
    with_timeout(async {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_demo-mcp"))
            .args(["--http", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = stderr.next_line().await.unwrap().expect("exited before listening");
            if let Some(url) = line.strip_prefix("demo-mcp listening on ") {
                break url.to_owned();
            }
        };
        assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"), "{url}");

        let client = client_config(ProtocolVersion::V_2025_11_25)
            .serve(StreamableHttpClientTransport::from_uri(url))
            .await
            .unwrap();
        let echoed = client.call_tool(call("echo", json!({ "text": "over http" }))).await.unwrap();
        assert_eq!(only_text(&echoed), "over http");

        // Supervisors stop the server with SIGTERM; it must exit cleanly even with a session open.
        let pid = child.id().unwrap().to_string();
        let killed = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
        assert!(killed.success());
        let status = child.wait().await.unwrap();
        assert!(status.success(), "{status}");
        drop(client);
    })
    .await;
}

#[test]
fn countdown_input_is_checked_once() {
    let countdown = Countdown::parse(1, None).unwrap();
    assert_eq!((countdown.steps(), countdown.interval()), (1, Duration::from_millis(10)));
    let countdown = Countdown::parse(100, Some(1_000)).unwrap();
    assert_eq!((countdown.steps(), countdown.interval()), (100, Duration::from_secs(1)));
    for n in [0, 101, -3, i64::MAX] {
        assert_eq!(Countdown::parse(n, None), Err(CountdownError::StepsOutOfRange(n)));
    }
    for interval_ms in [-1, 1_001] {
        assert_eq!(Countdown::parse(5, Some(interval_ms)), Err(CountdownError::IntervalOutOfRange(interval_ms)));
    }
}
