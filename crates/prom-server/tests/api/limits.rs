//! Timeouts, tried as a slow-loris client and a stalling upstream would: a half-sent request head
//! is cut after `header_read_timeout_secs`, a body trickled a byte at a time gets 408 after
//! `request_body_timeout_secs`, and an upstream that sends its head and then nothing ends the
//! call after `upstream_idle_secs` as an upstream failure, releasing the paid call's hold.

use std::time::Duration;

use prom_core::id::TenantId;
use prom_core::money::Amount;
use prom_server::billing::tenant_wallet;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::gateway::{call, mcp_post, register_priced};
use crate::support::{Cred, TestApp};

fn address(app: &TestApp) -> String {
    app.client.url("").trim_start_matches("http://").to_owned()
}

/// Reads what the server sends until it closes the connection (or `within` passes: `None`).
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| String::from_utf8_lossy(&seen).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_head_is_cut_after_the_header_timeout() {
    let app = TestApp::spawn_with(|config| config.header_read_timeout_secs = 1).await;
    let mut stream = TcpStream::connect(address(&app)).await.expect("connect");
    stream.write_all(b"POST /v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Le").await.expect("write");
    let answer = read_until_closed(&mut stream, Duration::from_secs(20)).await;
    let answer = answer.expect("the server closed the connection");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    // A complete request on a new connection is served as usual.
    let (status, _) = app.client.get("/healthz", Cred::None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_408_after_the_body_timeout() {
    let app = TestApp::spawn_with(|config| config.request_body_timeout_secs = 1).await;
    let mut stream = TcpStream::connect(address(&app)).await.expect("connect");
    let head = "POST /v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("write");
    let trickle = async {
        for byte in b"{\"email\": " {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), trickle).await.ok();
    let answer = read_until_closed(&mut stream, Duration::from_secs(20)).await.expect("the server answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("REQUEST_TIMEOUT"), "{answer:?}");
}

/// An upstream that answers a POST with its head and then never sends a byte of body.
async fn spawn_stalling_upstream() -> String {
    use axum::body::Body;
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|| async {
            let never = futures_util::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
            ([("content-type", "application/json")], Body::from_stream(never)).into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/mcp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upstream_body_ends_the_call_and_releases_its_hold() {
    let app = TestApp::spawn_with(|config| config.upstream_idle_secs = 1).await;
    let publisher = app.with_owner("publisher").await;
    register_priced(&app, &publisher, "stalls", &spawn_stalling_upstream().await, &[("echo", 100)]).await;
    let consumer = app.with_owner("consumer").await;
    let wallet = tenant_wallet(&TenantId::from_trusted(consumer.tenant_id.clone()));
    app.state.ledger.mint(&wallet, Amount::new(10_000)).await.expect("mint");
    let (status, body) = consumer.put("/v1/services/stalls/allowance", json!({"amount": "1000"})).await;
    assert_eq!(status, 200, "{body}");
    let (_, key) = consumer.create_key("agent").await;

    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        mcp_post(&app, "stalls", Cred::ApiKey(&key), &call(1, "echo"), &[]),
    )
    .await
    .expect("the call ends though the upstream never finishes its body");
    assert_eq!(answer.status(), 502);
    let answer: Value = answer.json().await.expect("json");
    assert!(answer.get("result").is_none(), "{answer}");
    let (_, view) = consumer.get("/v1/services/stalls/allowance").await;
    assert_eq!((view["held"].as_str(), view["unsettled"].as_str()), (Some("0"), Some("0")), "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_bearer_token() {
    let app = TestApp::spawn_with(|config| config.metrics_token = Some("scrape-me".into())).await;
    let get = |auth: Option<&'static str>| {
        let mut request = app.client.request(reqwest::Method::GET, "/metrics", Cred::None);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        async move { request.send().await.expect("metrics") }
    };
    let missing = get(None).await;
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.expect("json");
    assert_eq!(body["error"]["code"], "TOKEN_MISSING");
    let wrong = get(Some("Bearer scrape-you")).await;
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.expect("json");
    assert_eq!(body["error"]["code"], "TOKEN_INVALID");
    let right = get(Some("Bearer scrape-me")).await;
    assert_eq!(right.status(), 200);
    assert!(right.text().await.expect("text").contains("# EOF"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_management_request_that_runs_too_long_is_stopped_with_503() {
    // Password hashing slow enough (seconds) to outlast a one-second request deadline.
    let slow = prom_core::kdf::KdfParams { m_cost_kib: 19_456, t_cost: 600, p_cost: 1 };
    let app = TestApp::spawn_with(|config| {
        config.password_kdf = slow;
        config.request_timeout_secs = 1;
    })
    .await;
    app.provision("acme", "owner@acme.example", prom_core::access::Role::Owner).await;
    let login = json!({"email": "owner@acme.example", "password": crate::support::PASSWORD});
    let (status, body) = app.client.post("/v1/auth/login", Cred::None, Some(&login)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "UNAVAILABLE", "{body}");
    // The health check, which does not hash, still answers.
    assert_eq!(app.client.get("/healthz", Cred::None).await.0, 200);
}
