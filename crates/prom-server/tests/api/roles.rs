//! Who may do what within a tenant: members look, admins and owners change keys.

use prom_core::access::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestApp, expect_error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_may_look_but_not_change_keys() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let member = app.with_user("acme", "member@acme.example", Role::Member).await;
    let (id, key) = owner.create_key("shared agent").await;

    let listed = member.keys().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id);
    assert_eq!(member.key(&id).await["label"], "shared agent");
    let audit = member.audit("").await;
    assert!(audit.iter().any(|event| event["action"] == "api_key.create"), "{audit:?}");

    let create = member.post("/v1/keys", json!({ "label": "mine" })).await;
    let message = expect_error(&create, StatusCode::FORBIDDEN, "FORBIDDEN");
    assert!(message.contains("admin") && message.contains("member"), "{message}");
    let revoke = member.post_empty(&format!("/v1/keys/{id}/revoke")).await;
    expect_error(&revoke, StatusCode::FORBIDDEN, "FORBIDDEN");
    let delete = member.delete(&format!("/v1/keys/{id}")).await;
    expect_error(&delete, StatusCode::FORBIDDEN, "FORBIDDEN");
    let rotate = member.post_empty(&format!("/v1/keys/{id}/rotate")).await;
    expect_error(&rotate, StatusCode::FORBIDDEN, "FORBIDDEN");

    // Nothing the member tried happened.
    let keys = owner.keys().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["status"], "active");
    assert_eq!(app.whoami(&key).await.0, StatusCode::OK);
    let changes: Vec<_> = owner
        .audit("")
        .await
        .into_iter()
        .filter(|event| event["actor"]["id"] == member.user_id && event["action"] != "user.login")
        .collect();
    assert!(changes.is_empty(), "the member changed something: {changes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_and_owners_manage_keys() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let admin = app.with_user("acme", "admin@acme.example", Role::Admin).await;

    let (owner_key_id, _) = owner.create_key("owner's").await;
    let (admin_key_id, admin_key) = admin.create_key("admin's").await;
    assert_eq!(app.whoami(&admin_key).await.0, StatusCode::OK);

    // An admin may manage any key of the tenant, not just its own.
    let (status, body) = admin.post_empty(&format!("/v1/keys/{owner_key_id}/rotate")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = admin.post_empty(&format!("/v1/keys/{owner_key_id}/revoke")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = owner.delete(&format!("/v1/keys/{admin_key_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let creators: Vec<_> = owner
        .audit("?action=api_key.create")
        .await
        .into_iter()
        .map(|event| event["actor"]["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(creators, ["admin@acme.example", "admin@acme.example", "owner@acme.example"]);
}
