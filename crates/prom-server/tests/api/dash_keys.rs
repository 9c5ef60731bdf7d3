//! The dashboard's API keys and wallet pages, as a browser sees them: a key created on the page is
//! shown once and works; the confirmation pages revoke, delete and rotate through the API (its
//! roles, audit rows and tenant isolation); forms without the session's CSRF token or from
//! another site change nothing; the wallet shows the balance, allowances and settlements, and
//! mints test funds only when the server allows it.

use prom_core::access::Role;
use prom_core::id::TenantId;
use prom_core::money::Amount;
use prom_server::billing::tenant_wallet;
use reqwest::StatusCode;
use serde_json::json;

use crate::pages::{Browser, Page};
use crate::support::{TestApp, TestUser, actions, assert_no_key_material, str_field};

const KEYS: &str = "/app/api-keys";

/// The CSRF token of the keys page (what the person's browser holds).
async fn csrf(browser: &Browser) -> String {
    let page = browser.get(KEYS).await;
    assert_eq!(page.status, StatusCode::OK, "the keys page: {}", page.html);
    page.csrf().unwrap_or_else(|| panic!("no CSRF field on the keys page: {}", page.html))
}

/// Posts `fields` to `path` with the session's CSRF token, as the page's form would.
async fn submit(browser: &Browser, path: &str, fields: &[(&str, &str)]) -> Page {
    let token = csrf(browser).await;
    let mut all = vec![("csrf", token.as_str())];
    all.extend_from_slice(fields);
    browser.post_raw(path, &all).await
}

/// The value of the element with `id` (an input's `value="…"`).
fn input_value(html: &str, id: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[start..];
    let value = rest.find("value=\"")? + "value=\"".len();
    let end = rest[value..].find('"')?;
    Some(rest[value..value + end].to_owned())
}

/// The text of the element with `id` up to its first tag.
fn element_text(html: &str, id: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[start..];
    let open = rest.find('>')? + 1;
    let close = rest[open..].find('<')?;
    Some(rest[open..open + close].trim().to_owned())
}

/// Creates a key on the page; returns the page with the reveal and the key it shows.
async fn create_on_page(browser: &Browser, label: &str) -> (Page, String) {
    let page = submit(browser, KEYS, &[("label", label)]).await;
    assert_eq!(page.status, StatusCode::CREATED, "creating a key on the page: {}", page.html);
    assert!(page.html.contains(r#"<section id="reveal" class="card reveal">"#), "no reveal panel: {}", page.html);
    let key = input_value(&page.html, "new-key").unwrap_or_else(|| panic!("no new-key input: {}", page.html));
    (page, key)
}

/// `html` with askama's numeric escapes (`&#60;`) written as the named ones (`&lt;`).
fn named(html: &str) -> String {
    html.replace("&#60;", "&lt;").replace("&#62;", "&gt;").replace("&#38;", "&amp;").replace("&#34;", "&quot;")
}

fn row_count(page: &Page) -> usize {
    page.html.matches("data-key-id=\"").count()
}

async fn owner_and_browser(app: &TestApp, tenant: &str) -> (TestUser, Browser) {
    let owner = app.with_owner(tenant).await;
    let browser = Browser::of(app, &owner);
    (owner, browser)
}

#[tokio::test]
async fn a_key_created_on_the_page_is_shown_once_and_works() {
    let app = TestApp::spawn().await;
    let (owner, browser) = owner_and_browser(&app, "acme").await;

    let form = browser.get(KEYS).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.html.contains(r#"<form id="create-key" method="post" action="/app/api-keys""#), "{}", form.html);
    assert!(form.html.contains(r#"id="key-label""#) && form.html.contains("ci/github-actions"));
    assert!(form.html.contains("Create API key"));
    assert!(!form.html.contains(r#"id="reveal""#), "a reveal without a new key");

    let (page, key) = create_on_page(&browser, "claude-desktop/laptop").await;
    assert!(key.starts_with("prom_live_"), "{key}");
    assert!(page.html.contains(r#"<button type="button" id="copy-key" data-copy="new-key">Copy</button>"#));
    assert!(page.html.contains("will not be shown again"));
    // The configurations carry the key and the gateway's address; no service yet: a placeholder.
    assert!(page.html.contains("PROMETHEUS_API_KEY"), "{}", page.html);
    assert!(page.html.contains("mcpServers"));
    assert!(named(&page.html).contains("/mcp/&lt;service&gt;"), "{}", page.html);
    assert!(page.html.contains("Authorization: Bearer"));
    assert!(page.html.contains("StreamableHTTPClientTransport"));
    assert!(page.html.matches(key.as_str()).count() >= 4, "the key is in the input and each snippet");
    assert_eq!(row_count(&page), 1, "the new key is listed under the reveal");

    let (status, whoami) = app.whoami(&key).await;
    assert_eq!(status, StatusCode::OK, "{whoami}");
    assert_eq!(whoami["label"], "claude-desktop/laptop", "{whoami}");

    let reload = browser.get(KEYS).await;
    assert_eq!(reload.status, StatusCode::OK);
    assert_no_key_material(&reload.html, &key);
    assert!(!reload.html.contains(r#"id="reveal""#));
    let listed = owner.keys().await;
    let id = str_field(&listed[0], "id");
    let display = str_field(&listed[0], "display");
    assert!(reload.html.contains(&format!(r#"data-key-id="{id}""#)), "{}", reload.html);
    assert!(reload.html.contains(&display));
    assert!(reload.html.contains("claude-desktop/laptop"));
    assert!(reload.html.contains("owner@acme.example"), "the creator's e-mail");
    assert!(reload.html.contains("never"), "never used");
    assert!(reload.html.contains("1 key<"), "{}", reload.html);
    assert_eq!(actions(&owner.audit("?action=api_key.create").await), ["api_key.create"]);
}

#[tokio::test]
async fn the_service_the_person_came_from_is_in_the_snippets() {
    let app = TestApp::spawn().await;
    let (owner, browser) = owner_and_browser(&app, "acme").await;
    owner.create_service("weather", json!({ "forecast": "5" })).await;
    owner.create_service("atlas", json!({})).await;

    let form = browser.get("/app/api-keys?service=weather").await;
    assert!(form.html.contains(r#"name="service" value="weather""#), "{}", form.html);
    let page = submit(&browser, KEYS, &[("label", "agent/weather"), ("service", "weather")]).await;
    assert_eq!(page.status, StatusCode::CREATED);
    assert!(page.html.contains("/mcp/weather"), "{}", page.html);

    // Without one, the first service registered; a service that is no slug is not echoed.
    let page = submit(&browser, KEYS, &[("label", "agent/any"), ("service", "x\"}, \"evil")]).await;
    assert_eq!(page.status, StatusCode::CREATED);
    assert!(page.html.contains("/mcp/atlas"), "{}", page.html);
    assert!(!page.html.contains("evil"));
}

#[tokio::test]
async fn labels_are_escaped_and_bad_labels_show_the_form_again() {
    let app = TestApp::spawn().await;
    let (_owner, browser) = owner_and_browser(&app, "acme").await;
    let label = "<script>alert(1)</script>";

    let (page, _) = create_on_page(&browser, label).await;
    assert!(named(&page.html).contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", page.html);
    assert!(!page.html.contains(label));
    let list = browser.get(KEYS).await;
    assert!(named(&list.html).contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!list.html.contains(label));

    let blank = submit(&browser, KEYS, &[("label", "   ")]).await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST, "{}", blank.html);
    assert!(blank.html.contains(r#"class="error" role="alert""#));
    assert!(blank.html.contains(r#"id="create-key""#), "the form again");
    assert!(!blank.html.contains(r#"id="reveal""#));

    let long = "x".repeat(101);
    let refused = submit(&browser, KEYS, &[("label", &long)]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.html.contains(&format!(r#"value="{long}""#)), "what was typed is kept");
    assert_eq!(row_count(&refused), 1, "nothing was created");
}

#[tokio::test]
async fn a_member_sees_the_keys_but_cannot_change_them() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let (id, key) = owner.create_key("ci/github-actions").await;
    let member = app.with_user("acme", "member@acme.example", Role::Member).await;
    let browser = Browser::of(&app, &member);

    let page = browser.get(KEYS).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.html.contains(r#"id="create-key""#), "members get no create form");
    assert!(page.html.contains(&format!(r#"data-key-id="{id}""#)));
    assert!(!page.html.contains(&format!("/app/api-keys/{id}/revoke")), "no actions for members");

    let refused = submit(&browser, KEYS, &[("label", "sneaky")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    assert_eq!(owner.keys().await.len(), 1, "nothing was created");

    let confirm = browser.get(&format!("/app/api-keys/{id}/revoke")).await;
    assert_eq!(confirm.status, StatusCode::FORBIDDEN);
    let revoke = submit(&browser, &format!("/app/api-keys/{id}/revoke"), &[]).await;
    assert_eq!(revoke.status, StatusCode::FORBIDDEN);
    let delete = submit(&browser, &format!("/app/api-keys/{id}/delete"), &[]).await;
    assert_eq!(delete.status, StatusCode::FORBIDDEN);
    assert_eq!(app.whoami(&key).await.0, StatusCode::OK, "the key still works");
}

#[tokio::test]
async fn forms_without_the_token_or_from_another_site_change_nothing() {
    let app = TestApp::spawn().await;
    let (owner, browser) = owner_and_browser(&app, "acme").await;

    let bare = browser.post_raw(KEYS, &[("label", "forged")]).await;
    assert_eq!(bare.status, StatusCode::FORBIDDEN);
    let wrong = browser.post_raw(KEYS, &[("csrf", &"0".repeat(64)), ("label", "forged")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let token = csrf(&browser).await;
    let foreign =
        browser.post_with(KEYS, &[("csrf", &token), ("label", "forged")], &[("origin", "https://evil.example")]).await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    let cross =
        browser.post_with(KEYS, &[("csrf", &token), ("label", "forged")], &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(owner.keys().await.is_empty(), "no key was created");

    let (id, key) = owner.create_key("ci").await;
    let forged = browser.post_raw(&format!("/app/api-keys/{id}/revoke"), &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(app.whoami(&key).await.0, StatusCode::OK);

    let anonymous = Browser::anonymous(&app).get(KEYS).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert!(anonymous.location().is_some_and(|to| to.starts_with("/app/login")));
}

#[tokio::test]
async fn revoking_through_the_confirmation_page() {
    let app = TestApp::spawn().await;
    let (owner, browser) = owner_and_browser(&app, "acme").await;
    let (id, key) = owner.create_key("ci/github-actions").await;
    let display = str_field(&owner.key(&id).await, "display");

    let list = browser.get(KEYS).await;
    assert!(list.html.contains(&format!(r#"href="/app/api-keys/{id}/revoke""#)), "{}", list.html);
    let confirm = browser.get(&format!("/app/api-keys/{id}/revoke")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.html.contains("ci/github-actions") && confirm.html.contains(&display), "names the key");
    assert!(confirm.html.contains(r#"id="confirm-revoke""#));
    assert!(confirm.html.contains("Revoke key"));

    let done = submit(&browser, &format!("/app/api-keys/{id}/revoke"), &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    assert_eq!(done.location(), Some("/app/api-keys?notice=revoked"));
    assert_eq!(app.whoami(&key).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(actions(&owner.audit("?action=api_key.revoke").await), ["api_key.revoke"]);

    let after = browser.get("/app/api-keys?notice=revoked").await;
    assert!(after.html.contains(r#"class="notice" role="status""#));
    assert!(after.html.contains(">revoked<"), "{}", after.html);
    assert!(!after.html.contains(&format!("/app/api-keys/{id}/revoke")), "a revoked key cannot be revoked again");
}

#[tokio::test]
async fn deleting_through_the_confirmation_page() {
    let app = TestApp::spawn().await;
    let (owner, browser) = owner_and_browser(&app, "acme").await;
    let (id, key) = owner.create_key("old-laptop").await;

    let confirm = browser.get(&format!("/app/api-keys/{id}/delete")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.html.contains(r#"id="confirm-delete""#) && confirm.html.contains("Delete key"));
    assert!(confirm.html.contains("old-laptop"));

    let done = submit(&browser, &format!("/app/api-keys/{id}/delete"), &[]).await;
    assert_eq!(done.location(), Some("/app/api-keys?notice=deleted"));
    assert_eq!(app.whoami(&key).await.0, StatusCode::UNAUTHORIZED);
    let after = browser.get("/app/api-keys?notice=deleted").await;
    assert!(!after.html.contains(&id), "a deleted key leaves the list");
    assert!(after.html.contains("0 keys"));
    assert_eq!(actions(&owner.audit("?action=api_key.delete").await), ["api_key.delete"]);
}

#[tokio::test]
async fn rotating_shows_the_new_key_once() {
    let app = TestApp::spawn().await;
    let (owner, browser) = owner_and_browser(&app, "acme").await;
    let (id, old_key) = owner.create_key("ci/github-actions").await;

    let confirm = browser.get(&format!("/app/api-keys/{id}/rotate")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.html.contains(r#"id="confirm-rotate""#) && confirm.html.contains("Rotate key"));
    for grace in ["value=\"0\"", "value=\"3600\"", "value=\"86400\"", "value=\"604800\""] {
        assert!(confirm.html.contains(grace), "{grace} offered");
    }

    let bad = submit(&browser, &format!("/app/api-keys/{id}/rotate"), &[("grace", "soon"), ("label", "kept")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.html.contains(r#"class="error""#) && bad.html.contains(r#"value="kept""#));
    let too_long = submit(&browser, &format!("/app/api-keys/{id}/rotate"), &[("grace", "99999999")]).await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST, "the API's limit");
    assert!(too_long.html.contains(r#"id="confirm-rotate""#));

    let rotated =
        submit(&browser, &format!("/app/api-keys/{id}/rotate"), &[("grace", "3600"), ("label", "ci/rotated")]).await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.html);
    assert!(rotated.html.contains(r#"id="reveal""#) && rotated.html.contains("keeps working until"));
    let new_key = input_value(&rotated.html, "new-key").expect("the new key");
    assert_ne!(new_key, old_key);
    assert_eq!(app.whoami(&new_key).await.0, StatusCode::OK);
    assert_eq!(app.whoami(&old_key).await.0, StatusCode::OK, "the grace period");
    assert!(
        rotated.html.contains(r#"<span class="badge warn">rotated</span>"#),
        "the old key's badge: {}",
        rotated.html
    );
    assert!(rotated.html.contains("expires <time"), "and when it stops: {}", rotated.html);
    assert!(rotated.html.contains("ci/rotated"));
    assert_eq!(actions(&owner.audit("?action=api_key.rotate").await), ["api_key.rotate"]);

    let reload = browser.get(KEYS).await;
    assert_no_key_material(&reload.html, &new_key);
}

#[tokio::test]
async fn another_tenants_keys_are_out_of_reach() {
    let app = TestApp::spawn().await;
    let (_owner, browser) = owner_and_browser(&app, "acme").await;
    let other = app.with_owner("globex").await;
    let (their_id, their_key) = other.create_key("globex-secret-agent").await;

    let list = browser.get(KEYS).await;
    assert!(!list.html.contains("globex-secret-agent") && !list.html.contains(&their_id));
    for action in ["revoke", "delete", "rotate"] {
        let page = browser.get(&format!("/app/api-keys/{their_id}/{action}")).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{action}: {}", page.html);
        assert!(!page.html.contains("globex-secret-agent"));
        let posted = submit(&browser, &format!("/app/api-keys/{their_id}/{action}"), &[]).await;
        assert_eq!(posted.status, StatusCode::NOT_FOUND, "{action}");
    }
    assert_eq!(app.whoami(&their_key).await.0, StatusCode::OK, "their key still works");
    let junk = browser.get("/app/api-keys/not-a-key/revoke").await;
    assert_eq!(junk.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_list_is_paged_fifty_at_a_time() {
    let app = TestApp::spawn().await;
    let (owner, browser) = owner_and_browser(&app, "acme").await;
    for n in 0..120 {
        owner.create_key(&format!("agent-{n:03}")).await;
    }

    let first = browser.get(KEYS).await;
    assert_eq!(row_count(&first), 50);
    assert!(first.html.contains("120 keys"));
    assert!(first.html.contains("agent-119"), "newest first");
    assert!(first.html.contains(r#"href="/app/api-keys?page=2" rel="next""#), "{}", first.html);
    assert!(!first.html.contains(r#"rel="prev""#));

    let last = browser.get("/app/api-keys?page=3").await;
    assert_eq!(row_count(&last), 20);
    assert!(last.html.contains("agent-000"));
    assert!(last.html.contains(r#"href="/app/api-keys?page=2" rel="prev""#));
    assert!(!last.html.contains(r#"rel="next""#));

    let junk = browser.get("/app/api-keys?page=banana").await;
    assert_eq!(junk.status, StatusCode::OK);
    assert_eq!(row_count(&junk), 50);
}

fn balance(page: &Page) -> String {
    element_text(&page.html, "wallet-balance").unwrap_or_else(|| panic!("no balance: {}", page.html))
}

async fn ledger_balance(app: &TestApp, user: &TestUser) -> Amount {
    let wallet = tenant_wallet(&TenantId::from_trusted(user.tenant_id.clone()));
    app.state.ledger.balance_of(&wallet).await.expect("read the balance")
}

#[tokio::test]
async fn test_funds_reach_the_wallet_and_its_allowances() {
    let app = TestApp::spawn_with(|c| {
        c.test_funds = true;
        c.settle_interval_secs = 3600;
    })
    .await;
    let publisher = app.with_owner("publisher").await;
    publisher.create_service("weather", json!({ "forecast": "5" })).await;
    let (owner, browser) = owner_and_browser(&app, "acme").await;
    let (status, view) = owner.put("/v1/services/weather/allowance", json!({ "amount": "1000" })).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["available"], "0", "an empty wallet pays nothing: {view}");

    let page = browser.get("/app/wallet").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(balance(&page), "0");
    assert!(page.html.contains(r#"<form id="fund-form" method="post" action="/app/wallet/fund""#));
    assert!(page.html.contains(r#"id="fund-amount""#) && page.html.contains("Add test funds"));
    assert!(page.html.contains(r#"href="/app/store/weather""#), "the allowance row: {}", page.html);
    assert!(page.html.contains("1,000"));
    assert!(page.html.contains(r#"id="settlements""#));

    let token = csrf(&browser).await;
    let funded = browser.post_raw("/app/wallet/fund", &[("csrf", &token), ("amount", "5000")]).await;
    assert_eq!(funded.status, StatusCode::SEE_OTHER, "{}", funded.html);
    assert_eq!(funded.location(), Some("/app/wallet?notice=funded"));
    assert_eq!(ledger_balance(&app, &owner).await, Amount::new(5000));
    let page = browser.get("/app/wallet?notice=funded").await;
    assert_eq!(balance(&page), "5,000");
    assert!(page.html.contains(r#"class="notice" role="status""#));
    // The wallet was cut again: the allowance may be spent at once.
    let (_, view) = owner.get("/v1/services/weather/allowance").await;
    assert_eq!(view["available"], "1000", "{view}");

    for bad in ["", "0", "-1", "12.5", "1000000000000001", "lots"] {
        let refused = browser.post_raw("/app/wallet/fund", &[("csrf", &token), ("amount", bad)]).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(refused.html.contains(r#"class="error" role="alert""#));
    }
    let escaped = browser.post_raw("/app/wallet/fund", &[("csrf", &token), ("amount", "<script>")]).await;
    assert!(named(&escaped.html).contains("value=\"&lt;script&gt;\"") && !escaped.html.contains("<script>"));
    assert_eq!(ledger_balance(&app, &owner).await, Amount::new(5000), "nothing more was minted");

    let forged = browser.post_raw("/app/wallet/fund", &[("amount", "5000")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let member = app.with_user("acme", "member@acme.example", Role::Member).await;
    let member_browser = Browser::of(&app, &member);
    let member_page = member_browser.get("/app/wallet").await;
    assert_eq!(balance(&member_page), "5,000");
    assert!(!member_page.html.contains(r#"id="fund-form""#));
    let member_token = member_page.csrf().expect("a CSRF field");
    let refused = member_browser.post_raw("/app/wallet/fund", &[("csrf", &member_token), ("amount", "5")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // Another tenant sees its own, empty wallet.
    let other = app.with_owner("globex").await;
    let theirs = Browser::of(&app, &other).get("/app/wallet").await;
    assert_eq!(balance(&theirs), "0");
    assert!(!theirs.html.contains("/app/store/weather"));
    assert_eq!(ledger_balance(&app, &owner).await, Amount::new(5000));
}

#[tokio::test]
async fn test_funds_are_refused_when_off() {
    let app = TestApp::spawn().await;
    let (owner, browser) = owner_and_browser(&app, "acme").await;

    let page = browser.get("/app/wallet").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(balance(&page), "0");
    assert!(!page.html.contains(r#"id="fund-form""#));
    let token = page.csrf().expect("a CSRF field");
    let refused = browser.post_raw("/app/wallet/fund", &[("csrf", &token), ("amount", "5000")]).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.html);
    assert!(refused.html.contains("test funds is off"));
    assert_eq!(ledger_balance(&app, &owner).await, Amount::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_are_listed_with_their_ledger_reference() {
    let app = crate::allowance::spawn().await;
    let owner = crate::allowance::paid_service(&app, 10_000).await;
    let (status, view) = owner.put("/v1/services/paid/allowance", json!({ "amount": "1000" })).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let (_, key) = owner.create_key("agent").await;
    for id in 1..=2 {
        crate::allowance::tool_call(&app, "paid", &key, id, "echo").await;
    }
    let browser = Browser::of(&app, &owner);

    let before = browser.get("/app/wallet").await;
    assert_eq!(balance(&before), "10,000", "captured, not yet settled: still in the wallet");
    assert!(before.html.contains("200 not settled yet"), "{}", before.html);
    assert!(before.html.contains("No settlements yet."));

    let report = app.state.settler.settle_once().await;
    assert_eq!((report.settled_batches, report.failed_batches), (1, 0), "{report:?}");
    let after = browser.get("/app/wallet").await;
    assert_eq!(balance(&after), "9,800");
    let table = &after.html[after.html.find(r#"id="settlements""#).expect("the settlements table")..];
    assert!(table.contains(r#"href="/app/store/paid""#), "{table}");
    assert!(table.contains(">done<") && table.contains("block <code>"), "done, with its block: {table}");
    assert!(!table.contains("No settlements yet."));

    // The publisher was paid; the consumer's settlements are not on its page.
    let publisher = app.with_owner("publisher").await;
    let theirs = Browser::of(&app, &publisher).get("/app/wallet").await;
    assert_eq!(balance(&theirs), "200");
    assert!(theirs.html.contains("No settlements yet."), "{}", theirs.html);
}
