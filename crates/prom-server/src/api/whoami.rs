//! `GET /v1/whoami`: which key is this, and whose? How an operator checks that an agent's key
//! is the one taking traffic.

use axum::Json;
use axum::extract::State;
use prom_core::access::Scope;

use super::views::{TenantView, WhoamiView, scopes};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/whoami", security(("api_key" = [])), responses(
    (status = 200, body = WhoamiView),
    (status = 401, body = ErrorBody, description = "TOKEN_MISSING or TOKEN_INVALID (the message says why)"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: a session token was sent instead of an API key"),
    (status = 429, body = ErrorBody, description = "RATE_LIMITED: too many unknown keys from this address"),
))]
pub async fn whoami(State(state): State<AppState>, principal: Principal) -> Result<Json<WhoamiView>, ApiError> {
    let agent = principal.require_scope(Scope::AgentConnect)?;
    let tenant = state
        .store
        .get_tenant(&agent.tenant_id)
        .await?
        .ok_or_else(|| ApiError::TokenInvalid("this key's account no longer exists".into()))?;
    Ok(Json(WhoamiView {
        tenant: TenantView { id: tenant.id.to_string(), slug: tenant.slug.to_string(), name: tenant.name },
        key_id: agent.key_id.to_string(),
        label: agent.label.to_string(),
        display: agent.display.clone(),
        environment: agent.environment.to_string(),
        scopes: scopes(&agent.scopes),
    }))
}
