//! Requests the API must turn down helpfully (bad bodies, unknown routes, wrong methods) and the
//! endpoints that need no credential: `/healthz` and the OpenAPI document.

use prom_core::key::Environment;
use reqwest::header::{ALLOW, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Cred, TestApp, expect_error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_create_requests_say_what_is_wrong() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;

    let cases = [
        ("missing label", json!({}), "label"),
        ("empty label", json!({ "label": "" }), "label is required"),
        ("blank label", json!({ "label": "   " }), "label is required"),
        ("101-character label", json!({ "label": "x".repeat(101) }), "at most 100"),
        ("control character", json!({ "label": "a\u{7}b" }), "control"),
        ("label of the wrong type", json!({ "label": 7 }), "label"),
        ("unknown field", json!({ "label": "agent", "scopes": ["admin"] }), "unknown field `scopes`"),
        ("unknown environment", json!({ "label": "agent", "environment": "prod" }), "\"live\" or \"test\""),
    ];
    for (case, body, says) in cases {
        let response = owner.post("/v1/keys", body).await;
        let message = expect_error(&response, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
        assert!(message.contains(says), "{case}: expected {says:?} in {message:?}");
    }
    // A well-formed request this server cannot honour: a conflict with its environment.
    let test_key = owner.post("/v1/keys", json!({ "label": "agent", "environment": "test" })).await;
    let message = expect_error(&test_key, StatusCode::CONFLICT, "CONFLICT");
    assert!(message.contains("live environment"), "{message}");

    let not_json = app
        .client
        .request(Method::POST, "/v1/keys", owner.cred())
        .header(CONTENT_TYPE, "application/json")
        .body("label=agent");
    let message = app.client.send(not_json).await.expect_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert!(message.to_lowercase().contains("json"), "{message}");

    let wrong_type = app
        .client
        .request(Method::POST, "/v1/keys", owner.cred())
        .header(CONTENT_TYPE, "text/plain")
        .body(r#"{"label":"agent"}"#);
    let message = app.client.send(wrong_type).await.expect_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert!(message.contains("Content-Type: application/json"), "{message}");

    let no_body = app.client.request(Method::POST, "/v1/keys", owner.cred());
    app.client.send(no_body).await.expect_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST");

    let huge = json!({ "label": "x".repeat(70 * 1024) });
    let too_large = owner.post("/v1/keys", huge).await;
    let message = expect_error(&too_large, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    assert!(message.contains("64 KiB"), "{message}");
    let huge_rotate = owner
        .post("/v1/keys/00000000-0000-0000-0000-000000000000/rotate", json!({ "label": "x".repeat(70 * 1024) }))
        .await;
    expect_error(&huge_rotate, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");

    assert!(owner.keys().await.is_empty(), "a refused request created a key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_server_makes_test_keys_only() {
    let app = TestApp::spawn_with(|config| config.environment = Environment::Test).await;
    let owner = app.with_owner("acme").await;

    let (status, created) = owner.post("/v1/keys", json!({ "label": "sandbox" })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().expect("a key");
    assert!(key.starts_with("prom_test_") && key.len() == 74, "not a test key");
    assert_eq!(created["environment"], "test");
    assert_eq!(created["display"], format!("prom_test_...{}", &key[key.len() - 4..]));
    let (status, whoami) = app.whoami(key).await;
    assert_eq!(status, StatusCode::OK, "{whoami}");
    assert_eq!(whoami["environment"], "test");

    let live = owner.post("/v1/keys", json!({ "label": "real money", "environment": "live" })).await;
    let message = expect_error(&live, StatusCode::CONFLICT, "CONFLICT");
    assert!(message.contains("test environment"), "{message}");
    let live_key = prom_core::key::PlainKey::mint(Environment::Live);
    let response =
        app.client.send(app.client.request(Method::GET, "/v1/whoami", Cred::ApiKey(live_key.expose()))).await;
    let message = response.expect_error(StatusCode::UNAUTHORIZED, "TOKEN_INVALID");
    assert!(message.contains("live key") && message.contains("test environment"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_in_json() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;

    for path in ["/v1/nope", "/nope", "/v1/keys/x/y/z", "/v2/keys"] {
        let response = app.client.send(app.client.request(Method::GET, path, owner.cred())).await;
        let message = response.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
        assert!(message.contains("openapi.json"), "{path}: {message}");
    }
    let no_such_key = owner.get("/v1/keys/00000000-0000-0000-0000-000000000000").await;
    expect_error(&no_such_key, StatusCode::NOT_FOUND, "NOT_FOUND");
    let not_an_id = owner.get("/v1/keys/not-an-id").await;
    expect_error(&not_an_id, StatusCode::NOT_FOUND, "NOT_FOUND");

    for (method, path) in [
        (Method::PUT, "/v1/keys"),
        (Method::PATCH, "/v1/keys/00000000-0000-0000-0000-000000000000"),
        (Method::GET, "/v1/keys/00000000-0000-0000-0000-000000000000/revoke"),
        (Method::POST, "/v1/whoami"),
        (Method::GET, "/v1/auth/login"),
        (Method::POST, "/healthz"),
    ] {
        let response = app.client.send(app.client.request(method.clone(), path, owner.cred())).await;
        assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {}", response.text);
        let message = response.expect_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
        assert!(response.headers.contains_key(ALLOW), "{method} {path}: no Allow header");
        assert!(message.contains("method"), "{method} {path}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_the_openapi_document_need_no_credential() {
    let app = TestApp::spawn().await;

    let (status, health) = app.client.get("/healthz", Cred::None).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["status"], "ok");

    let (status, document) = app.client.get("/v1/openapi.json", Cred::None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{document}");
    let paths = document["paths"].as_object().expect("paths");
    let documented = [
        "/v1/keys",
        "/v1/keys/{id}",
        "/v1/keys/{id}/revoke",
        "/v1/keys/{id}/rotate",
        "/v1/whoami",
        "/v1/audit",
        "/v1/auth/login",
        "/v1/auth/logout",
        "/healthz",
    ];
    for path in documented {
        assert!(paths.contains_key(path), "{path} is not documented; paths: {:?}", paths.keys().collect::<Vec<_>>());
    }
    assert!(paths["/v1/keys"]["post"].is_object() && paths["/v1/keys"]["get"].is_object());
    let schemes = &document["components"]["securitySchemes"];
    assert!(schemes["session"].is_object() && schemes["api_key"].is_object(), "{schemes}");
}
