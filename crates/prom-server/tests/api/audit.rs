//! The audit log through `GET /v1/audit`: one row per change with who, what and from where;
//! filters and paging; and exactly one row however many times a change is raced.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, actions, expect_error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_change_writes_its_row() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let (revoked_id, _) = owner.create_key("to revoke").await;
    let (deleted_id, _) = owner.create_key("to delete").await;
    let (rotated_id, _) = owner.create_key("to rotate").await;
    assert_eq!(owner.post_empty(&format!("/v1/keys/{revoked_id}/revoke")).await.0, StatusCode::OK);
    assert_eq!(owner.delete(&format!("/v1/keys/{deleted_id}")).await.0, StatusCode::NO_CONTENT);
    let (status, rotated) = owner.post_empty(&format!("/v1/keys/{rotated_id}/rotate")).await;
    assert_eq!(status, StatusCode::CREATED);
    let new_id = rotated["id"].as_str().expect("the new key's id").to_owned();
    let new_label = rotated["label"].as_str().expect("the new key's label").to_owned();

    let events: Vec<Value> = owner
        .audit("")
        .await
        .into_iter()
        .filter(|event| event["action"].as_str().is_some_and(|action| action.starts_with("api_key.")))
        .collect();
    assert_eq!(
        actions(&events),
        [
            "api_key.rotate",
            "api_key.create",
            "api_key.delete",
            "api_key.revoke",
            "api_key.create",
            "api_key.create",
            "api_key.create",
        ]
    );
    let expected_targets = [
        (&rotated_id, "to rotate"),
        (&new_id, new_label.as_str()),
        (&deleted_id, "to delete"),
        (&revoked_id, "to revoke"),
        (&rotated_id, "to rotate"),
        (&deleted_id, "to delete"),
        (&revoked_id, "to revoke"),
    ];
    for (event, (id, label)) in events.iter().zip(expected_targets) {
        assert_eq!(event["actor"], json!({ "type": "user", "id": owner.user_id, "name": owner.email }), "{event}");
        assert_eq!(event["target"], json!({ "type": "api_key", "id": id, "label": label }), "{event}");
        assert_eq!(event["ip"], "127.0.0.1", "{event}");
        assert!(event["at"].is_string() && event["id"].is_i64(), "{event}");
    }
    // Ids only grow, so newest first means strictly decreasing.
    let ids: Vec<i64> = events.iter().filter_map(|event| event["id"].as_i64()).collect();
    assert!(ids.windows(2).all(|pair| pair[0] > pair[1]), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_filters_and_pages() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let mut key_ids = Vec::new();
    for n in 0..4 {
        let (id, _) = owner.create_key(&format!("key {n}")).await;
        key_ids.push(id);
    }
    for id in &key_ids[..2] {
        assert_eq!(owner.post_empty(&format!("/v1/keys/{id}/revoke")).await.0, StatusCode::OK);
    }

    let revokes = owner.audit("?action=api_key.revoke").await;
    assert_eq!(actions(&revokes), ["api_key.revoke", "api_key.revoke"]);
    let targets: Vec<&Value> = revokes.iter().map(|event| &event["target"]["id"]).collect();
    assert_eq!(targets, [&json!(key_ids[1]), &json!(key_ids[0])]);

    let about_one = owner.audit(&format!("?key_id={}", key_ids[0])).await;
    assert_eq!(actions(&about_one), ["api_key.revoke", "api_key.create"]);
    assert!(about_one.iter().all(|event| event["target"]["id"] == key_ids[0]));
    let both = owner.audit(&format!("?key_id={}&action=api_key.create", key_ids[3])).await;
    assert_eq!(actions(&both), ["api_key.create"]);

    // Paging: two at a time until next_before runs out, covering everything once, newest first.
    let everything = owner.audit("").await;
    let mut paged: Vec<Value> = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let (status, page) = owner.get(&format!("/v1/audit{query}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let events = page["events"].as_array().expect("events");
        assert!(events.len() <= 2, "{page}");
        paged.extend(events.iter().cloned());
        match page["next_before"].as_i64() {
            Some(before) => {
                assert_eq!(Some(before), events.last().and_then(|event| event["id"].as_i64()), "{page}");
                query = format!("?limit=2&before={before}");
            }
            None => break,
        }
        assert!(paged.len() <= everything.len(), "paging does not end");
    }
    assert_eq!(paged, everything);
    assert!(everything.len() >= 7, "{everything:?}");

    let (_, last_page) = owner.get(&format!("/v1/audit?limit={}", everything.len() + 1)).await;
    assert!(last_page["next_before"].is_null(), "{last_page}");
    let older = owner.audit(&format!("?before={}&action=api_key.create", revokes[1]["id"])).await;
    assert_eq!(actions(&older), ["api_key.create"; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_are_invalid_requests() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;

    let bogus = owner.get("/v1/audit?action=bogus").await;
    let message = expect_error(&bogus, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert!(message.contains("bogus"), "{message}");
    for action in ["api_key.create", "api_key.revoke", "api_key.delete", "api_key.rotate", "user.login"] {
        assert!(message.contains(action), "{action} is not listed in {message:?}");
    }
    for query in ["limit=0", "limit=501", "limit=-1", "limit=ten"] {
        let response = owner.get(&format!("/v1/audit?{query}")).await;
        let message = expect_error(&response, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
        assert!(message.contains("limit"), "{query}: {message}");
    }
    let bad_key_id = owner.get("/v1/audit?key_id=prom_live_...abcd").await;
    let message = expect_error(&bad_key_id, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert!(message.contains("key_id"), "{message}");
    let unknown_parameter = owner.get("/v1/audit?tenant=other").await;
    let message = expect_error(&unknown_parameter, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert!(message.contains("tenant"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_revokes_write_one_row() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let (id, key) = owner.create_key("raced").await;
    assert_eq!(app.whoami(&key).await.0, StatusCode::OK);

    let path = format!("/v1/keys/{id}/revoke");
    let revokes: Vec<_> = (0..20)
        .map(|_| {
            let owner = owner.clone();
            let path = path.clone();
            tokio::spawn(async move { owner.post_empty(&path).await })
        })
        .collect();
    let mut revoked_at = HashSet::new();
    for revoke in revokes {
        let (status, body) = revoke.await.expect("the revoke task");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "revoked", "{body}");
        revoked_at.insert(body["revoked_at"].as_str().expect("revoked_at").to_owned());
    }
    assert_eq!(revoked_at.len(), 1, "the key was revoked at several instants: {revoked_at:?}");

    let rows = owner.audit("?action=api_key.revoke").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["target"]["id"], id);
    assert_eq!(app.whoami(&key).await.0, StatusCode::UNAUTHORIZED);
}
