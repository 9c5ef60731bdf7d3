//! The dashboard's frame: signing in with the form (and its login-CSRF cookie), sessions as
//! cookies with an idle timeout, signing out, switching tenant, the first start's setup link, and
//! the headers every page carries.

use prom_core::access::Role;
use reqwest::StatusCode;

use crate::pages::{Browser, field_value};
use crate::support::{PASSWORD, TestApp, actions};

/// Signs in through the form as a browser does: the form's page sets the login-CSRF cookie that
/// the post must carry back. Returns the answer to the post.
async fn sign_in_with_form(app: &TestApp, email: &str, password: &str, next: &str) -> crate::pages::Page {
    let browser = Browser::anonymous(app);
    let form = browser.get(&format!("/app/login?next={next}")).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.html);
    let cookie = form.headers.get("set-cookie").and_then(|v| v.to_str().ok()).expect("a login cookie").to_owned();
    let pair = cookie.split(';').next().expect("name=value").to_owned();
    let csrf = form.csrf().expect("a csrf field");
    let next_field = field_value(&form.html, "next").expect("a next field");
    browser
        .with_cookie(&pair)
        .post_raw("/app/login", &[("csrf", &csrf), ("next", &next_field), ("email", email), ("password", password)])
        .await
}

fn session_cookie(page: &crate::pages::Page) -> String {
    let set = page
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("prom_session="))
        .unwrap_or_else(|| panic!("no session cookie in {:?}", page.headers))
        .to_owned();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Lax"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    set.split(';').next().expect("name=value").to_owned()
}

#[tokio::test]
async fn signing_in_with_the_form_sets_an_http_only_cookie_and_goes_on_to_next() {
    let app = TestApp::spawn().await;
    app.provision("acme", "ada@acme.example", Role::Owner).await;

    let answer = sign_in_with_form(&app, "ada@acme.example", PASSWORD, "/app/audit").await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.html);
    assert_eq!(answer.location(), Some("/app/audit"));
    let cookie = session_cookie(&answer);

    let page = Browser::anonymous(&app).with_cookie(&cookie).get("/app/audit").await;
    assert_ne!(page.status, StatusCode::SEE_OTHER, "signed in");
    assert!(page.html.contains("ada@acme.example"), "the frame names who is signed in");
}

#[tokio::test]
async fn a_wrong_password_is_said_in_words_and_the_email_kept() {
    let app = TestApp::spawn().await;
    app.with_owner("acme").await;
    let answer = sign_in_with_form(&app, "owner@acme.example", "not the password", "/app/store").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.html.contains("The e-mail address or the password is wrong."), "{}", answer.html);
    assert!(answer.html.contains("value=\"owner@acme.example\""), "the e-mail typed is kept");
}

#[tokio::test]
async fn the_sign_in_form_needs_its_own_csrf_cookie() {
    let app = TestApp::spawn().await;
    app.provision("acme", "ada@acme.example", Role::Owner).await;
    // A page on another site posting the sign-in form has no login cookie of ours.
    let forged = Browser::anonymous(&app)
        .post_raw("/app/login", &[("csrf", "abc"), ("email", "ada@acme.example"), ("password", PASSWORD)])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.headers.get("set-cookie").is_none(), "no session");
}

#[tokio::test]
async fn next_never_leaves_the_site() {
    let app = TestApp::spawn().await;
    app.provision("acme", "ada@acme.example", Role::Owner).await;
    // Percent-encoded: //evil.example/app, https://evil.example/, /app\..\evil, /v1/keys.
    for next in ["%2F%2Fevil.example%2Fapp", "https%3A%2F%2Fevil.example%2F", "%2Fapp%5C..%5Cevil", "%2Fv1%2Fkeys"] {
        let answer = sign_in_with_form(&app, "ada@acme.example", PASSWORD, next).await;
        assert_eq!(answer.location(), Some("/app/store"), "next={next}");
    }
}

#[tokio::test]
async fn pages_need_a_session_and_send_the_person_to_sign_in() {
    let app = TestApp::spawn().await;
    let page = Browser::anonymous(&app).get("/app/api-keys?page=2").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), Some("/app/login?next=%2Fapp%2Fapi-keys%3Fpage%3D2"));
    let bogus = Browser::anonymous(&app).with_cookie("prom_session=prom_sess_nonsense").get("/app/store").await;
    assert_eq!(bogus.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn every_page_carries_a_strict_policy_and_is_not_cached() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    for path in ["/app/login", "/app/store", "/app/no-such-page"] {
        let page = Browser::of(&app, &owner).get(path).await;
        let csp = page.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(page.headers.get("x-frame-options").map(|v| v.to_str().unwrap_or_default()), Some("DENY"));
        assert_eq!(page.headers.get("cache-control").map(|v| v.to_str().unwrap_or_default()), Some("no-store"));
        assert!(!page.html.contains("<script>"), "{path}: no inline script");
    }
    let missing = Browser::of(&app, &owner).get("/app/no-such-page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn signing_out_ends_the_session_everywhere() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let browser = Browser::of(&app, &owner);
    let out = browser.post("/app/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), Some("/app/login?notice=signed_out"));
    let cleared = out.headers.get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(browser.get("/app/store").await.status, StatusCode::SEE_OTHER, "the cookie no longer works");
    let (status, _) = owner.get("/v1/keys").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "nor the same session on the API");
    let other = app.with_user("acme", "ada@acme.example", Role::Admin).await;
    let audit = other.audit("?action=user.logout").await;
    assert_eq!(actions(&audit), ["user.logout"]);
}

#[tokio::test]
async fn a_form_without_the_csrf_token_or_from_another_site_is_refused() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let browser = Browser::of(&app, &owner);
    let missing = browser.post_raw("/app/logout", &[]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(missing.html.contains("This form has expired"), "{}", missing.html);
    let wrong = browser.post_raw("/app/logout", &[("csrf", &"0".repeat(64))]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let csrf = browser.csrf().await;
    let cross = browser.post_with("/app/logout", &[("csrf", &csrf)], &[("origin", "https://evil.example")]).await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let fetch_site = browser.post_with("/app/logout", &[("csrf", &csrf)], &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(fetch_site.status, StatusCode::FORBIDDEN);
    assert_eq!(browser.get("/app/store").await.status, StatusCode::OK, "still signed in: nothing happened");
    // Another person's token does not fit this session.
    let other = app.with_user("acme", "ada@acme.example", Role::Admin).await;
    let theirs = Browser::of(&app, &other).csrf().await;
    assert_ne!(theirs, csrf);
    assert_eq!(browser.post_raw("/app/logout", &[("csrf", &theirs)]).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_idle_session_ends() {
    let app = TestApp::spawn_with(|config| config.session_idle_secs = 1).await;
    let owner = app.with_owner("acme").await;
    let browser = Browser::of(&app, &owner);
    assert_eq!(browser.get("/app/store").await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let page = browser.get("/app/store").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "idle past the timeout");
}

#[tokio::test]
async fn a_person_in_two_tenants_switches_between_them() {
    let app = TestApp::spawn().await;
    let ada = app.with_user("acme", "ada@example.com", Role::Owner).await;
    app.provision("globex", "ada@example.com", Role::Member).await;
    let browser = Browser::of(&app, &ada);
    let page = browser.get("/app/store").await;
    assert!(page.html.contains("id=\"tenant-switch\""), "a switcher for two tenants");
    let switched = browser.post("/app/switch", &[("tenant", "globex")]).await;
    assert_eq!(switched.status, StatusCode::SEE_OTHER, "{}", switched.html);
    let cookie = session_cookie(&switched);
    let now = Browser::anonymous(&app).with_cookie(&cookie).get("/app/store").await;
    assert!(now.html.contains("<option value=\"globex\" selected>"), "{}", now.html);
    assert_eq!(browser.get("/app/store").await.status, StatusCode::SEE_OTHER, "the old session ended");
    // Not a member: refused.
    let again = Browser::anonymous(&app).with_cookie(&cookie);
    let refused = again.post("/app/switch", &[("tenant", "initech")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_setup_link_creates_the_first_owner_once() {
    let app = TestApp::spawn().await;
    let token = app.state.setup_link.token().expect("no user yet: a setup link");
    let browser = Browser::anonymous(&app);
    assert_eq!(browser.get("/app/setup?token=wrong").await.status, StatusCode::NOT_FOUND);
    let form = browser.get(&format!("/app/setup?token={token}")).await;
    assert_eq!(form.status, StatusCode::OK);

    let fields = |password: &'static str| {
        vec![
            ("token", token.clone()),
            ("organisation", "Acme <Labs>".to_owned()),
            ("tenant", "acme".to_owned()),
            ("email", "first@acme.example".to_owned()),
            ("password", password.to_owned()),
            ("confirm", "a long enough password".to_owned()),
        ]
    };
    let borrowed = |fields: &[(&'static str, String)]| -> Vec<(&'static str, String)> { fields.to_vec() };
    let mismatch = borrowed(&fields("another long password"));
    let pairs: Vec<(&str, &str)> = mismatch.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let shown = browser.post_raw("/app/setup", &pairs).await;
    assert_eq!(shown.status, StatusCode::BAD_REQUEST);
    assert!(shown.html.contains("the two passwords differ"), "{}", shown.html);
    assert!(shown.html.contains("Acme &#60;Labs&#62;"), "kept and escaped: {}", shown.html);

    let good = borrowed(&fields("a long enough password"));
    let pairs: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = browser.post_raw("/app/setup", &pairs).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    assert_eq!(done.location(), Some("/app/store?notice=welcome"));
    let cookie = session_cookie(&done);
    let page = Browser::anonymous(&app).with_cookie(&cookie).get("/app/store").await;
    assert!(page.html.contains("first@acme.example"), "signed in as the new owner");

    assert!(app.state.setup_link.token().is_none(), "used once");
    let again = browser.post_raw("/app/setup", &pairs).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let signed_in = sign_in_with_form(&app, "first@acme.example", "a long enough password", "/app/store").await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_setup_link_does_nothing_once_someone_exists() {
    let app = TestApp::spawn().await;
    let token = app.state.setup_link.token().expect("a setup link");
    app.with_owner("acme").await;
    let pairs = [
        ("token", token.as_str()),
        ("organisation", "Evil"),
        ("tenant", "evil"),
        ("email", "evil@example.com"),
        ("password", "a long enough password"),
        ("confirm", "a long enough password"),
    ];
    let answer = Browser::anonymous(&app).post_raw("/app/setup", &pairs).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.html);
    assert!(app.state.setup_link.token().is_none());
}

#[tokio::test]
async fn behind_tls_the_cookie_is_host_bound_and_secure() {
    let app = TestApp::spawn_with(|config| config.public_url = Some("https://prometheus.example".into())).await;
    app.provision("acme", "ada@acme.example", Role::Owner).await;
    let answer = sign_in_with_form(&app, "ada@acme.example", PASSWORD, "/app/store").await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.html);
    let set = answer
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("__Host-prom_session="))
        .unwrap_or_else(|| panic!("a __Host- cookie in {:?}", answer.headers))
        .to_owned();
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    assert!(!set.contains("Domain="), "a __Host- cookie names no domain: {set}");
    let cookie = set.split(';').next().expect("name=value");
    let page = Browser::anonymous(&app).with_cookie(cookie).get("/app/store").await;
    assert_eq!(page.status, StatusCode::OK, "the __Host- cookie signs in");
}
