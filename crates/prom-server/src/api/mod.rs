//! The management API under `/v1`: sign-in, API keys, services, allowances, usage, the audit log,
//! `whoami`, and the OpenAPI document that describes them (generated from the handlers'
//! annotations).

pub mod allowance;
pub mod audit;
pub mod health;
pub mod keys;
pub mod services;
pub mod session;
pub mod usage;
pub mod views;
pub mod whoami;

use axum::extract::DefaultBodyLimit;
use axum::extract::FromRequest;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::error::ApiError;
use crate::state::AppState;

/// Largest accepted request body on `/v1`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body whose rejections are [`ApiError`]s (`INVALID_REQUEST`, `PAYLOAD_TOO_LARGE`).
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// A JSON body that may be absent altogether (an empty body means `T::default()`).
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(|rejection| {
            let timed_out = crate::listen::body_error(&rejection, ApiError::InvalidRequest(String::new()));
            if matches!(timed_out, ApiError::RequestTimeout(_)) {
                return timed_out;
            }
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge("the request body is too large (at most 64 KiB)".into())
            } else {
                ApiError::InvalidRequest(rejection.body_text())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|err| ApiError::InvalidRequest(format!("the JSON body is not valid: {err}")))
    }
}

/// Query parameters whose rejections are [`ApiError`]s.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(session::login))
        .route("/auth/logout", post(session::logout))
        .route("/keys", post(keys::create_key).get(keys::list_keys))
        .route("/keys/{id}", delete(keys::delete_key).get(keys::get_key))
        .route("/keys/{id}/revoke", post(keys::revoke_key))
        .route("/keys/{id}/rotate", post(keys::rotate_key))
        .route("/services", post(services::create_service).get(services::list_services))
        .route(
            "/services/{slug}",
            get(services::get_service).patch(services::update_service).delete(services::delete_service),
        )
        .route("/services/{slug}/allowance", get(allowance::get_allowance).put(allowance::set_allowance))
        .route("/usage", get(usage::get_usage))
        .route("/audit", get(audit::list_audit))
        .route("/whoami", get(whoami::whoami))
        .route("/openapi.json", get(openapi))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; the API is described at /v1/openapi.json".into())
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("this endpoint does not accept that method; see /v1/openapi.json".into())
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Prometheus management API", description = "API keys, sign-in, services and the audit log of a Prometheus gateway."),
    paths(
        session::login,
        session::logout,
        keys::create_key,
        keys::list_keys,
        keys::get_key,
        keys::revoke_key,
        keys::delete_key,
        keys::rotate_key,
        services::create_service,
        services::list_services,
        services::get_service,
        services::update_service,
        services::delete_service,
        allowance::get_allowance,
        allowance::set_allowance,
        usage::get_usage,
        audit::list_audit,
        whoami::whoami,
        health::healthz,
    ),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("prom_sess_…").build(),
            ),
        );
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))));
    }
}

#[utoipa::path(get, path = "/v1/openapi.json", responses((status = 200, description = "This document")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
