//! The dashboard: server-rendered pages under `/app` for the people who fund agents and publish
//! tools. Every page works without JavaScript; `static/app.js` only adds a copy button and
//! confirmation dialogs. Nothing is loaded from another origin.
//!
//! Pages never duplicate the API's rules: a form handler calls the same `/v1` handler function
//! with the signed-in person's [`Principal`](crate::auth::Principal), so roles, tenant isolation,
//! audit rows and error messages are the API's own; the page only renders the outcome.
//!
//! Safety: a strict Content-Security-Policy (scripts and styles from this origin only, no inline
//! script), framing refused, `no-store` caching, templates escaped by askama, sessions in
//! `HttpOnly` `SameSite=Lax` cookies and a CSRF token on every state-changing form
//! ([`viewer::Posted`]).

pub mod apps;
mod assets;
pub mod audit;
mod chart;
pub mod keys;
mod login;
pub mod members;
mod page;
pub mod publish;
mod setup;
pub mod store;
pub mod usage;
pub mod viewer;
pub mod wallet;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

pub use self::page::{Chrome, Nav, PageError, render, render_status};
pub use self::setup::SetupLink;
pub use self::viewer::{Posted, Viewer};
use crate::state::AppState;

/// The pages' routes, mounted at `/app`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/app/store") }))
        .merge(assets::routes())
        .merge(login::routes())
        .merge(setup::routes())
        .merge(keys::routes())
        .merge(wallet::routes())
        .merge(store::routes())
        .merge(publish::routes())
        .merge(usage::routes())
        .merge(audit::routes())
        .merge(members::routes())
        .merge(apps::routes())
        .merge(crate::oauth::consent::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn(security_headers))
}

async fn not_found() -> Response {
    PageError::NotFound("there is no such page; start from the App Store".into()).into_response()
}

/// The policy every page is served with: this origin only, no inline script or style, no
/// framing, no referrer to other sites, and never cached (pages show balances and keys).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    // A page may widen the policy for itself (the consent page's form is redirected to the app).
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        set(headers, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    }
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(headers, HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}
