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
    let email = Email::parse(&request.email).map_err(|err| ApiError::InvalidRequest(err.to_string()))?;
    if let Err(retry_after_secs) = state.login_throttle.take(meta.ip) {
        return Err(ApiError::RateLimited {
            message: "too many failed sign-ins from this address; wait before trying again".into(),
            retry_after_secs,
        });
    }
    let user = state.store.find_user_by_email(&email).await?;
    let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
    let passwords = state.passwords.clone();
    let password = Password::presented(request.password);
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
    let membership = choose_tenant(&memberships, request.tenant.as_deref())?;

    let token = SessionToken::mint();
    let now = Timestamp::now();
    let session = NewSession {
        id: SessionId::new(),
        digest: token.digest(),
        user_id: user.id.clone(),
        tenant_id: membership.tenant.id.clone(),
        created_at: now,
        expires_at: now.plus_seconds(state.config.session_ttl_secs),
    };
    let expires_at = session.expires_at;
    let ctx = meta.audit_context(Actor::User { id: user.id.clone(), email: user.email.clone() });
    state.store.create_session(session, &ctx).await?;
    tracing::info!(user = %user.id, tenant = %membership.tenant.slug, "signed in");
    Ok(Json(LoginResponse {
        token: token.expose().to_owned(),
        expires_at: expires_at.to_string(),
        tenant: membership.tenant.slug.to_string(),
        role: membership.role.to_string(),
        email: user.email.to_string(),
    }))
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
