//! Signing in and out of the dashboard, switching tenant, the first start's setup link (which
//! creates the first owner in the browser), and the links that let an invited person set a
//! password.
//!
//! Sign-in is the API's own (`api::session::sign_in`: throttling, the sign-in hashing lane, the
//! audit rows); the page adds the cookie. The sign-in form is protected against login CSRF by a
//! double-submit token in a `SameSite=Strict` cookie of its own.

use std::sync::Mutex;

use askama::Template;
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cookie::{Cookie, SameSite};
use prom_core::access::Role;
use prom_core::audit::Actor;
use prom_core::store::{ProvisionMember, StoreError};
use prom_core::time::Timestamp;
use prom_core::user::{Email, Password, TenantSlug};
use serde::Deserialize;

use super::page::{PageError, render_status};
use super::viewer::{Posted, form_bytes, parse_form, same_site, session_cookie, session_set_cookie};
use crate::api::session::{TenantChoice, open_session, sign_in};
use crate::auth::ClientMeta;
use crate::auth::pool::{Lane, PoolError};
use crate::error::ApiError;
use crate::state::AppState;

/// The sign-in form's double-submit cookie.
const LOGIN_COOKIE: &str = "prom_login_csrf";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/switch", post(switch_tenant))
        .route("/setup", get(setup_page).post(setup))
        .route("/password", get(password_page).post(set_password))
}

/// Percent-encodes a path for the `next` parameter.
pub fn encode_next(next: &str) -> String {
    serde_urlencoded::to_string([("", next)]).map(|s| s.trim_start_matches('=').to_owned()).unwrap_or_default()
}

/// Where to go after signing in: a dashboard path on this site, never elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with("/app") && !path.starts_with("//") && !path.contains('\\') => path.to_owned(),
        _ => "/app/store".to_owned(),
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    crate::fill_random(&mut bytes);
    hex::encode(bytes)
}

fn redirect_with_cookie(to: &str, set_cookie: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    if let Ok(value) = HeaderValue::from_str(set_cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    email: String,
    next: String,
    csrf: String,
    error: Option<String>,
    notice: Option<&'static str>,
}

#[derive(Debug, Default, Deserialize)]
struct LoginQuery {
    next: Option<String>,
    notice: Option<String>,
}

fn login_notice(code: Option<&str>) -> Option<&'static str> {
    match code? {
        "signed_out" => Some("You are signed out."),
        "password_set" => Some("Your password is set. Sign in with it."),
        "expired" => Some("Your session ended. Sign in again."),
        _ => None,
    }
}

fn login_form(status: StatusCode, page: LoginPage) -> Response {
    let cookie = Cookie::build((LOGIN_COOKIE, page.csrf.clone()))
        .path("/app")
        .http_only(true)
        .same_site(SameSite::Strict)
        .build()
        .to_string();
    let mut response = render_status(status, &page);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

async fn login_page(State(state): State<AppState>, headers: HeaderMap, Query(query): Query<LoginQuery>) -> Response {
    let next = safe_next(query.next.as_deref());
    // Already signed in: straight on.
    if let Some(token) = session_cookie(&headers)
        && crate::auth::authenticate_session(&state, &token).await.is_ok()
    {
        return Redirect::to(&next).into_response();
    }
    let page = LoginPage {
        email: String::new(),
        next,
        csrf: random_hex(),
        error: None,
        notice: login_notice(query.notice.as_deref()),
    };
    login_form(StatusCode::OK, page)
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    csrf: String,
}

fn login_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| Cookie::split_parse(text).flatten())
        .find(|cookie| cookie.name() == LOGIN_COOKIE)
        .map(|cookie| cookie.value().to_owned())
}

async fn login(State(state): State<AppState>, meta: ClientMeta, request: Request) -> Result<Response, PageError> {
    let (parts, body) = request.into_parts();
    same_site(&parts.headers)?;
    let form: LoginForm = parse_form(&form_bytes(body).await?)?;
    let expected = login_cookie(&parts.headers).unwrap_or_default();
    let matches = !expected.is_empty()
        && blake3::hash(expected.as_bytes()) == blake3::hash(form.csrf.as_bytes())
        && expected.len() == form.csrf.len();
    if !matches {
        return Err(PageError::Csrf);
    }
    let next = safe_next(form.next.as_deref());
    let email = form.email.trim().to_owned();
    match sign_in(&state, &meta, &email, form.password, TenantChoice::NamedOrFirst(None)).await {
        Ok(signed_in) => {
            let cookie = session_set_cookie(
                &state,
                &parts.headers,
                Some((signed_in.token.expose(), state.config.session_ttl_secs)),
            );
            Ok(redirect_with_cookie(&next, &cookie))
        }
        Err(err) => {
            let message = match &err {
                ApiError::InvalidCredentials => "The e-mail address or the password is wrong.".to_owned(),
                ApiError::Internal(_) => return Err(err.into()),
                other => other.to_string(),
            };
            let page = LoginPage { email, next, csrf: random_hex(), error: Some(message), notice: None };
            Ok(login_form(err.status(), page))
        }
    }
}

#[derive(Debug, Deserialize)]
struct Empty {}

async fn logout(State(state): State<AppState>, posted: Posted<Empty>) -> Result<Response, PageError> {
    let viewer = posted.viewer;
    let ctx = viewer.principal.audit_context(&viewer.meta);
    state.store.revoke_session(&viewer.user().session, Timestamp::now(), &ctx).await?;
    let headers = HeaderMap::new();
    Ok(redirect_with_cookie("/app/login?notice=signed_out", &session_set_cookie(&state, &headers, None)))
}

#[derive(Debug, Deserialize)]
struct SwitchForm {
    tenant: String,
}

/// Opens a session in another of the person's tenants and ends the current one.
async fn switch_tenant(
    State(state): State<AppState>,
    headers: HeaderMap,
    posted: Posted<SwitchForm>,
) -> Result<Response, PageError> {
    let viewer = posted.viewer;
    let session = &viewer.user().session;
    let target = viewer
        .memberships
        .iter()
        .find(|m| m.tenant.slug.as_str() == posted.form.tenant)
        .ok_or_else(|| ApiError::Forbidden(format!("you are not a member of tenant {:?}", posted.form.tenant)))?;
    let (token, _) = open_session(&state, &viewer.meta, &session.user_id, &session.email, &target.tenant.id).await?;
    let ctx = viewer.principal.audit_context(&viewer.meta);
    state.store.revoke_session(session, Timestamp::now(), &ctx).await?;
    let cookie = session_set_cookie(&state, &headers, Some((token.expose(), state.config.session_ttl_secs)));
    Ok(redirect_with_cookie("/app/store", &cookie))
}

/// The first start's one-time setup link: while no user exists, `prom serve` prints
/// `/app/setup?token=…`, and whoever opens it creates the first owner. Used once, it is gone.
#[derive(Default)]
pub struct SetupLink {
    token: Mutex<Option<String>>,
}

impl std::fmt::Debug for SetupLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetupLink(..)")
    }
}

impl SetupLink {
    /// A fresh link (for a deployment with no user yet).
    pub fn fresh() -> Self {
        Self { token: Mutex::new(Some(random_hex())) }
    }

    /// The token to print, while the link is unused.
    pub fn token(&self) -> Option<String> {
        self.token.lock().ok().and_then(|token| token.clone())
    }

    fn matches(&self, presented: &str) -> bool {
        self.token().is_some_and(|token| blake3::hash(token.as_bytes()) == blake3::hash(presented.as_bytes()))
    }

    fn consume(&self) {
        if let Ok(mut token) = self.token.lock() {
            *token = None;
        }
    }
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    token: String,
    email: String,
    organisation: String,
    tenant: String,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

fn setup_gone() -> PageError {
    PageError::NotFound(
        "this setup link is not valid: it was used already, or the server was restarted (a new link is printed \
         at start while no user exists). Sign in at /app/login"
            .into(),
    )
}

async fn setup_page(State(state): State<AppState>, Query(query): Query<TokenQuery>) -> Result<Response, PageError> {
    if !state.setup_link.matches(&query.token) {
        return Err(setup_gone());
    }
    let page = SetupPage {
        token: query.token,
        email: String::new(),
        organisation: String::new(),
        tenant: String::new(),
        error: None,
    };
    Ok(render_status(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize)]
struct SetupForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    organisation: String,
    #[serde(default)]
    tenant: String,
}

async fn hash_password(state: &AppState, password: &str, confirm: &str) -> Result<String, ApiError> {
    if password != confirm {
        return Err(ApiError::InvalidRequest("the two passwords differ; type the same password twice".into()));
    }
    let password = Password::new(password.to_owned()).map_err(|err| ApiError::InvalidRequest(err.to_string()))?;
    let passwords = state.passwords.clone();
    state
        .pool
        .run(Lane::SignIn, move || passwords.hash(&password))
        .await
        .map_err(|err| match err {
            PoolError::Busy => {
                ApiError::RateLimited { message: "the server is busy; retry in a moment".into(), retry_after_secs: 1 }
            }
            PoolError::Crashed(err) => ApiError::internal(err),
        })?
        .map_err(ApiError::internal)
}

async fn setup(State(state): State<AppState>, meta: ClientMeta, request: Request) -> Result<Response, PageError> {
    let (parts, body) = request.into_parts();
    same_site(&parts.headers)?;
    let form: SetupForm = parse_form(&form_bytes(body).await?)?;
    if !state.setup_link.matches(&form.token) {
        return Err(setup_gone());
    }
    let shown = |error: String| SetupPage {
        token: form.token.clone(),
        email: form.email.clone(),
        organisation: form.organisation.clone(),
        tenant: form.tenant.clone(),
        error: Some(error),
    };
    let checked = async {
        let email = Email::parse(form.email.trim()).map_err(|err| ApiError::InvalidRequest(err.to_string()))?;
        let tenant = TenantSlug::parse(form.tenant.trim()).map_err(|err| ApiError::InvalidRequest(err.to_string()))?;
        let organisation = form.organisation.trim();
        if organisation.is_empty() || organisation.chars().count() > 100 {
            return Err(ApiError::InvalidRequest("give your organisation a name of 1 to 100 characters".into()));
        }
        let hash = hash_password(&state, &form.password, &form.confirm).await?;
        Ok((email, tenant, organisation.to_owned(), hash))
    };
    let (email, tenant, organisation, hash) = match checked.await {
        Ok(values) => values,
        Err(ApiError::Internal(cause)) => return Err(ApiError::Internal(cause).into()),
        Err(err) => return Ok(render_status(err.status(), &shown(err.to_string()))),
    };
    let ctx = meta.audit_context(Actor::Anonymous { claimed: Some(email.to_string()) });
    let request = ProvisionMember { email, password_hash: Some(hash), tenant, role: Role::Owner };
    let outcome = match state.store.create_first_owner(request, &organisation, &ctx).await {
        Ok(outcome) => outcome,
        Err(StoreError::Conflict(_)) => {
            state.setup_link.consume();
            return Err(setup_gone());
        }
        Err(err) => return Err(err.into()),
    };
    state.setup_link.consume();
    tracing::info!(user = %outcome.user.id, tenant = %outcome.tenant.slug, "first owner created by the setup link");
    let (token, _) = open_session(&state, &meta, &outcome.user.id, &outcome.user.email, &outcome.tenant.id).await?;
    let cookie = session_set_cookie(&state, &parts.headers, Some((token.expose(), state.config.session_ttl_secs)));
    Ok(redirect_with_cookie("/app/store?notice=welcome", &cookie))
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    token: String,
    error: Option<String>,
}

async fn password_page(Query(query): Query<TokenQuery>) -> Response {
    render_status(StatusCode::OK, &PasswordPage { token: query.token, error: None })
}

#[derive(Debug, Deserialize)]
struct PasswordForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

/// Redeems a password link (an invitation, or a reset an admin made).
async fn set_password(
    State(state): State<AppState>,
    meta: ClientMeta,
    request: Request,
) -> Result<Response, PageError> {
    let (parts, body) = request.into_parts();
    same_site(&parts.headers)?;
    let form: PasswordForm = parse_form(&form_bytes(body).await?)?;
    let hash = match hash_password(&state, &form.password, &form.confirm).await {
        Ok(hash) => hash,
        Err(ApiError::Internal(cause)) => return Err(ApiError::Internal(cause).into()),
        Err(err) => {
            let page = PasswordPage { token: form.token, error: Some(err.to_string()) };
            return Ok(render_status(err.status(), &page));
        }
    };
    let digest = blake3::hash(form.token.trim().as_bytes());
    let ctx = meta.audit_context(Actor::Anonymous { claimed: None });
    match state.store.redeem_password_link(digest.as_bytes(), &hash, Timestamp::now(), &ctx).await {
        Ok(_) => Ok(Redirect::to("/app/login?notice=password_set").into_response()),
        Err(StoreError::NotFound) => Err(PageError::NotFound(
            "this link is not valid: it was used already or it expired. Ask an owner or admin of your tenant for a \
             new one"
                .into(),
        )),
        Err(err) => Err(err.into()),
    }
}

/// Mints a password link for `user`: returns the token to put in `/app/password?token=…` (shown
/// once to the admin who made it) and stores only its digest.
pub async fn mint_password_link(
    state: &AppState,
    user: &prom_core::id::UserId,
    valid_secs: u64,
) -> Result<String, ApiError> {
    let token = random_hex();
    let now = Timestamp::now();
    let link = prom_core::store::NewPasswordLink {
        digest: blake3::hash(token.as_bytes()).as_bytes().to_vec(),
        user_id: user.clone(),
        created_at: now,
        expires_at: now.plus_seconds(valid_secs),
    };
    state.store.create_password_link(link).await?;
    Ok(token)
}
