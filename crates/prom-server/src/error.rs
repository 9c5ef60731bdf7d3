//! The one error type at the HTTP edge. Every failure a user can hit becomes
//! `{"error":{"code":"…","message":"…"}}` with a stable code and a message that says what to do.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prom_core::store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// Stable error codes. Clients match on these; never rename one.
pub mod code {
    pub const TOKEN_MISSING: &str = "TOKEN_MISSING";
    pub const TOKEN_INVALID: &str = "TOKEN_INVALID";
    pub const INVALID_CREDENTIALS: &str = "INVALID_CREDENTIALS";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const METHOD_NOT_ALLOWED: &str = "METHOD_NOT_ALLOWED";
    pub const CONFLICT: &str = "CONFLICT";
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    pub const UPSTREAM_UNAVAILABLE: &str = "UPSTREAM_UNAVAILABLE";
    pub const UPSTREAM_TIMEOUT: &str = "UPSTREAM_TIMEOUT";
    pub const REQUEST_TIMEOUT: &str = "REQUEST_TIMEOUT";
    pub const INTERNAL: &str = "INTERNAL";
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no API key was sent: put the key in the x-api-key header or in `Authorization: Bearer <key>`")]
    TokenMissing,
    #[error("{0}")]
    TokenInvalid(String),
    #[error("email or password is wrong")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request's body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// The service behind the gateway failed or refused the gateway.
    #[error("{0}")]
    UpstreamUnavailable(String),
    #[error("{0}")]
    UpstreamTimeout(String),
    /// A failure that is ours, not the caller's. The cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code such as `TOKEN_INVALID`.
    pub code: &'static str,
    /// What went wrong and what to do about it.
    pub message: String,
}

impl ApiError {
    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(err))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::TokenMissing | Self::TokenInvalid(_) | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::TokenMissing => code::TOKEN_MISSING,
            Self::TokenInvalid(_) => code::TOKEN_INVALID,
            Self::InvalidCredentials => code::INVALID_CREDENTIALS,
            Self::Forbidden(_) => code::FORBIDDEN,
            Self::NotFound(_) => code::NOT_FOUND,
            Self::MethodNotAllowed(_) => code::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => code::CONFLICT,
            Self::InvalidRequest(_) => code::INVALID_REQUEST,
            Self::PayloadTooLarge(_) => code::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout(_) => code::REQUEST_TIMEOUT,
            Self::RateLimited { .. } => code::RATE_LIMITED,
            Self::Unavailable(_) => code::UNAVAILABLE,
            Self::UpstreamUnavailable(_) => code::UPSTREAM_UNAVAILABLE,
            Self::UpstreamTimeout(_) => code::UPSTREAM_TIMEOUT,
            Self::Internal(_) => code::INTERNAL,
        }
    }

    pub fn body(&self) -> ErrorBody {
        let message = match self {
            Self::Internal(_) => "something went wrong on the server; the error was logged, try again".to_owned(),
            other => other.to_string(),
        };
        ErrorBody { error: ErrorDetail { code: self.code(), message } }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(error = %cause, source = ?cause.source(), "internal error");
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        match &self {
            Self::TokenMissing | Self::TokenInvalid(_) | Self::InvalidCredentials => {
                // An API key was expected. This challenge deliberately does not name an
                // authorization server: a wrong key must not send a browser to a login page.
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"prometheus\""));
            }
            Self::RateLimited { retry_after_secs, .. } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => Self::NotFound("not found".into()),
            StoreError::Conflict(message) => Self::Conflict(message),
            other => Self::internal(other),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::PayloadTooLarge("the request body is too large (at most 64 KiB)".into());
        }
        let timed_out = crate::listen::body_error(&rejection, Self::InvalidRequest(String::new()));
        if matches!(timed_out, Self::RequestTimeout(_)) {
            return timed_out;
        }
        match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                Self::InvalidRequest("send the body as JSON with `Content-Type: application/json`".into())
            }
            other => Self::InvalidRequest(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::InvalidRequest(rejection.body_text())
    }
}
