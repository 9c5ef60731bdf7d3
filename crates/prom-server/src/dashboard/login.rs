//! Signing in and out of the dashboard, and switching tenant. (The setup link and password
//! links are `setup.rs`.)
//!
//! Sign-in is the API's own (`api::session::sign_in`: throttling, the sign-in hashing lane, the
//! audit rows); the page adds the cookie. The sign-in form is protected against login CSRF by a
//! double-submit token in a `SameSite=Strict` cookie of its own.

use askama::Template;
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cookie::{Cookie, SameSite};
use prom_core::time::Timestamp;
use serde::Deserialize;

use super::page::{PageError, render_status};
use super::viewer::{Posted, form_bytes, parse_form, same_site, session_cookie, session_set_cookie};
use crate::api::session::{TenantChoice, open_session, sign_in};
use crate::auth::ClientMeta;
use crate::error::ApiError;
use crate::state::AppState;

/// The sign-in form's double-submit cookie.
const LOGIN_COOKIE: &str = "prom_login_csrf";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/switch", post(switch_tenant))
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

pub(super) fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    crate::fill_random(&mut bytes);
    hex::encode(bytes)
}

pub(super) fn redirect_with_cookie(to: &str, set_cookie: &str) -> Response {
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
