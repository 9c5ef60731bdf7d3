//! Every way a credential can be missing or wrong, and what the caller is told: `TOKEN_MISSING`
//! versus `TOKEN_INVALID` with a message that says which problem it is — without ever echoing the
//! key — plus `FORBIDDEN` for the wrong kind of credential and the unknown-key throttle.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prom_core::access::Role;
use prom_core::kdf::KdfParams;
use prom_core::key::{Environment, PlainKey};
use prom_server::error::ApiError;
use reqwest::header::RETRY_AFTER;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Cred, PASSWORD, TestApp, assert_no_key_material, expect_error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_is_token_missing() {
    let app = TestApp::spawn().await;
    let requests = [
        ("no header", app.client.request(Method::GET, "/v1/whoami", Cred::None)),
        ("empty x-api-key", app.client.request(Method::GET, "/v1/whoami", Cred::None).header("x-api-key", "")),
        ("blank x-api-key", app.client.request(Method::GET, "/v1/whoami", Cred::None).header("x-api-key", "   ")),
        ("empty Authorization", app.client.request(Method::GET, "/v1/whoami", Cred::None).header("authorization", "")),
        ("no header on /v1/keys", app.client.request(Method::GET, "/v1/keys", Cred::None)),
    ];
    for (case, request) in requests {
        let response = app.client.send(request).await;
        let message = response.expect_error(StatusCode::UNAUTHORIZED, "TOKEN_MISSING");
        assert!(message.contains("x-api-key") && message.contains("Authorization: Bearer"), "{case}: {message}");
    }
}

/// A `GET /v1/whoami` with `presented` in `x-api-key` must be `TOKEN_INVALID` with a message that
/// contains each of `says` and nothing of the presented secret.
async fn assert_refused(app: &TestApp, case: &str, presented: &str, says: &[&str]) {
    let response = app.client.send(app.client.request(Method::GET, "/v1/whoami", Cred::ApiKey(presented))).await;
    let message = response.expect_error(StatusCode::UNAUTHORIZED, "TOKEN_INVALID");
    for phrase in says {
        assert!(message.contains(phrase), "{case}: expected {phrase:?} in {message:?}");
    }
    assert_no_key_material(&response.text, presented);
    let secret = presented.get(10..).unwrap_or_default();
    if secret.len() >= 8 {
        assert!(!response.text.contains(secret), "{case}: the presented secret was echoed: {}", response.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_key_is_token_invalid_and_says_why() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let (_, good) = owner.create_key("good").await;
    let (revoked_id, revoked) = owner.create_key("to revoke").await;
    let (deleted_id, deleted) = owner.create_key("to delete").await;
    assert_eq!(owner.post_empty(&format!("/v1/keys/{revoked_id}/revoke")).await.0, StatusCode::OK);
    assert_eq!(owner.delete(&format!("/v1/keys/{deleted_id}")).await.0, StatusCode::NO_CONTENT);

    let never_issued = PlainKey::mint(Environment::Live);
    let test_key = PlainKey::mint(Environment::Test);
    let uppercase = format!("prom_live_{}", good["prom_live_".len()..].to_uppercase());

    assert_refused(&app, "malformed", "sk-123", &["not a Prometheus API key", "prom_live_"]).await;
    assert_refused(&app, "truncated", &good[..40], &["truncated", "30"]).await;
    assert_refused(&app, "too long", &format!("{good}00"), &["too long", "66"]).await;
    assert_refused(&app, "uppercase hex", &uppercase, &["lowercase hex"]).await;
    assert_refused(&app, "never issued", never_issued.expose(), &["not known"]).await;
    assert_refused(&app, "revoked", &revoked, &["revoked", "to revoke"]).await;
    assert_refused(&app, "deleted", &deleted, &["deleted"]).await;
    assert_refused(&app, "wrong environment", test_key.expose(), &["test", "live", "prom_live_"]).await;

    // A never-issued key is refused the same way the second time (from the negative cache).
    assert_refused(&app, "never issued, again", never_issued.expose(), &["not known"]).await;

    // The good key still works after all that.
    assert_eq!(app.whoami(&good).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_authorization_schemes_are_token_invalid() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let (_, key) = owner.create_key("agent").await;

    let basic = app
        .client
        .request(Method::GET, "/v1/whoami", Cred::None)
        .header("authorization", format!("Basic {}", &key[10..30]));
    let response = app.client.send(basic).await;
    let message = response.expect_error(StatusCode::UNAUTHORIZED, "TOKEN_INVALID");
    assert!(message.contains("Bearer"), "{message}");
    assert!(!response.text.contains(&key[10..30]), "the presented credential was echoed: {}", response.text);

    // Two different credentials at once are refused rather than one picked silently.
    let two = app.client.request(Method::GET, "/v1/whoami", Cred::ApiKey(&key)).bearer_auth(&owner.token);
    let response = app.client.send(two).await;
    let message = response.expect_error(StatusCode::UNAUTHORIZED, "TOKEN_INVALID");
    assert!(message.contains("two different credentials"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_kind_of_credential_is_forbidden() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let (_, key) = owner.create_key("agent").await;

    let session_on_whoami = app.client.get("/v1/whoami", owner.cred()).await;
    let message = expect_error(&session_on_whoami, StatusCode::FORBIDDEN, "FORBIDDEN");
    assert!(message.contains("API key"), "{message}");

    for path in ["/v1/keys", "/v1/audit"] {
        let key_on_management = app.client.get(path, Cred::Bearer(&key)).await;
        let message = expect_error(&key_on_management, StatusCode::FORBIDDEN, "FORBIDDEN");
        assert!(message.contains("sign in"), "{path}: {message}");
        assert_no_key_material(&message, &key);
    }
    let create_with_key =
        app.client.post("/v1/keys", Cred::ApiKey(&key), Some(&serde_json::json!({ "label": "x" }))).await;
    expect_error(&create_with_key, StatusCode::FORBIDDEN, "FORBIDDEN");
    assert_eq!(owner.keys().await.len(), 1, "an API key minted another key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_keys_is_throttled_without_slowing_known_keys() {
    let app = TestApp::spawn_with(|config| {
        config.unknown_key_burst = 3;
        config.unknown_key_per_sec = 0.001;
    })
    .await;
    let owner = app.with_owner("acme").await;
    let (_, known) = owner.create_key("known").await;
    // Warm: verified once, so later requests with it never reach the throttle.
    assert_eq!(app.whoami(&known).await.0, StatusCode::OK);

    for attempt in 1..=3 {
        let unknown = PlainKey::mint(Environment::Live);
        let response =
            app.client.send(app.client.request(Method::GET, "/v1/whoami", Cred::ApiKey(unknown.expose()))).await;
        let message = response.expect_error(StatusCode::UNAUTHORIZED, "TOKEN_INVALID");
        assert!(message.contains("not known"), "attempt {attempt}: {message}");
    }
    let unknown = PlainKey::mint(Environment::Live);
    let response = app.client.send(app.client.request(Method::GET, "/v1/whoami", Cred::ApiKey(unknown.expose()))).await;
    let message = response.expect_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert!(message.contains("unknown API keys"), "{message}");
    let retry_after: u64 = response
        .headers
        .get(RETRY_AFTER)
        .expect("a Retry-After header")
        .to_str()
        .expect("text")
        .parse()
        .expect("whole seconds");
    assert!(retry_after >= 1, "Retry-After: {retry_after}");

    for _ in 0..5 {
        let (status, body) = app.whoami(&known).await;
        assert_eq!(status, StatusCode::OK, "a known key was throttled: {body}");
    }
}

/// Argon2id slow enough (a few milliseconds a hash) that a flood keeps the pool busy.
const SLOW_KDF: KdfParams = KdfParams { m_cost_kib: 4096, t_cost: 2, p_cost: 1 };

/// An address in the IPv6 network `2001:db8:0:<net>::/64`. The test server only ever sees
/// 127.0.0.1, so floods from other addresses are driven through the verifier, which is where the
/// extractor hands it the client's address.
fn ipv6(net: u16, host: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, net, host, host, host, host))
}

async fn sign_in(app: &TestApp) -> (StatusCode, serde_json::Value) {
    app.client
        .post("/v1/auth/login", Cred::None, Some(&json!({ "email": "owner@acme.example", "password": PASSWORD })))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_succeed_while_unknown_keys_flood_from_one_ipv6_network() {
    let app = TestApp::spawn_with(|config| {
        config.key_kdf = SLOW_KDF;
        config.hashing_workers = 1;
        config.hashing_queue = 2;
        config.unknown_key_burst = 3;
        config.unknown_key_per_sec = 0.001;
    })
    .await;
    app.provision("acme", "owner@acme.example", Role::Owner).await;

    // 200 unknown keys at once, each from another address of one /64.
    let flood: Vec<_> = (1..=200)
        .map(|host| {
            let verifier = app.state.verifier.clone();
            tokio::spawn(async move {
                let key = PlainKey::mint(Environment::Live);
                verifier.verify(key.expose(), ipv6(7, host)).await
            })
        })
        .collect();
    for attempt in 1..=5 {
        let (status, body) = sign_in(&app).await;
        assert_eq!(status, StatusCode::OK, "sign-in {attempt} during the flood: {body}");
    }
    let (mut unknown, mut throttled) = (0, 0);
    for result in flood {
        match result.await.expect("the lookup task") {
            Err(ApiError::TokenInvalid(_)) => unknown += 1,
            Err(ApiError::RateLimited { message, .. }) if message.contains("from this address") => throttled += 1,
            other => panic!("unexpected answer to an unknown key: {other:?}"),
        }
    }
    // The /64 is one client: its burst of three was hashed, everything else refused unhashed.
    assert_eq!((unknown, throttled), (3, 197));
    assert_eq!(app.state.verifier.stats.cold_lookups.load(Ordering::Relaxed), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_that_fills_the_key_lookup_queue_never_refuses_sign_ins() {
    let app = TestApp::spawn_with(|config| {
        config.key_kdf = SLOW_KDF;
        config.hashing_workers = 1;
        config.hashing_queue = 2;
    })
    .await;
    app.provision("acme", "owner@acme.example", Role::Owner).await;

    // Sixteen clients, each from networks of its own, send unknown keys until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(AtomicU64::new(0));
    let flood: Vec<_> = (0..16u16)
        .map(|client| {
            let (verifier, stop, busy) = (app.state.verifier.clone(), stop.clone(), busy.clone());
            tokio::spawn(async move {
                let mut host = 0u16;
                while !stop.load(Ordering::Relaxed) {
                    host = host.wrapping_add(1);
                    let key = PlainKey::mint(Environment::Live);
                    match verifier.verify(key.expose(), ipv6(client, host)).await {
                        Err(ApiError::RateLimited { message, .. }) if message.contains("busy") => {
                            busy.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(ApiError::TokenInvalid(_)) => {}
                        other => panic!("unexpected answer to an unknown key: {other:?}"),
                    }
                }
            })
        })
        .collect();
    // The key-lookup queue is full before the first sign-in...
    while busy.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let busy_before = busy.load(Ordering::Relaxed);
    for attempt in 1..=5 {
        let (status, body) = sign_in(&app).await;
        assert_eq!(status, StatusCode::OK, "sign-in {attempt} during the flood: {body}");
    }
    let busy_after = busy.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        task.await.expect("a flood task");
    }
    // ...and stayed full while the sign-ins went through.
    assert!(busy_after > busy_before, "the flood stopped filling the key-lookup queue during the sign-ins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_from_many_networks_share_one_budget() {
    let app = TestApp::spawn_with(|config| {
        config.unknown_key_global_burst = 3;
        config.unknown_key_global_per_sec = 0.001;
    })
    .await;
    let owner = app.with_owner("acme").await;
    let (_, known) = owner.create_key("known").await;
    assert_eq!(app.whoami(&known).await.0, StatusCode::OK);

    let verifier = &app.state.verifier;
    let lookups_before = verifier.stats.cold_lookups.load(Ordering::Relaxed);
    for net in 1..=3 {
        let key = PlainKey::mint(Environment::Live);
        let refused = verifier.verify(key.expose(), ipv6(net, 1)).await;
        assert!(matches!(refused, Err(ApiError::TokenInvalid(_))), "network {net}: {refused:?}");
    }
    // A fourth network has its own budget left, but the server's is spent.
    let key = PlainKey::mint(Environment::Live);
    match verifier.verify(key.expose(), ipv6(4, 1)).await {
        Err(ApiError::RateLimited { message, retry_after_secs }) => {
            assert!(message.contains("unknown API keys reach this server"), "{message}");
            assert!(retry_after_secs >= 1);
        }
        other => panic!("a fourth unknown key was looked up: {other:?}"),
    }
    assert_eq!(verifier.stats.cold_lookups.load(Ordering::Relaxed), lookups_before + 3, "the fourth was hashed");
    // Keys in use are unaffected.
    let (status, body) = app.whoami(&known).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
