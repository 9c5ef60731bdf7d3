//! OAuth 2.1 for interactive agents, over real HTTP: discovery, dynamic registration, the consent
//! page (as a browser posts it), code exchange with PKCE, access tokens at the gateway (bound to
//! one service, held to the grant's spend cap), refresh rotation, revocation, and the audit log.
//! The attacks are in `oauth_attacks.rs`. (PostgreSQL when `PROM_TEST_DATABASE_URL` is set.)

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prom_core::money::Amount;
use prom_core::service::ServiceSlug;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::gateway::{call, mcp_post, register_priced, spawn_upstream};
use crate::pages::{Browser, field_value};
use crate::support::{Cred, TestApp, TestUser, actions};

pub const PRICE: u128 = 100;

/// A public client as an MCP client registers itself, with a PKCE verifier.
pub struct Agent {
    pub client_id: String,
    pub redirect_uri: String,
    pub verifier: String,
}

impl Agent {
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()))
    }
}

/// Registers a client whose redirect URI is a loopback callback.
pub async fn register_agent(app: &TestApp) -> Agent {
    let redirect_uri = "http://127.0.0.1:43117/callback".to_owned();
    let body = json!({
        "client_name": "Test Agent",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    let (status, answer) = app.client.post("/oauth/register", Cred::None, Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let verifier = format!("{}-verifier-of-at-least-forty-three-characters", uuid::Uuid::now_v7().simple());
    Agent { client_id: answer["client_id"].as_str().expect("client_id").to_owned(), redirect_uri, verifier }
}

/// A paid service `slug` (tool `echo` at [`PRICE`]) with a large allowance of `owner`'s tenant.
pub async fn paid_service(app: &TestApp, owner: &TestUser, slug: &str) {
    let (url, _upstream) = spawn_upstream().await;
    register_priced(app, owner, slug, &url, &[("echo", PRICE)]).await;
    let tenant = prom_core::id::TenantId::from_trusted(owner.tenant_id.clone());
    let slug = ServiceSlug::parse(slug).expect("slug");
    app.state
        .store
        .set_approved(&tenant, &slug, Amount::new(1_000_000), None, None, None, None)
        .await
        .expect("approve");
    app.state.charges.reload(&tenant, &slug).await.expect("refresh");
}

/// The query of an authorization request for `resource`, with `extra` parameters replacing the
/// defaults (an empty value drops a parameter).
pub fn authorize_query(agent: &Agent, resource: &str, extra: &[(&str, &str)]) -> String {
    let challenge = agent.challenge();
    let mut params: Vec<(&str, String)> = vec![
        ("response_type", "code".into()),
        ("client_id", agent.client_id.clone()),
        ("redirect_uri", agent.redirect_uri.clone()),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256".into()),
        ("state", "st4te".into()),
        ("resource", resource.into()),
        ("scope", "agent:connect".into()),
    ];
    for (name, value) in extra {
        params.retain(|(n, _)| n != name);
        if !value.is_empty() {
            params.push((name, (*value).to_owned()));
        }
    }
    serde_urlencoded::to_string(&params).expect("query")
}

/// The query parameters of a redirect's `Location`.
pub fn redirect_params(location: &str) -> Vec<(String, String)> {
    let query = location.split_once('?').map_or("", |(_, q)| q);
    serde_urlencoded::from_str(query).expect("query")
}

pub fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

/// A person (`user`, in a browser) answers the consent page for `query`; returns where the
/// browser is sent.
pub async fn consent(app: &TestApp, user: &TestUser, query: &str, cap: &str, decision: &str) -> String {
    let browser = Browser::of(app, user);
    let start = browser.get(&format!("/oauth/authorize?{query}")).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.html);
    let consent_path = start.location().expect("to the consent page").to_owned();
    assert!(consent_path.starts_with("/app/connect?"), "{consent_path}");
    let page = browser.get(&consent_path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let csrf = page.csrf().expect("csrf");
    let mut fields: Vec<(String, String)> = vec![("csrf".into(), csrf)];
    for name in [
        "response_type",
        "client_id",
        "redirect_uri",
        "code_challenge",
        "code_challenge_method",
        "state",
        "resource",
        "scope",
    ] {
        if let Some(value) = field_value(&page.html, name) {
            fields.push((name.into(), unescape(&value)));
        }
    }
    fields.extend([("cap".into(), cap.into()), ("days".into(), "30".into()), ("decision".into(), decision.into())]);
    let borrowed: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let answer = browser.post_raw("/app/connect", &borrowed).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.html);
    answer.location().expect("back to the app").to_owned()
}

/// Undoes askama's escaping of an attribute value (`&#38;`, `&#47;`, `&amp;`, …).
pub fn unescape(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail.find(';').unwrap_or(0);
        let entity = &tail[1..end.max(1)];
        let decoded = match entity {
            "amp" => Some('&'),
            "quot" => Some('"'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            _ => entity.strip_prefix('#').and_then(|n| n.parse::<u32>().ok()).and_then(char::from_u32),
        };
        match decoded {
            Some(c) if end > 0 => {
                out.push(c);
                rest = &tail[end + 1..];
            }
            _ => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Runs the whole flow for `resource` with a spend cap; returns the token answer.
pub async fn connect(app: &TestApp, user: &TestUser, agent: &Agent, resource: &str, cap: &str) -> Value {
    let location = consent(app, user, &authorize_query(agent, resource, &[]), cap, "allow").await;
    let params = redirect_params(&location);
    let code = param(&params, "code").unwrap_or_else(|| panic!("no code in {location}"));
    let (status, tokens) = exchange(app, agent, &code, &agent.verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens
}

pub async fn exchange(app: &TestApp, agent: &Agent, code: &str, verifier: &str) -> (StatusCode, Value) {
    token_request(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &agent.redirect_uri),
            ("client_id", &agent.client_id),
            ("code_verifier", verifier),
        ],
    )
    .await
}

pub async fn refresh(app: &TestApp, agent: &Agent, refresh_token: &str) -> (StatusCode, Value) {
    token_request(
        app,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", &agent.client_id)],
    )
    .await
}

pub async fn token_request(app: &TestApp, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = app.client.request(reqwest::Method::POST, "/oauth/token", Cred::None).form(form);
    app.client.send(response).await.pair()
}

/// A paid `echo` call with `token`: the HTTP status and the JSON-RPC answer.
pub async fn call_with(app: &TestApp, slug: &str, token: &str, id: u64) -> (StatusCode, Value) {
    let response = mcp_post(app, slug, Cred::Bearer(token), &call(id, "echo"), &[]).await;
    let status = response.status();
    let text = response.text().await.expect("body");
    let json = text
        .lines()
        .find_map(|line| line.strip_prefix("data: ").and_then(|data| serde_json::from_str(data).ok()))
        .or_else(|| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

pub fn resource(app: &TestApp, slug: &str) -> String {
    app.client.url(&format!("/mcp/{slug}"))
}

#[tokio::test]
async fn discovery_points_a_client_without_credentials_to_the_authorization_server() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    paid_service(&app, &owner, "paid").await;
    let base = app.client.url("");

    let bare = app
        .client
        .send(app.client.request(reqwest::Method::POST, "/mcp/paid", Cred::None).json(&call(1, "echo")))
        .await;
    assert_eq!(bare.status, StatusCode::UNAUTHORIZED);
    let challenge = bare.headers.get(WWW_AUTHENTICATE).expect("challenge").to_str().expect("text").to_owned();
    let metadata_url = format!("{base}/.well-known/oauth-protected-resource/mcp/paid");
    assert!(challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")), "{challenge}");
    assert!(challenge.contains("scope=\"agent:connect\""), "{challenge}");
    assert_eq!(bare.body["error"]["code"], "TOKEN_MISSING");

    // A bad key is not pushed into a browser flow.
    let bad_key = format!("prom_live_{}", "0".repeat(64));
    let wrong = app
        .client
        .send(app.client.request(reqwest::Method::POST, "/mcp/paid", Cred::ApiKey(&bad_key)).json(&call(1, "echo")))
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let plain = wrong.headers.get(WWW_AUTHENTICATE).expect("challenge").to_str().expect("text");
    assert!(!plain.contains("resource_metadata"), "{plain}");

    let (status, prm) = app.client.get("/.well-known/oauth-protected-resource/mcp/paid", Cred::None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(prm["resource"], format!("{base}/mcp/paid"));
    assert_eq!(prm["authorization_servers"], json!([base]));
    assert_eq!(prm["scopes_supported"], json!(["agent:connect"]));
    let (status, _) = app.client.get("/.well-known/oauth-protected-resource/mcp/nope", Cred::None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-authorization-server/mcp/paid",
        "/.well-known/openid-configuration",
        "/.well-known/openid-configuration/mcp/paid",
    ] {
        let (status, meta) = app.client.get(path, Cred::None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(meta["issuer"], base.as_str());
        assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(meta["token_endpoint_auth_methods_supported"], json!(["none"]));
        assert_eq!(meta["client_id_metadata_document_supported"], true);
        assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
        assert_eq!(meta["token_endpoint"], format!("{base}/oauth/token"));
    }
}

#[tokio::test]
async fn a_person_connects_an_agent_that_calls_refreshes_and_is_revoked_on_the_dashboard() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    paid_service(&app, &owner, "paid").await;
    let agent = register_agent(&app).await;
    let resource = resource(&app, "paid");

    let location = consent(&app, &owner, &authorize_query(&agent, &resource, &[]), "1000", "allow").await;
    assert!(location.starts_with(&agent.redirect_uri), "{location}");
    let params = redirect_params(&location);
    assert_eq!(param(&params, "state").as_deref(), Some("st4te"), "state is echoed");
    assert_eq!(param(&params, "iss"), Some(app.client.url("")), "iss is added (RFC 9207)");
    let code = param(&params, "code").expect("code");
    let (status, tokens) = exchange(&app, &agent, &code, &agent.verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "agent:connect");
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let refresh_token = tokens["refresh_token"].as_str().expect("refresh").to_owned();
    assert!(access.starts_with("prom_at_") && refresh_token.starts_with("prom_rt_"));

    let (status, answer) = call_with(&app, "paid", &access, 1).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer.get("result").is_some(), "the paid call succeeds: {answer}");

    // Refresh rotates: a new pair, and the new access token works.
    let (status, renewed) = refresh(&app, &agent, &refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    let access2 = renewed["access_token"].as_str().expect("access").to_owned();
    assert_ne!(access2, access);
    assert_ne!(renewed["refresh_token"], tokens["refresh_token"]);
    let (status, answer) = call_with(&app, "paid", &access2, 2).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // Connected apps lists it, with what it spent; revoking it stops the next call.
    let browser = Browser::of(&app, &owner);
    let page = browser.get("/app/apps").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("Test Agent") && page.html.contains("200 / 1000"), "{}", page.html);
    let grants = app
        .state
        .store
        .list_grants(&prom_core::id::TenantId::from_trusted(owner.tenant_id.clone()))
        .await
        .expect("grants");
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].spent, Amount::new(2 * PRICE));
    let revoked = browser.post(&format!("/app/apps/{}/revoke", grants[0].grant.id), &[]).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.html);
    let (status, answer) = call_with(&app, "paid", &access2, 3).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let (status, answer) = refresh(&app, &agent, renewed["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"], "invalid_grant");

    let events = owner.audit("").await;
    let seen = actions(&events);
    for action in ["oauth.consent", "oauth.token_issue", "oauth.revoke"] {
        assert!(seen.contains(&action), "{action} in {seen:?}");
    }
    let text = serde_json::to_string(&events).expect("json");
    for secret in [&access, &access2, &refresh_token, &code] {
        assert!(!text.contains(secret.as_str()), "no code or token in the audit log");
    }
}

#[tokio::test]
async fn denial_and_members_who_may_not_spend() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    paid_service(&app, &owner, "paid").await;
    let agent = register_agent(&app).await;
    let resource = resource(&app, "paid");
    let query = authorize_query(&agent, &resource, &[]);

    let location = consent(&app, &owner, &query, "", "deny").await;
    let params = redirect_params(&location);
    assert_eq!(param(&params, "error").as_deref(), Some("access_denied"), "{location}");
    assert_eq!(param(&params, "state").as_deref(), Some("st4te"));

    // A member may look, but not allow: the page says so and no code is sent.
    let member = app.with_user("acme", "member@acme.test", prom_core::access::Role::Member).await;
    let browser = Browser::of(&app, &member);
    let page = browser.get(&format!("/app/connect?{query}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.html.contains("consent-allow"), "no Allow button for a member");
    let mut fields = vec![("cap", "10"), ("days", "1"), ("decision", "allow")];
    let owned: Vec<(String, String)> = redirect_params(&format!("?{query}"));
    fields.extend(owned.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let refused = browser.post("/app/connect", &fields).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.html);
    assert!(refused.headers.get(LOCATION).is_none());
}

#[tokio::test]
async fn the_revocation_endpoint_revokes_an_access_token_or_a_whole_grant() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    paid_service(&app, &owner, "paid").await;
    let agent = register_agent(&app).await;

    // An access token alone: it stops at once; its refresh token still works.
    let tokens = connect(&app, &owner, &agent, &resource(&app, "paid"), "1000").await;
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    assert_eq!(call_with(&app, "paid", &access, 1).await.0, StatusCode::OK);
    assert_eq!(revoke_at(&app, &access, &agent.client_id).await, StatusCode::OK);
    assert_eq!(call_with(&app, "paid", &access, 2).await.0, StatusCode::UNAUTHORIZED);
    let (status, renewed) = refresh(&app, &agent, tokens["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");

    // A refresh token: the whole grant goes.
    let access = renewed["access_token"].as_str().expect("access").to_owned();
    let refresh_token = renewed["refresh_token"].as_str().expect("rt").to_owned();
    assert_eq!(revoke_at(&app, &refresh_token, &agent.client_id).await, StatusCode::OK);
    assert_eq!(call_with(&app, "paid", &access, 3).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&app, &agent, &refresh_token).await.0, StatusCode::BAD_REQUEST);
    assert!(actions(&owner.audit("").await).contains(&"oauth.revoke"));

    // Unknown tokens are answered like known ones (RFC 7009 §2.2).
    assert_eq!(revoke_at(&app, &format!("prom_rt_{}", "0".repeat(64)), &agent.client_id).await, StatusCode::OK);
    assert_eq!(revoke_at(&app, "garbage", &agent.client_id).await, StatusCode::OK);
}

/// `POST /oauth/revoke` (RFC 7009) for `token`, as its client.
async fn revoke_at(app: &TestApp, token: &str, client_id: &str) -> StatusCode {
    let request = app
        .client
        .request(reqwest::Method::POST, "/oauth/revoke", Cred::None)
        .form(&[("token", token), ("client_id", client_id)]);
    app.client.send(request).await.status
}
