//! Discovery: protected resource metadata (RFC 9728) for each service, and the authorization
//! server's metadata (RFC 8414) at every address MCP clients try — the plain one, OpenID
//! Connect's, and both with the resource's path inserted.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prom_core::service::ServiceSlug;
use serde_json::json;

use super::{SCOPE, base_url, resource_of};
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/oauth-protected-resource", get(gateway_resource))
        .route("/.well-known/oauth-protected-resource/mcp/{slug}", get(service_resource))
        .route("/.well-known/oauth-authorization-server", get(server_metadata))
        .route("/.well-known/oauth-authorization-server/mcp/{slug}", get(server_metadata))
        .route("/.well-known/openid-configuration", get(server_metadata))
        .route("/.well-known/openid-configuration/mcp/{slug}", get(server_metadata))
        .route("/mcp/{slug}/.well-known/openid-configuration", get(server_metadata))
}

/// The metadata of one service's MCP endpoint.
async fn service_resource(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(format!("no service named {slug:?}; list services with GET /v1/services"));
    let parsed = ServiceSlug::parse(&slug).map_err(|_| not_found())?;
    let service = state.services.get(&parsed).await?.ok_or_else(not_found)?;
    let base = base_url(&state, &headers);
    Ok(axum::Json(json!({
        "resource": resource_of(&base, service.slug.as_str()),
        "authorization_servers": [base],
        "scopes_supported": [SCOPE],
        "bearer_methods_supported": ["header"],
        "resource_name": service.name,
    }))
    .into_response())
}

/// The gateway as a whole (clients that strip the path).
async fn gateway_resource(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let base = base_url(&state, &headers);
    axum::Json(json!({
        "resource": base,
        "authorization_servers": [base],
        "scopes_supported": [SCOPE],
        "bearer_methods_supported": ["header"],
    }))
    .into_response()
}

async fn server_metadata(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let base = base_url(&state, &headers);
    axum::Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "registration_endpoint": format!("{base}/oauth/register"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": [SCOPE],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
        "service_documentation": format!("{base}/app"),
    }))
    .into_response()
}
