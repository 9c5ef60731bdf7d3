//! OAuth as an attacker tries it: plain PKCE, a wrong verifier, a replayed code, a redirect URI
//! the client never registered, a missing or foreign resource, a token used on another service,
//! a reused refresh token, a client metadata document on a private address, and concurrent paid
//! calls racing past a grant's spend cap.

use std::sync::Arc;

use prom_core::money::Amount;
use reqwest::StatusCode;
use reqwest::header::LOCATION;

use crate::oauth::{
    PRICE, authorize_query, call_with, connect, consent, exchange, paid_service, param, redirect_params, refresh,
    register_agent, resource,
};
use crate::pages::Browser;
use crate::support::{TestApp, actions};

#[tokio::test]
async fn pkce_must_be_s256_and_the_verifier_must_match() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    paid_service(&app, &owner, "paid").await;
    let agent = register_agent(&app).await;
    let resource = resource(&app, "paid");
    let browser = Browser::of(&app, &owner);

    for extra in [
        vec![("code_challenge_method", "plain"), ("code_challenge", agent.verifier.as_str())],
        vec![("code_challenge", ""), ("code_challenge_method", "")],
    ] {
        let page = browser.get(&format!("/oauth/authorize?{}", authorize_query(&agent, &resource, &extra))).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        let location = page.location().expect("back to the client");
        assert!(location.starts_with(&agent.redirect_uri), "{location}");
        assert_eq!(param(&redirect_params(location), "error").as_deref(), Some("invalid_request"), "{location}");
    }

    let location = consent(&app, &owner, &authorize_query(&agent, &resource, &[]), "1000", "allow").await;
    let code = param(&redirect_params(&location), "code").expect("code");
    let wrong = format!("{}x", agent.verifier);
    let (status, answer) = exchange(&app, &agent, &code, &wrong).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{answer}");
    // The challenge itself as the verifier (what plain PKCE would send) is refused too.
    let (status, _) = exchange(&app, &agent, &code, &agent.challenge()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_what_it_issued() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    paid_service(&app, &owner, "paid").await;
    let agent = register_agent(&app).await;
    let location = consent(&app, &owner, &authorize_query(&agent, &resource(&app, "paid"), &[]), "1000", "allow").await;
    let code = param(&redirect_params(&location), "code").expect("code");
    let (status, tokens) = exchange(&app, &agent, &code, &agent.verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    assert_eq!(call_with(&app, "paid", &access, 1).await.0, StatusCode::OK);

    let (status, answer) = exchange(&app, &agent, &code, &agent.verifier).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{answer}");
    assert_eq!(
        call_with(&app, "paid", &access, 2).await.0,
        StatusCode::UNAUTHORIZED,
        "the first exchange's token is revoked"
    );
    let (status, _) = refresh(&app, &agent, tokens["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(actions(&owner.audit("").await).contains(&"oauth.reuse_detected"));
}

#[tokio::test]
async fn a_redirect_uri_the_client_never_registered_is_refused_before_any_redirect() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    paid_service(&app, &owner, "paid").await;
    let agent = register_agent(&app).await;
    let resource = resource(&app, "paid");
    let browser = Browser::of(&app, &owner);
    for redirect in ["https://evil.example/callback", "http://127.0.0.1:43117/other", "http://10.0.0.1:43117/callback"]
    {
        let query = authorize_query(&agent, &resource, &[("redirect_uri", redirect)]);
        for path in [format!("/oauth/authorize?{query}"), format!("/app/connect?{query}")] {
            let page = browser.get(&path).await;
            assert_eq!(page.status, StatusCode::BAD_REQUEST, "{path}: {}", page.html);
            assert!(page.headers.get(LOCATION).is_none(), "never redirected");
        }
    }
    // A loopback redirect URI may change its port (RFC 8252), nothing else.
    let query = authorize_query(&agent, &resource, &[("redirect_uri", "http://127.0.0.1:51234/callback")]);
    assert_eq!(browser.get(&format!("/oauth/authorize?{query}")).await.status, StatusCode::SEE_OTHER);
    // An unknown client is refused on the page as well.
    let query = authorize_query(&agent, &resource, &[("client_id", "prc_nobody")]);
    let page = browser.get(&format!("/oauth/authorize?{query}")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.headers.get(LOCATION).is_none());
    // Registration refuses redirect URIs that are not https, loopback http or a private scheme.
    let body = serde_json::json!({"client_name": "x", "redirect_uris": ["http://evil.example/cb"]});
    let (status, answer) = app.client.post("/oauth/register", crate::support::Cred::None, Some(&body)).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_redirect_uri")));
}

#[tokio::test]
async fn the_resource_is_required_bound_and_checked_at_the_gateway() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    paid_service(&app, &owner, "paid").await;
    paid_service(&app, &owner, "other").await;
    let agent = register_agent(&app).await;
    let browser = Browser::of(&app, &owner);
    for (resource, error) in
        [("", "invalid_request"), ("https://evil.example/mcp/paid", "invalid_target"), ("/mcp/paid", "invalid_target")]
    {
        let query = authorize_query(&agent, resource, &[]);
        let page = browser.get(&format!("/oauth/authorize?{query}")).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{resource:?}");
        let location = page.location().expect("back to the client");
        assert_eq!(param(&redirect_params(location), "error").as_deref(), Some(error), "{resource:?}: {location}");
    }

    // A token for one service is refused by another.
    let tokens = connect(&app, &owner, &agent, &resource(&app, "paid"), "1000").await;
    let access = tokens["access_token"].as_str().expect("access");
    assert_eq!(call_with(&app, "paid", access, 1).await.0, StatusCode::OK);
    let (status, answer) = call_with(&app, "other", access, 2).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "TOKEN_INVALID");
    assert!(answer["error"]["message"].as_str().unwrap_or_default().contains("paid"), "{answer}");
    // And an exchange that names another resource is refused.
    let location = consent(&app, &owner, &authorize_query(&agent, &resource(&app, "paid"), &[]), "10", "allow").await;
    let code = param(&redirect_params(&location), "code").expect("code");
    let (status, answer) = crate::oauth::token_request(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &agent.redirect_uri),
            ("client_id", &agent.client_id),
            ("code_verifier", &agent.verifier),
            ("resource", &resource(&app, "other")),
        ],
    )
    .await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_target")), "{answer}");
}

#[tokio::test]
async fn a_refresh_token_reused_after_rotation_revokes_the_family() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    paid_service(&app, &owner, "paid").await;
    let agent = register_agent(&app).await;
    let tokens = connect(&app, &owner, &agent, &resource(&app, "paid"), "1000").await;
    let first = tokens["refresh_token"].as_str().expect("rt").to_owned();
    let (status, second) = refresh(&app, &agent, &first).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let access = second["access_token"].as_str().expect("access").to_owned();
    assert_eq!(call_with(&app, "paid", &access, 1).await.0, StatusCode::OK);

    // The stolen first refresh token comes back: refused, and the whole family with it.
    let (status, answer) = refresh(&app, &agent, &first).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{answer}");
    assert_eq!(call_with(&app, "paid", &access, 2).await.0, StatusCode::UNAUTHORIZED, "the live access token died");
    let (status, _) = refresh(&app, &agent, second["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the rotated refresh token died too");
    assert!(actions(&owner.audit("").await).contains(&"oauth.reuse_detected"));
}

#[tokio::test]
async fn a_client_metadata_document_on_a_private_address_is_refused() {
    // Production egress rules (the suite's loopback allowance removed).
    let app = TestApp::spawn_with(|config| config.egress = prom_server::egress::EgressConfig::default()).await;
    let owner = app.with_owner("acme").await;
    let browser = Browser::of(&app, &owner);
    for client_id in
        ["https://10.0.0.7/oauth/client.json", "https://127.0.0.1/client.json", "https://169.254.169.254/latest/meta"]
    {
        let agent = crate::oauth::Agent {
            client_id: client_id.into(),
            redirect_uri: "http://127.0.0.1:43117/callback".into(),
            verifier: "v".repeat(43),
        };
        let query = authorize_query(&agent, &app.client.url("/mcp/paid"), &[]);
        let page = browser.get(&format!("/oauth/authorize?{query}")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{client_id}: {}", page.html);
        assert!(page.headers.get(LOCATION).is_none());
        assert!(page.html.contains("metadata document"), "the page says why: {}", page.html);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_paid_calls_under_one_grant_never_pass_its_cap() {
    let app = Arc::new(TestApp::spawn().await);
    let owner = app.with_owner("acme").await;
    paid_service(&app, &owner, "paid").await;
    let agent = register_agent(&app).await;
    let cap = 5 * PRICE;
    let tokens = connect(&app, &owner, &agent, &resource(&app, "paid"), &cap.to_string()).await;
    let access = tokens["access_token"].as_str().expect("access").to_owned();

    let calls: Vec<_> = (0..24)
        .map(|id| {
            let (app, access) = (app.clone(), access.clone());
            tokio::spawn(async move { call_with(&app, "paid", &access, id).await })
        })
        .collect();
    let (mut paid, mut capped) = (0, 0);
    for call in calls {
        let (status, answer) = call.await.expect("call");
        assert_eq!(status, StatusCode::OK, "{answer}");
        if answer.get("result").is_some() {
            paid += 1;
        } else {
            assert_eq!(answer["error"]["data"]["code"], "ALLOWANCE_EXCEEDED", "{answer}");
            assert_eq!(answer["error"]["data"]["reason"], "grant_cap_reached", "{answer}");
            assert_eq!(answer["error"]["data"]["cap"], cap.to_string());
            assert!(answer["error"]["message"].as_str().unwrap_or_default().contains(&cap.to_string()));
            capped += 1;
        }
    }
    assert_eq!((paid, capped), (5, 19), "exactly the cap's worth of calls is paid");
    let tenant = prom_core::id::TenantId::from_trusted(owner.tenant_id.clone());
    let grants = app.state.store.list_grants(&tenant).await.expect("grants");
    assert_eq!(grants[0].spent, Amount::new(cap));
    let budget =
        app.state.charges.budget(&tenant, &prom_core::service::ServiceSlug::parse("paid").expect("slug")).await;
    assert_eq!(budget.expect("budget").held, Amount::ZERO);
}

#[tokio::test]
async fn a_client_configured_by_the_operator_is_named_as_such_and_held_to_its_redirect_uris() {
    let app = TestApp::spawn_with(|config| {
        config.oauth.clients = vec![prom_server::oauth::ConfiguredClient {
            client_id: "acme-desktop".into(),
            client_name: "Acme Desktop".into(),
            redirect_uris: vec!["http://127.0.0.1:40000/cb".into()],
        }];
    })
    .await;
    let owner = app.with_owner("acme").await;
    paid_service(&app, &owner, "paid").await;
    let agent = crate::oauth::Agent {
        client_id: "acme-desktop".into(),
        redirect_uri: "http://127.0.0.1:40000/cb".into(),
        verifier: "c".repeat(50),
    };
    let browser = Browser::of(&app, &owner);
    let query = authorize_query(&agent, &resource(&app, "paid"), &[]);
    let page = browser.get(&format!("/app/connect?{query}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("Acme Desktop") && page.html.contains("listed by this server"), "{}", page.html);
    let tokens = connect(&app, &owner, &agent, &resource(&app, "paid"), "100").await;
    assert_eq!(call_with(&app, "paid", tokens["access_token"].as_str().expect("access"), 1).await.0, StatusCode::OK);
    let query = authorize_query(&agent, &resource(&app, "paid"), &[("redirect_uri", "http://127.0.0.1:40000/other")]);
    let page = browser.get(&format!("/oauth/authorize?{query}")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.headers.get(LOCATION).is_none());
}
