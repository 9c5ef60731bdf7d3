//! The egress policy, tried as a hostile publisher would: every spelling of a private or local
//! address, a name that resolves to loopback, and a name whose answer changes to loopback after
//! registration (DNS rebinding, with the gateway's resolver pinned by the test) are refused — at
//! registration with the reason and the switch, and at call time with the same words an agent
//! gets for a connection that failed, the upstream never contacted. An allow-listed private
//! upstream works.

use prom_server::egress::EgressConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::gateway::{call, mcp_post, register, spawn_upstream};
use crate::support::{Cred, TestApp, TestUser};

/// A server with the default policy: https to public addresses only.
async fn strict(allow_hosts: Vec<String>) -> TestApp {
    TestApp::spawn_with(|config| config.egress = EgressConfig { allow_hosts, ..EgressConfig::default() }).await
}

/// What an agent is told when calling `slug`, with the slug taken out.
async fn call_error(app: &TestApp, key: &str, slug: &str) -> (StatusCode, String) {
    let response = mcp_post(app, slug, Cred::ApiKey(key), &call(1, "echo"), &[]).await;
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    let message = body["error"]["message"].as_str().unwrap_or_default().replace(slug, "SERVICE");
    (status, format!("{} {message}", body["error"]["code"]))
}

async fn publish(owner: &TestUser, slug: &str, url: &str) -> (StatusCode, Value) {
    owner.post("/v1/services", json!({"slug": slug, "name": slug, "upstream": {"url": url}})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_local_upstreams_are_refused_alike_at_registration_and_at_call_time() {
    let (url, upstream) = spawn_upstream().await;
    let port = url.trim_start_matches("http://127.0.0.1:").trim_end_matches("/mcp").to_owned();
    // Only a port nobody listens on is allowed: its connection fails, for the reference answer.
    let app = strict(vec!["127.0.0.1:9".into()]).await;
    let owner = app.with_owner("acme").await;
    let (_, key) = owner.create_key("agent").await;
    app.state.gateway.lookup.pin("loopback.test.example", vec!["127.0.0.1".parse().unwrap()]);
    app.state.gateway.lookup.pin("rebind.test.example", vec!["93.184.216.34".parse().unwrap()]);

    register(&app, &owner, "closed", "http://127.0.0.1:9/mcp").await;
    let reference = call_error(&app, &key, "closed").await;
    assert_eq!(reference.0, StatusCode::BAD_GATEWAY, "{reference:?}");

    let forms = [
        format!("https://127.0.0.1:{port}/mcp"),
        format!("https://127.1:{port}/mcp"),
        format!("https://0x7f000001:{port}/mcp"),
        format!("https://2130706433:{port}/mcp"),
        format!("https://[::1]:{port}/mcp"),
        format!("https://[::ffff:127.0.0.1]:{port}/mcp"),
        format!("https://[64:ff9b::7f00:1]:{port}/mcp"),
        format!("https://localhost:{port}/mcp"),
        format!("https://loopback.test.example:{port}/mcp"),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
        "https://metadata.google.internal/computeMetadata/v1/".to_owned(),
        "https://10.0.0.1/mcp".to_owned(),
        "https://100.64.0.1/mcp".to_owned(),
        "https://[fd00::1]/mcp".to_owned(),
        format!("http://127.0.0.1:{port}/mcp"),
    ];
    for (n, form) in forms.iter().enumerate() {
        // The publisher is told what was refused and where the switch is.
        let (status, body) = publish(&owner, &format!("form-{n}"), form).await;
        assert_eq!(status, 403, "{form}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("refused") && message.contains("egress."), "{form}: {message}");
        // Registered anyway (before the policy, or by a changed DNS answer): refused at call time.
        let slug = format!("stored-{n}");
        register(&app, &owner, &slug, form).await;
        assert_eq!(call_error(&app, &key, &slug).await, reference, "{form} answers like a failed connection");
    }

    // DNS rebinding: public at registration, loopback at call time.
    let rebinding = format!("https://rebind.test.example:{port}/mcp");
    let (status, body) = publish(&owner, "rebind", &rebinding).await;
    assert_eq!(status, 201, "a public answer is accepted: {body}");
    app.state.gateway.lookup.pin("rebind.test.example", vec!["127.0.0.1".parse().unwrap()]);
    assert_eq!(call_error(&app, &key, "rebind").await, reference);

    assert!(upstream.seen.lock().expect("lock").is_empty(), "no refused call reached the loopback upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_listed_private_upstream_works() {
    let (url, upstream) = spawn_upstream().await;
    let host = url.trim_start_matches("http://").trim_end_matches("/mcp").to_owned();
    let app = strict(vec![host]).await;
    let owner = app.with_owner("acme").await;
    let (status, body) = publish(&owner, "own", &url).await;
    assert_eq!(status, 201, "{body}");
    let (_, key) = owner.create_key("agent").await;
    let response = mcp_post(&app, "own", Cred::ApiKey(&key), &call(1, "echo"), &[]).await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.expect("body");
    assert!(body.contains("\"result\""), "{body}");
    assert_eq!(upstream.seen.lock().expect("lock").len(), 1);
    // Another port of the same host is not allowed.
    let other = url.replace(&url[url.rfind(':').unwrap_or(0)..], ":9/mcp");
    let (status, body) = publish(&owner, "other-port", &other).await;
    assert_eq!(status, 403, "{other}: {body}");
}

/// A name the operator allowed with a port resolves (here to loopback, pinned) and connects
/// through the gateway's resolver; the same name on another port stays refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_listed_name_resolves_and_connects_on_its_port() {
    let (url, upstream) = spawn_upstream().await;
    let port = url.trim_start_matches("http://127.0.0.1:").trim_end_matches("/mcp").to_owned();
    let app = strict(vec![format!("mcp.internal.example:{port}")]).await;
    app.state.gateway.lookup.pin("mcp.internal.example", vec!["127.0.0.1".parse().unwrap()]);
    let owner = app.with_owner("acme").await;
    let (status, body) = publish(&owner, "internal", &format!("http://mcp.internal.example:{port}/mcp")).await;
    assert_eq!(status, 201, "{body}");
    let (_, key) = owner.create_key("agent").await;
    let response = mcp_post(&app, "internal", Cred::ApiKey(&key), &call(1, "echo"), &[]).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.expect("body").contains("\"result\""));
    assert_eq!(upstream.seen.lock().expect("lock").len(), 1);
    let (status, body) = publish(&owner, "other-port", "http://mcp.internal.example:9/mcp").await;
    assert_eq!(status, 403, "{body}");
}
