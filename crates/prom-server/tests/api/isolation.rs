//! Tenants never see or touch each other's keys, whatever a caller puts in headers, paths or
//! bodies: the tenant always comes from the credential.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{TestApp, expect_error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_key_is_not_found_and_untouched() {
    let app = TestApp::spawn().await;
    let alice = app.with_owner("tenant-a").await;
    let bob = app.with_owner("tenant-b").await;
    let (a_id, a_key) = alice.create_key("a's agent").await;
    let (b_id, b_key) = bob.create_key("b's agent").await;
    assert_eq!(app.whoami(&a_key).await.0, StatusCode::OK);

    let attempts = [
        ("get", bob.get(&format!("/v1/keys/{a_id}")).await),
        ("revoke", bob.post_empty(&format!("/v1/keys/{a_id}/revoke")).await),
        ("delete", bob.delete(&format!("/v1/keys/{a_id}")).await),
        ("rotate", bob.post_empty(&format!("/v1/keys/{a_id}/rotate")).await),
        (
            "rotate with grace",
            bob.post(&format!("/v1/keys/{a_id}/rotate"), json!({ "expire_old_after_seconds": 60 })).await,
        ),
    ];
    for (what, response) in &attempts {
        let message = expect_error(response, StatusCode::NOT_FOUND, "NOT_FOUND");
        assert!(message.contains("in this tenant"), "{what}: {message}");
    }

    // Claiming tenant A in headers changes nothing either.
    for (method, path) in [
        (Method::GET, format!("/v1/keys/{a_id}")),
        (Method::POST, format!("/v1/keys/{a_id}/revoke")),
        (Method::DELETE, format!("/v1/keys/{a_id}")),
        (Method::POST, format!("/v1/keys/{a_id}/rotate")),
    ] {
        let request = app
            .client
            .request(method.clone(), &path, bob.cred())
            .header("x-tenant-id", &alice.tenant_id)
            .header("x-tenant", &alice.tenant);
        let response = app.client.send(request).await;
        response.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    // ... nor in bodies, which do not take tenant fields at all.
    let body_claim = bob
        .post(&format!("/v1/keys/{a_id}/rotate"), json!({ "tenant_id": alice.tenant_id, "tenant": alice.tenant }))
        .await;
    expect_error(&body_claim, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    let create_claim = bob.post("/v1/keys", json!({ "label": "sneaky", "tenant_id": alice.tenant_id })).await;
    expect_error(&create_claim, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    let header_claim = app.client.send(
        app.client
            .request(Method::POST, "/v1/keys", bob.cred())
            .header("x-tenant-id", &alice.tenant_id)
            .json(&json!({ "label": "made by b" })),
    );
    let created = header_claim.await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);

    // A's key is intact and still A's.
    let (status, whoami) = app.whoami(&a_key).await;
    assert_eq!(status, StatusCode::OK, "{whoami}");
    assert_eq!(whoami["tenant"]["slug"], "tenant-a");
    let a_keys = alice.keys().await;
    assert_eq!(a_keys.len(), 1, "{a_keys:?}");
    assert_eq!(a_keys[0]["status"], "active");
    assert!(a_keys[0]["expires_at"].is_null(), "{a_keys:?}");
    let a_audit = alice.audit("").await;
    assert!(a_audit.iter().all(|event| event["actor"]["id"] != bob.user_id), "{a_audit:?}");

    // The key B made with A's tenant in a header is B's.
    let new_key = created.body["key"].as_str().expect("a key");
    let (_, whoami) = app.whoami(new_key).await;
    assert_eq!(whoami["tenant"]["slug"], "tenant-b");

    // B's views hold nothing of A.
    let b_keys = bob.keys().await;
    let b_ids: Vec<&str> = b_keys.iter().filter_map(|key| key["id"].as_str()).collect();
    assert!(b_ids.contains(&b_id.as_str()) && !b_ids.contains(&a_id.as_str()), "{b_keys:?}");
    let b_audit = serde_json::to_string(&bob.audit("").await).expect("serialise");
    for a_thing in [a_id.as_str(), "a's agent", alice.email.as_str(), alice.tenant_id.as_str()] {
        assert!(!b_audit.contains(a_thing), "{a_thing:?} is in B's audit log: {b_audit}");
    }
    assert!(bob.audit(&format!("?key_id={a_id}")).await.is_empty());
    let filtered = app
        .client
        .send(
            app.client
                .request(Method::GET, &format!("/v1/audit?key_id={a_id}"), bob.cred())
                .header("x-tenant-id", &alice.tenant_id),
        )
        .await;
    assert_eq!(filtered.status, StatusCode::OK);
    assert_eq!(filtered.body["events"], json!([]));

    // B's agent key says it is B's.
    let (status, whoami) = app.whoami(&b_key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(whoami["tenant"]["slug"], "tenant-b");
    assert_eq!(whoami["tenant"]["id"], bob.tenant_id);
    let (_, whoami) = app
        .client
        .send(
            app.client
                .request(Method::GET, "/v1/whoami", crate::support::Cred::ApiKey(&b_key))
                .header("x-tenant-id", &alice.tenant_id),
        )
        .await
        .pair();
    assert_eq!(whoami["tenant"]["slug"], "tenant-b");
}
