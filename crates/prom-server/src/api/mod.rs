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
        // No body, or `null`: the defaults. Anything else is an object (serde would read a struct
        // from an array too).
        let text = bytes.trim_ascii();
        if text.is_empty() || text == b"null" {
            return Ok(Self(T::default()));
        }
        if text.first() != Some(&b'{') {
            return Err(ApiError::InvalidRequest("the JSON body must be an object".into()));
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
    // The schemas of query parameters' values: the parameters refer to them, and utoipa does not
    // collect them from the parameters.
    components(schemas(usage::GroupBy, audit::ActionName)),
    modifiers(&SecuritySchemes, &CommonResponses),
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

/// The answers any route may give besides its own: every route that takes a credential can
/// answer 401 (none, or a bad one) and 429 (too many unknown credentials from one network), every
/// route with a body 408 (it came too slowly) and 413 (too large), and every route 503 (over the
/// request deadline, or the server cannot serve now).
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let with_body = [item.post.is_some(), item.put.is_some(), item.patch.is_some()];
            let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for (index, operation) in operations.into_iter().enumerate() {
                let Some(operation) = operation else { continue };
                let responses = &mut operation.responses.responses;
                let secured = operation.security.as_ref().is_some_and(|security| !security.is_empty());
                if secured {
                    responses.entry("401".into()).or_insert_with(|| {
                        error("TOKEN_MISSING: no credential; TOKEN_INVALID: a bad, revoked or expired one, or two different ones").into()
                    });
                    responses.entry("429".into()).or_insert_with(|| {
                        error("RATE_LIMITED: too many unknown credentials; wait Retry-After").into()
                    });
                }
                if (1..=3).contains(&index) && with_body[index - 1] {
                    responses
                        .entry("408".into())
                        .or_insert_with(|| error("REQUEST_TIMEOUT: the body came too slowly").into());
                    responses
                        .entry("413".into())
                        .or_insert_with(|| error("PAYLOAD_TOO_LARGE: the body is over 64 KiB").into());
                }
                responses
                    .entry("503".into())
                    .or_insert_with(|| error("UNAVAILABLE: over the request deadline, or busy; retry shortly").into());
            }
        }
    }
}

#[utoipa::path(get, path = "/v1/openapi.json", responses((status = 200, description = "This document")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
