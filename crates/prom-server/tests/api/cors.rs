//! CORS on `/mcp/…`, as a browser sends it: a preflight from an allowed origin is answered without
//! a credential and names what MCP needs; answers to that origin (errors too) can be read by the
//! page and expose `Mcp-Session-Id`; any other origin is refused. (`browser.rs` in crates/prom
//! does the same from a real headless Chromium.)

use reqwest::Method;
use serde_json::json;

use crate::gateway::{mcp_post, register, spawn_upstream};
use crate::support::{Cred, TestApp};

const ALLOWED: &str = "https://app.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins_get_cors_and_others_are_refused() {
    let app = TestApp::spawn_with(|config| config.allowed_origins = vec![ALLOWED.into()]).await;
    let owner = app.with_owner("acme").await;
    let (url, _upstream) = spawn_upstream().await;
    register(&app, &owner, "tools", &url).await;
    let (_, key) = owner.create_key("browser").await;

    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, "/mcp/tools", Cred::None)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-api-key, content-type, mcp-protocol-version, mcp-param-region")
            .send()
    };
    let allowed = preflight(ALLOWED).await.expect("preflight");
    assert_eq!(allowed.status(), 204, "answered without a credential");
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], ALLOWED);
    let allow_headers = headers["access-control-allow-headers"].to_str().expect("ascii");
    for name in ["x-api-key", "authorization", "mcp-session-id", "last-event-id", "mcp-param-region"] {
        assert!(allow_headers.contains(name), "{name} in {allow_headers}");
    }
    assert!(headers["access-control-allow-methods"].to_str().expect("ascii").contains("POST"));
    assert_eq!(preflight("https://evil.example").await.expect("preflight").status(), 403);

    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}});
    let answered = mcp_post(&app, "tools", Cred::ApiKey(&key), &call, &[("origin", ALLOWED)]).await;
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.headers()["access-control-allow-origin"], ALLOWED);
    assert!(answered.headers()["access-control-expose-headers"].to_str().expect("ascii").contains("mcp-session-id"));
    let refused = mcp_post(&app, "tools", Cred::ApiKey("prom_live_not_a_key"), &call, &[("origin", ALLOWED)]).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["access-control-allow-origin"], ALLOWED, "the page can read why");
    let other = mcp_post(&app, "tools", Cred::ApiKey(&key), &call, &[("origin", "https://evil.example")]).await;
    assert_eq!(other.status(), 403);
    assert!(other.headers().get("access-control-allow-origin").is_none());
}
