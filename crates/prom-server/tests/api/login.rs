//! Sign-in and sign-out: `POST /v1/auth/login` and `POST /v1/auth/logout`, and what they write
//! to the audit log.

use prom_core::access::Role;
use prom_core::session::SESSION_PREFIX;
use reqwest::header::{RETRY_AFTER, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Cred, PASSWORD, TestApp, expect_error, str_field};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_returns_a_session_token_and_is_audited() {
    let app = TestApp::spawn().await;
    let outcome = app.provision("acme", "Owner@Acme.example", Role::Owner).await;

    let request = app
        .client
        .request(Method::POST, "/v1/auth/login", Cred::None)
        .header(USER_AGENT, "prom-api-tests/1.0")
        .json(&json!({ "email": "owner@acme.example", "password": PASSWORD }));
    let response = app.client.send(request).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let body = response.body;
    let token = str_field(&body, "token");
    let secret = token.strip_prefix(SESSION_PREFIX).expect("a prom_sess_ token");
    assert_eq!(secret.len(), 64);
    assert!(secret.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{token}");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["role"], "owner");
    assert_eq!(body["email"], "owner@acme.example");
    assert!(body["expires_at"].is_string(), "{body}");

    // The token works, and the sign-in is on record with where it came from.
    let (status, audit) = app.client.get("/v1/audit?action=user.login", Cred::Bearer(&token)).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let events = audit["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{audit}");
    let login = &events[0];
    assert_eq!(
        login["actor"],
        json!({ "type": "user", "id": outcome.user.id.to_string(), "name": "owner@acme.example" })
    );
    assert_eq!(login["ip"], "127.0.0.1");
    assert_eq!(login["user_agent"], "prom-api-tests/1.0");
    assert!(!audit.to_string().contains(secret), "the session token leaked into the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_email_are_the_same_failure() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;

    let wrong_password = app
        .client
        .post("/v1/auth/login", Cred::None, Some(&json!({ "email": owner.email, "password": "not-the-password-1" })))
        .await;
    let unknown_email = app
        .client
        .post("/v1/auth/login", Cred::None, Some(&json!({ "email": "nobody@acme.example", "password": PASSWORD })))
        .await;
    let message = expect_error(&wrong_password, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    assert!(message.contains("email or password"), "{message}");
    expect_error(&unknown_email, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    assert_eq!(wrong_password.1, unknown_email.1, "the two failures must be indistinguishable");

    // The attempt on the owner's account shows in the owner's tenant (once its minute is written);
    // the attempt on an unknown address belongs to no tenant and shows in none.
    app.state.usage.flush().await;
    let failures = owner.audit("?action=user.login_failed").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    let failure = &failures[0];
    assert_eq!(failure["actor"]["type"], "anonymous");
    assert_eq!(failure["actor"]["name"], owner.email);
    assert_eq!(failure["details"]["email"], owner.email);
    assert_eq!(failure["details"]["attempts"], 1);
    assert_eq!(failure["ip"], "127.0.0.1");
    let everything = serde_json::to_string(&owner.audit("").await).expect("serialise");
    assert!(!everything.contains("nobody@acme.example"), "{everything}");
    assert!(!everything.contains("not-the-password-1"), "a tried password reached the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    assert_eq!(owner.get("/v1/keys").await.0, StatusCode::OK);

    let (status, body) = owner.post_empty("/v1/auth/logout").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let response = app.client.send(app.client.request(Method::GET, "/v1/keys", owner.cred())).await;
    let message = response.expect_error(StatusCode::UNAUTHORIZED, "TOKEN_INVALID");
    assert!(message.contains("sign in again"), "{message}");
    let again = app.client.post("/v1/auth/logout", owner.cred(), None).await;
    expect_error(&again, StatusCode::UNAUTHORIZED, "TOKEN_INVALID");

    let fresh = app.with_owner("acme").await;
    let logouts = fresh.audit("?action=user.logout").await;
    assert_eq!(logouts.len(), 1, "{logouts:?}");
    assert_eq!(logouts[0]["actor"]["id"], owner.user_id);
    assert_eq!(logouts[0]["actor"]["name"], owner.email);
    assert_eq!(logouts[0]["ip"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_several_tenants_must_choose_one() {
    let app = TestApp::spawn().await;
    app.provision("acme", "pat@example.com", Role::Owner).await;
    app.provision("globex", "pat@example.com", Role::Member).await;

    let unchosen = app
        .client
        .post("/v1/auth/login", Cred::None, Some(&json!({ "email": "pat@example.com", "password": PASSWORD })))
        .await;
    let message = expect_error(&unchosen, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert!(message.contains("acme") && message.contains("globex") && message.contains("\"tenant\""), "{message}");

    let (status, body) = app
        .client
        .post(
            "/v1/auth/login",
            Cred::None,
            Some(&json!({ "email": "pat@example.com", "password": PASSWORD, "tenant": "globex" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tenant"], "globex");
    assert_eq!(body["role"], "member");

    let elsewhere = app
        .client
        .post(
            "/v1/auth/login",
            Cred::None,
            Some(&json!({ "email": "pat@example.com", "password": PASSWORD, "tenant": "initech" })),
        )
        .await;
    let message = expect_error(&elsewhere, StatusCode::FORBIDDEN, "FORBIDDEN");
    assert!(message.contains("acme, globex"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_sign_ins_are_throttled() {
    let app = TestApp::spawn_with(|config| {
        config.login_burst = 2;
        config.login_per_sec = 0.001;
    })
    .await;
    app.provision("acme", "owner@acme.example", Role::Owner).await;
    let wrong = json!({ "email": "owner@acme.example", "password": "guess-number-one" });

    // A successful sign-in costs nothing from the budget.
    let (status, body) = app
        .client
        .post("/v1/auth/login", Cred::None, Some(&json!({ "email": "owner@acme.example", "password": PASSWORD })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..2 {
        let failed = app.client.post("/v1/auth/login", Cred::None, Some(&wrong)).await;
        expect_error(&failed, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    }
    let response = app.client.send(app.client.request(Method::POST, "/v1/auth/login", Cred::None).json(&wrong)).await;
    let message = response.expect_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert!(message.contains("sign-ins"), "{message}");
    assert!(response.headers.contains_key(RETRY_AFTER), "no Retry-After header");
}

/// A password-guessing flood on one account writes one row a minute, with the number of attempts
/// and a bounded sample of the (attacker-chosen) user agents, not a row per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_one_row_per_account_per_minute() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    for n in 0..20 {
        let request = app
            .client
            .request(Method::POST, "/v1/auth/login", Cred::None)
            .header("user-agent", format!("guesser/{n} {}", "x".repeat(2000)))
            .json(&json!({ "email": owner.email, "password": format!("guess-number-{n}") }));
        let response = app.client.send(request).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    app.state.usage.flush().await;
    let failures = owner.audit("?action=user.login_failed").await;
    let attempts: u64 = failures.iter().map(|row| row["details"]["attempts"].as_u64().unwrap_or(0)).sum();
    assert_eq!(attempts, 20, "{failures:?}");
    assert!(failures.len() <= 2, "one row per minute (two if the minute turned): {}", failures.len());
    for row in &failures {
        let agents = row["details"]["user_agents"].as_array().map_or(0, Vec::len);
        assert!(agents <= 8, "a bounded sample of user agents: {agents}");
        assert!(row["user_agent"].as_str().is_none_or(|ua| ua.len() <= 512), "user agents are cut");
    }
}
