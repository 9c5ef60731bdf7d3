//! The OAuth 2.1 authorization server of the MCP authorization spec (docs/OAUTH.md): discovery
//! metadata, clients (registered, metadata documents, configured), the authorization endpoint and
//! its consent page, and the token and revocation endpoints.
//!
//! What a grant allows is decided by a person on the consent page (`consent.rs`, a dashboard
//! page): one service, up to a spend cap, until an expiry. Tokens are opaque and stored only as
//! digests; the gateway verifies access tokens beside API keys (`auth/verifier/tokens.rs`) and
//! holds every paid call against the grant's cap and the tenant's allowance at once.

mod clients;
pub mod consent;
mod metadata;
mod token;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use self::clients::ClientCache;
pub use crate::origin::base_url;
use crate::state::AppState;

/// The one scope: what an API key's `agent:connect` allows, for one service.
pub const SCOPE: &str = "agent:connect";
/// How long an authorization code may wait for its exchange.
const CODE_TTL: Duration = Duration::from_secs(60);

/// The `[oauth]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthConfig {
    /// How long an access token works (seconds); its refresh token lasts as long as the grant.
    pub access_token_secs: u64,
    /// How long a dynamically registered client that no grant used is kept (seconds).
    pub unused_registration_secs: u64,
    /// Clients the operator vouches for.
    pub clients: Vec<ConfiguredClient>,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self { access_token_secs: 3600, unused_registration_secs: 24 * 3600, clients: Vec::new() }
    }
}

/// A `[[oauth.clients]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredClient {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
}

/// The routes outside `/app`: discovery documents and the protocol endpoints.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(metadata::routes())
        .route("/oauth/register", post(clients::register))
        .route("/oauth/authorize", get(consent::authorize))
        .route("/oauth/token", post(token::token))
        .route("/oauth/revoke", post(token::revoke))
}

/// Reads urlencoded parameters (a query or a form body), each at most once: a repeated one is
/// refused rather than guessed at (RFC 6749 §3.1, §3.2).
fn parse_once<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, String> {
    let garbled = || "the parameters are garbled: send them urlencoded".to_owned();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(raw).map_err(|_| garbled())?;
    let mut seen = std::collections::HashSet::new();
    if let Some((name, _)) = pairs.iter().find(|(name, _)| !seen.insert(name.as_str())) {
        return Err(format!("the parameter {name:?} was given more than once"));
    }
    serde_urlencoded::from_bytes(raw).map_err(|_| garbled())
}

/// A service's canonical MCP URL: the resource its tokens are bound to.
pub fn resource_of(base: &str, slug: &str) -> String {
    format!("{base}/mcp/{slug}")
}

/// The 401 for an MCP request that carried no credential at all: it names the protected
/// resource metadata, so an interactive client can find the authorization server. (A request
/// with a bad key or token gets the plain challenge instead: see `error.rs`.)
pub fn challenge(state: &AppState, headers: &HeaderMap, slug: &str) -> Response {
    let base = base_url(state, headers);
    let metadata = format!("{base}/.well-known/oauth-protected-resource/mcp/{slug}");
    let err = crate::error::ApiError::TokenMissing;
    let mut response = (err.status(), axum::Json(err.body())).into_response();
    let value = format!("Bearer resource_metadata=\"{metadata}\", scope=\"{SCOPE}\"");
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// An RFC 6749 error answer (`error`, `error_description`), never cached.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        let status = if error == "invalid_client" { StatusCode::UNAUTHORIZED } else { StatusCode::BAD_REQUEST };
        Self { status, error, description: description.into() }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", description)
    }
}

impl From<prom_core::store::StoreError> for OAuthError {
    fn from(err: prom_core::store::StoreError) -> Self {
        tracing::error!(error = %err, "oauth store error");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            description: "the server could not complete this; try again".into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        no_store((self.status, axum::Json(body)).into_response())
    }
}

/// Marks a response with tokens or errors as never to be cached (RFC 6749 §5.1).
pub fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Deletes unused registrations and expired codes and tokens, every few minutes.
pub fn spawn_housekeeping(state: &AppState) -> tokio::task::JoinHandle<()> {
    let store = state.store.clone();
    let unused = state.config.oauth.unused_registration_secs;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tick.tick().await;
            let now = prom_core::time::Timestamp::now();
            if let Err(err) = store.purge_unused_clients(now.minus_seconds(unused)).await {
                tracing::warn!(error = %err, "cannot purge unused OAuth registrations");
            }
            if let Err(err) = store.purge_expired_tokens(now).await {
                tracing::warn!(error = %err, "cannot purge expired OAuth tokens");
            }
        }
    })
}
