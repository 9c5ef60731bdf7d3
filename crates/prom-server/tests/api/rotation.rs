//! Rotation: a replacement key with a dated label; the old key stops at once or after a grace
//! period, and the change is on record.

use std::time::Duration;

use prom_core::time::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Cred, TestApp, TestUser, actions, assert_no_key_material, expect_error, str_field};

/// Asserts that `old` is refused as a rotated-away key.
async fn assert_rotated_away(app: &TestApp, old: &str) {
    let response = app.client.send(app.client.request(Method::GET, "/v1/whoami", Cred::ApiKey(old))).await;
    let message = response.expect_error(StatusCode::UNAUTHORIZED, "TOKEN_INVALID");
    assert!(message.contains("rotated") && message.contains("expired"), "{message}");
    assert_no_key_material(&response.text, old);
}

/// A key used twice, so that it sits in the server's cache of verified keys.
async fn warm_key(app: &TestApp, owner: &TestUser, label: &str) -> (String, String) {
    let (id, key) = owner.create_key(label).await;
    assert_eq!(app.whoami(&key).await.0, StatusCode::OK);
    assert_eq!(app.whoami(&key).await.0, StatusCode::OK);
    (id, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_without_grace_replaces_the_key_at_once() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let (empty_id, empty_key) = warm_key(&app, &owner, "empty body").await;
    let (object_id, object_key) = warm_key(&app, &owner, "empty object").await;

    // The label is dated by the server's clock; a test running across midnight sees either date.
    let date_before = Timestamp::now().date_string();
    let by_empty_body = owner.post_empty(&format!("/v1/keys/{empty_id}/rotate")).await;
    let by_empty_object = owner.post(&format!("/v1/keys/{object_id}/rotate"), json!({})).await;
    let dates = [date_before, Timestamp::now().date_string()];

    for ((status, rotated), old_id, old_key, old_label) in [
        (by_empty_body, &empty_id, &empty_key, "empty body"),
        (by_empty_object, &object_id, &object_key, "empty object"),
    ] {
        assert_eq!(status, StatusCode::CREATED, "{rotated}");
        let new_key = str_field(&rotated, "key");
        let new_id = str_field(&rotated, "id");
        assert!(new_key.starts_with("prom_live_") && new_key.len() == 74, "{rotated}");
        assert_ne!(&new_key, old_key);
        let label = str_field(&rotated, "label");
        assert!(
            dates.iter().any(|date| label == format!("{old_label} (rotated {date})")),
            "unexpected default label {label:?}"
        );
        assert_eq!(rotated["replaced"]["id"], *old_id);
        assert_eq!(rotated["replaced"]["status"], "expired");
        assert_no_key_material(&rotated["replaced"].to_string(), &new_key);

        let (status, whoami) = app.whoami(&new_key).await;
        assert_eq!(status, StatusCode::OK, "{whoami}");
        assert_eq!(whoami["key_id"], new_id);
        assert_eq!(whoami["label"], label);
        assert_rotated_away(&app, old_key).await;

        let new = owner.key(&new_id).await;
        assert_eq!(new["rotated_from"], *old_id);
        assert_eq!(new["status"], "active");
        let old = owner.key(old_id).await;
        assert_eq!(old["status"], "expired");
        assert!(old["expires_at"].is_string(), "{old}");

        let events = owner.audit(&format!("?key_id={old_id}")).await;
        assert_eq!(actions(&events), ["api_key.rotate", "api_key.create"], "{events:?}");
        assert_eq!(events[0]["details"]["new_key_id"], new_id);
        let created = owner.audit(&format!("?key_id={new_id}")).await;
        assert_eq!(actions(&created), ["api_key.create"], "{created:?}");
        assert_eq!(created[0]["details"]["rotated_from"], *old_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_with_grace_keeps_the_old_key_until_it_expires() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let (id, old_key) = warm_key(&app, &owner, "laptop").await;

    let (status, rotated) = owner
        .post(&format!("/v1/keys/{id}/rotate"), json!({ "label": "laptop 2", "expire_old_after_seconds": 2 }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    assert_eq!(rotated["label"], "laptop 2");
    assert_eq!(rotated["replaced"]["status"], "active");
    let expires_at = Timestamp::parse_rfc3339(rotated["replaced"]["expires_at"].as_str().expect("expires_at"));
    let expires_at = expires_at.expect("RFC 3339");
    let in_two_seconds = Timestamp::now().plus_seconds(2).as_millis();
    assert!((in_two_seconds - expires_at.as_millis()).abs() < 1500, "expires_at {expires_at:?}");
    let new_key = str_field(&rotated, "key");

    // Both work during the grace period, the old one from the cache too.
    for _ in 0..2 {
        assert_eq!(app.whoami(&old_key).await.0, StatusCode::OK);
        assert_eq!(app.whoami(&new_key).await.0, StatusCode::OK);
    }

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_rotated_away(&app, &old_key).await;
    assert_rotated_away(&app, &old_key).await;
    assert_eq!(app.whoami(&new_key).await.0, StatusCode::OK);
    assert_eq!(owner.key(&id).await["status"], "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_refuses_bad_requests() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let (id, key) = owner.create_key("agent").await;

    let max = app.state.config.max_rotation_grace_secs;
    let too_long = owner.post(&format!("/v1/keys/{id}/rotate"), json!({ "expire_old_after_seconds": max + 1 })).await;
    let message = expect_error(&too_long, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert!(message.contains("expire_old_after_seconds") && message.contains(&max.to_string()), "{message}");
    let negative = owner.post(&format!("/v1/keys/{id}/rotate"), json!({ "expire_old_after_seconds": -1 })).await;
    expect_error(&negative, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    let bad_label = owner.post(&format!("/v1/keys/{id}/rotate"), json!({ "label": "  " })).await;
    let message = expect_error(&bad_label, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert!(message.contains("label"), "{message}");
    let unknown_field = owner.post(&format!("/v1/keys/{id}/rotate"), json!({ "grace": 5 })).await;
    let message = expect_error(&unknown_field, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert!(message.contains("grace"), "{message}");
    let not_json = app
        .client
        .send(app.client.request(Method::POST, &format!("/v1/keys/{id}/rotate"), owner.cred()).body("{nope"))
        .await;
    not_json.expect_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    let nowhere = owner.post_empty("/v1/keys/not-a-key-id/rotate").await;
    expect_error(&nowhere, StatusCode::NOT_FOUND, "NOT_FOUND");

    // None of that changed the key.
    assert_eq!(app.whoami(&key).await.0, StatusCode::OK);
    assert_eq!(owner.keys().await.len(), 1);

    assert_eq!(owner.post_empty(&format!("/v1/keys/{id}/revoke")).await.0, StatusCode::OK);
    let revoked = owner.post_empty(&format!("/v1/keys/{id}/rotate")).await;
    let message = expect_error(&revoked, StatusCode::CONFLICT, "CONFLICT");
    assert!(message.contains("revoked"), "{message}");
    assert_eq!(owner.keys().await.len(), 1, "a revoked key was rotated into a new one");
    assert!(owner.audit("?action=api_key.rotate").await.is_empty());
}
