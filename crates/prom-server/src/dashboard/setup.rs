//! The first start's setup link, which creates the first owner in the browser, and the password
//! links that let an invited person (or one an admin reset) set a password. Tokens are random,
//! shown once, and kept only as digests (the setup link's in memory, password links in the store).

use std::sync::Mutex;

use askama::Template;
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use prom_core::access::Role;
use prom_core::audit::Actor;
use prom_core::store::{ProvisionMember, StoreError};
use prom_core::time::Timestamp;
use prom_core::user::{Email, Password, TenantSlug};
use serde::Deserialize;

use super::login::{random_hex, redirect_with_cookie};
use super::page::{PageError, render_status};
use super::viewer::{form_bytes, parse_form, same_site, session_set_cookie};
use crate::api::session::open_session;
use crate::auth::ClientMeta;
use crate::auth::pool::{Lane, PoolError};
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/setup", get(setup_page).post(setup)).route("/password", get(password_page).post(set_password))
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
