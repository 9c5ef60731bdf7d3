//! The key lifecycle as an operator sees it: the one-time reveal, `whoami` with either header,
//! revoke and delete taking effect on the very next request, and `last_used_at`.

use prom_core::audit::AuditContext;
use prom_core::id::{KeyId, TenantId};
use prom_core::time::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Cred, TestApp, actions, assert_no_key_material, str_field};

/// Whether `key` has the documented shape, `prom_live_` + 64 lowercase hex characters.
fn is_live_key(key: &str) -> bool {
    key.strip_prefix("prom_live_")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_reveals_the_key_once_and_never_again() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;

    let (status, created) = owner.post("/v1/keys", json!({ "label": "claude-desktop laptop" })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = str_field(&created, "id");
    let key = str_field(&created, "key");
    assert!(is_live_key(&key), "not a live key: {key:?}");
    assert_eq!(created["label"], "claude-desktop laptop");
    assert_eq!(created["display"], format!("prom_live_...{}", &key[key.len() - 4..]));
    assert_eq!(created["environment"], "live");
    assert_eq!(created["scopes"], json!(["agent:connect"]));
    let created_at = str_field(&created, "created_at");
    assert!(Timestamp::parse_rfc3339(&created_at).is_some(), "created_at is not RFC 3339: {created_at}");

    let (status, list) = owner.get("/v1/keys").await;
    assert_eq!(status, StatusCode::OK);
    assert_no_key_material(&list.to_string(), &key);
    let listed = list["keys"].as_array().expect("keys");
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["display"], created["display"]);
    assert_eq!(listed[0]["status"], "active");
    assert!(listed[0].get("key").is_none(), "a listed key carries a key field: {list}");

    let one = owner.key(&id).await;
    assert_no_key_material(&one.to_string(), &key);
    assert_eq!(one["label"], "claude-desktop laptop");
    assert_eq!(one["created_at"], created_at);

    let audit = owner.audit("").await;
    assert!(audit.iter().any(|event| event["action"] == "api_key.create"), "{audit:?}");
    assert_no_key_material(&serde_json::to_string(&audit).expect("serialise"), &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_accepts_the_key_in_either_header() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let (id, key) = owner.create_key("cursor").await;

    for (header, cred) in [("x-api-key", Cred::ApiKey(&key)), ("Authorization", Cred::Bearer(&key))] {
        let (status, body) = app.client.get("/v1/whoami", cred).await;
        assert_eq!(status, StatusCode::OK, "key in {header}: {body}");
        assert_eq!(body["tenant"]["slug"], "acme");
        assert_eq!(body["tenant"]["id"], owner.tenant_id);
        assert_eq!(body["key_id"], id);
        assert_eq!(body["label"], "cursor");
        assert_eq!(body["environment"], "live");
        assert_eq!(body["scopes"], json!(["agent:connect"]));
        assert_eq!(body["display"], format!("prom_live_...{}", &key[key.len() - 4..]));
        assert_no_key_material(&body.to_string(), &key);
    }

    // The same key in both headers is one credential, not two.
    let both = app.client.request(Method::GET, "/v1/whoami", Cred::ApiKey(&key)).bearer_auth(&key);
    assert_eq!(app.client.send(both).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_stops_a_cached_key_on_the_very_next_request() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let (id, key) = owner.create_key("agent").await;
    let (_, other) = owner.create_key("bystander").await;

    // Twice: the first call verifies the key cold, the second is served from the cache.
    assert_eq!(app.whoami(&key).await.0, StatusCode::OK);
    assert_eq!(app.whoami(&key).await.0, StatusCode::OK);
    assert_eq!(app.whoami(&other).await.0, StatusCode::OK);

    let (status, revoked) = owner.post_empty(&format!("/v1/keys/{id}/revoke")).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["id"], id);
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");

    let response = app.client.send(app.client.request(Method::GET, "/v1/whoami", Cred::ApiKey(&key))).await;
    let message = response.expect_error(StatusCode::UNAUTHORIZED, "TOKEN_INVALID");
    assert!(message.contains("revoked"), "{message}");
    assert_no_key_material(&message, &key);
    assert_eq!(app.whoami(&other).await.0, StatusCode::OK, "revoking one key must not affect another");

    // Revoking again changes nothing.
    let (status, again) = owner.post_empty(&format!("/v1/keys/{id}/revoke")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["revoked_at"], revoked["revoked_at"]);
    assert_eq!(owner.key(&id).await["status"], "revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_stops_a_cached_key_and_removes_it() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let (id, key) = owner.create_key("agent").await;
    let (other_id, other) = owner.create_key("bystander").await;
    assert_eq!(app.whoami(&key).await.0, StatusCode::OK);
    assert_eq!(app.whoami(&key).await.0, StatusCode::OK);

    let (status, body) = owner.delete(&format!("/v1/keys/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let response = app.client.send(app.client.request(Method::GET, "/v1/whoami", Cred::Bearer(&key))).await;
    let message = response.expect_error(StatusCode::UNAUTHORIZED, "TOKEN_INVALID");
    assert!(message.contains("deleted"), "{message}");

    let keys = owner.keys().await;
    let ids: Vec<&str> = keys.iter().filter_map(|k| k["id"].as_str()).collect();
    assert_eq!(ids, [other_id.as_str()]);
    let (status, body) = owner.get(&format!("/v1/keys/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    let (status, body) = owner.delete(&format!("/v1/keys/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleting twice: {body}");
    assert_eq!(app.whoami(&other).await.0, StatusCode::OK);

    // The key is gone from the list, not from the record.
    let history = owner.audit(&format!("?key_id={id}")).await;
    assert_eq!(actions(&history), ["api_key.delete", "api_key.create"], "{history:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_made_elsewhere_is_seen_once_the_cached_entry_is_due() {
    // Another node's revocation reaches this one only through the database: with a zero
    // revalidation interval every request re-reads the key's state.
    let app = TestApp::spawn_with(|config| config.key_cache_revalidate_secs = 0).await;
    let owner = app.with_owner("acme").await;
    let (id, key) = owner.create_key("agent").await;
    for _ in 0..3 {
        assert_eq!(app.whoami(&key).await.0, StatusCode::OK);
    }

    let tenant = TenantId::parse(&owner.tenant_id).expect("a tenant id");
    let key_id = KeyId::parse(&id).expect("a key id");
    app.state
        .store
        .revoke_key(&tenant, &key_id, Timestamp::now(), &AuditContext::admin_cli())
        .await
        .expect("revoke behind the server's back");

    let response = app.client.send(app.client.request(Method::GET, "/v1/whoami", Cred::ApiKey(&key))).await;
    let message = response.expect_error(StatusCode::UNAUTHORIZED, "TOKEN_INVALID");
    assert!(message.contains("revoked"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidating_a_cached_key_never_runs_argon2_again() {
    // Every request finds its cache entry due (interval 0): the many concurrent ones must all
    // re-read by digest, none may fall through to the Argon2 pool (one cold lookup in all).
    let app = TestApp::spawn_with(|config| config.key_cache_revalidate_secs = 0).await;
    let owner = app.with_owner("acme").await;
    let (_, key) = owner.create_key("agent").await;
    assert_eq!(app.whoami(&key).await.0, StatusCode::OK);
    let stats = &app.state.verifier.stats;
    let cold_before = stats.cold_lookups.load(std::sync::atomic::Ordering::Relaxed);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let client = app.client.clone();
        let key = key.clone();
        calls.spawn(async move { client.get("/v1/whoami", Cred::ApiKey(&key)).await.0 });
    }
    while let Some(status) = calls.join_next().await {
        assert_eq!(status.expect("task"), StatusCode::OK);
    }
    assert_eq!(stats.cold_lookups.load(std::sync::atomic::Ordering::Relaxed), cold_before, "no Argon2 after the first");
    assert!(stats.revalidations.load(std::sync::atomic::Ordering::Relaxed) >= 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_used_at_is_set_once_the_key_is_used() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let (id, key) = owner.create_key("agent").await;
    let (unused_id, _) = owner.create_key("unused").await;
    assert!(owner.key(&id).await["last_used_at"].is_null());

    let before = Timestamp::now();
    assert_eq!(app.whoami(&key).await.0, StatusCode::OK);
    app.flush_usage().await;

    let keys = owner.keys().await;
    let used = keys.iter().find(|k| k["id"] == id).expect("the used key is listed");
    let last_used = used["last_used_at"].as_str().unwrap_or_else(|| panic!("last_used_at is set: {used}"));
    let last_used = Timestamp::parse_rfc3339(last_used).expect("RFC 3339");
    assert!(last_used >= Timestamp::from_millis(before.as_millis() - 1000), "{last_used:?} is before the call");
    assert!(last_used <= Timestamp::now());
    let unused = keys.iter().find(|k| k["id"] == unused_id).expect("the unused key is listed");
    assert!(unused["last_used_at"].is_null(), "{unused}");
}
