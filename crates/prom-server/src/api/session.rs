//! Sign-in and sign-out for the management API and the CLI.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use prom_core::audit::Actor;
use prom_core::id::SessionId;
use prom_core::session::SessionToken;
use prom_core::store::{Membership, NewSession};
use prom_core::time::Timestamp;
use prom_core::user::{Email, Password};

use super::ApiJson;
use super::views::{LoginRequest, LoginResponse};
use crate::auth::pool::{Lane, PoolError};
use crate::auth::{ClientMeta, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Signs in with e-mail and password and returns a session token.
#[utoipa::path(post, path = "/v1/auth/login", request_body = LoginRequest, responses(
    (status = 200, body = LoginResponse, description = "Signed in"),
    (status = 400, body = ErrorBody, description = "INVALID_REQUEST: malformed body, or several tenants and none chosen"),
    (status = 401, body = ErrorBody, description = "INVALID_CREDENTIALS"),
    (status = 429, body = ErrorBody, description = "RATE_LIMITED: too many failed sign-ins from this address"),
))]
pub async fn login(
    State(state): State<AppState>,
    meta: ClientMeta,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let signed_in =
        sign_in(&state, &meta, &request.email, request.password, TenantChoice::Named(request.tenant)).await?;
    Ok(Json(LoginResponse {
        token: signed_in.token.expose().to_owned(),
        expires_at: signed_in.expires_at.to_string(),
        tenant: signed_in.membership.tenant.slug.to_string(),
        role: signed_in.membership.role.to_string(),
        email: signed_in.email.to_string(),
    }))
}

/// Which tenant a sign-in acts in.
#[derive(Debug)]
pub enum TenantChoice {
    /// The one named (required when the user belongs to several).
    Named(Option<String>),
    /// The one named, else the first of the user's tenants (the dashboard, which has a switcher).
    NamedOrFirst(Option<String>),
}

/// A new session.
#[derive(Debug)]
pub struct SignedIn {
    pub token: SessionToken,
    pub expires_at: Timestamp,
    pub membership: Membership,
    pub email: prom_core::user::Email,
}

/// Checks e-mail and password (throttled per address, hashed on the sign-in lane, failures
/// recorded) and opens a session in the chosen tenant: the one sign-in of the API and the
/// dashboard.
pub async fn sign_in(
    state: &AppState,
    meta: &ClientMeta,
    email: &str,
    password: String,
    choice: TenantChoice,
) -> Result<SignedIn, ApiError> {
    let email = Email::parse(email).map_err(|err| ApiError::InvalidRequest(err.to_string()))?;
    if let Err(retry_after_secs) = state.login_throttle.take(meta.ip) {
        return Err(ApiError::RateLimited {
            message: "too many failed sign-ins from this address; wait before trying again".into(),
            retry_after_secs,
        });
    }
    let user = state.store.find_user_by_email(&email).await?;
    let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
    let passwords = state.passwords.clone();
    let password = Password::presented(password);
    let matches = state
        .pool
        .run(Lane::SignIn, move || passwords.verify(&password, stored_hash.as_deref()))
        .await
        .map_err(|err| match err {
            PoolError::Busy => {
                ApiError::RateLimited { message: "the server is busy; retry in a moment".into(), retry_after_secs: 1 }
            }
            PoolError::Crashed(err) => ApiError::internal(err),
        })?;
    let memberships = match &user {
        Some(user) => state.store.memberships(&user.id).await?,
        None => Vec::new(),
    };
    let (Some(user), true) = (user, matches) else {
        // The failure is recorded in the tenant of the account whose password was tried (when
        // the account exists and has exactly one), so its owners can see attempts on it.
        let tenant_id = match memberships.as_slice() {
            [only] => Some(only.tenant.id.clone()),
            _ => None,
        };
        // One row per account per minute, with the number of attempts (`usage.rs`).
        state.usage.record_failed_sign_in(crate::usage::FailedSignIn {
            tenant_id,
            email: email.to_string(),
            ip: meta.ip.to_string(),
            user_agent: meta.user_agent.clone(),
            at: Timestamp::now(),
        });
        return Err(ApiError::InvalidCredentials);
    };
    state.login_throttle.refund(meta.ip);
    let membership = match choice {
        TenantChoice::Named(wanted) => choose_tenant(&memberships, wanted.as_deref())?,
        TenantChoice::NamedOrFirst(None) => match memberships.first() {
            Some(first) => first,
            None => choose_tenant(&memberships, None)?,
        },
        TenantChoice::NamedOrFirst(Some(wanted)) => choose_tenant(&memberships, Some(&wanted))?,
    };
    let (token, expires_at) = open_session(state, meta, &user.id, &user.email, &membership.tenant.id).await?;
    tracing::info!(user = %user.id, tenant = %membership.tenant.slug, "signed in");
    Ok(SignedIn { token, expires_at, membership: membership.clone(), email: user.email })
}

/// Opens a session for a user whose identity is already established (a sign-in, a tenant switch,
/// the first owner's setup), with its `user.login` audit row.
pub async fn open_session(
    state: &AppState,
    meta: &ClientMeta,
    user_id: &prom_core::id::UserId,
    email: &prom_core::user::Email,
    tenant_id: &prom_core::id::TenantId,
) -> Result<(SessionToken, Timestamp), ApiError> {
    let token = SessionToken::mint();
    let now = Timestamp::now();
    let session = NewSession {
        id: SessionId::new(),
        digest: token.digest(),
        user_id: user_id.clone(),
        tenant_id: tenant_id.clone(),
        created_at: now,
        expires_at: now.plus_seconds(state.config.session_ttl_secs),
    };
    let expires_at = session.expires_at;
    let ctx = meta.audit_context(Actor::User { id: user_id.clone(), email: email.clone() });
    state.store.create_session(session, &ctx).await?;
    Ok((token, expires_at))
}

fn choose_tenant<'a>(memberships: &'a [Membership], wanted: Option<&str>) -> Result<&'a Membership, ApiError> {
    match (memberships, wanted) {
        ([], _) => {
            Err(ApiError::Forbidden("this account is not a member of any tenant; ask an owner to add you".into()))
        }
        (all, Some(slug)) => all.iter().find(|m| m.tenant.slug.as_str() == slug).ok_or_else(|| {
            ApiError::Forbidden(format!("you are not a member of tenant {slug:?}; your tenants: {}", slugs(all)))
        }),
        ([only], None) => Ok(only),
        (all, None) => Err(ApiError::InvalidRequest(format!(
            "you belong to several tenants ({}); say which with \"tenant\"",
            slugs(all)
        ))),
    }
}

fn slugs(memberships: &[Membership]) -> String {
    memberships.iter().map(|m| m.tenant.slug.as_str()).collect::<Vec<_>>().join(", ")
}

/// Ends the current session.
#[utoipa::path(post, path = "/v1/auth/logout", security(("session" = [])), responses(
    (status = 204, description = "Signed out"),
    (status = 401, body = ErrorBody, description = "TOKEN_MISSING or TOKEN_INVALID"),
))]
pub async fn logout(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
) -> Result<StatusCode, ApiError> {
    let Principal::User(user) = &principal else {
        return Err(ApiError::Forbidden("only a sign-in session can sign out; API keys are revoked instead".into()));
    };
    state.store.revoke_session(&user.session, Timestamp::now(), &principal.audit_context(&meta)).await?;
    Ok(StatusCode::NO_CONTENT)
}
