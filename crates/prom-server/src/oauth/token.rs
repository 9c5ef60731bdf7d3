//! `POST /oauth/token` and `POST /oauth/revoke`.
//!
//! A code is exchanged once, by the client it was issued to, with the redirect URI it was issued
//! for and the PKCE verifier of its challenge; presenting a used code again revokes the grant and
//! everything issued from it (RFC 6749 §4.1.2). Refresh tokens rotate: each is exchanged once,
//! and a used one presented again means two parties hold the family, so the grant is revoked
//! (OAuth 2.1 §4.3.1). Both checks are conditional updates in the store, so concurrent exchanges
//! of one code or refresh token issue tokens at most once.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prom_core::audit::{Actor, AuditContext};
use prom_core::oauth::{
    ACCESS_PREFIX, CODE_PREFIX, GrantRecord, NewToken, OAuthSecret, REFRESH_PREFIX, RevokeReason, TokenDigest,
    TokenKind,
};
use prom_core::time::Timestamp;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{OAuthError, SCOPE, no_store};
use crate::auth::ClientMeta;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
struct TokenRequest {
    #[serde(default)]
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    client_id: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    resource: Option<String>,
    token: Option<String>,
}

fn read_form(body: &[u8]) -> Result<TokenRequest, OAuthError> {
    super::parse_once(body).map_err(OAuthError::invalid_request)
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, OAuthError> {
    value.as_deref().filter(|v| !v.is_empty()).ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
}

/// `POST /oauth/token`.
pub async fn token(State(state): State<AppState>, meta: ClientMeta, body: axum::body::Bytes) -> Response {
    let result = match read_form(&body) {
        Ok(request) => match request.grant_type.as_str() {
            "authorization_code" => exchange_code(&state, &meta, &request).await,
            "refresh_token" => refresh(&state, &meta, &request).await,
            "" => Err(OAuthError::invalid_request("grant_type is required")),
            other => Err(OAuthError::new(
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported; use authorization_code or refresh_token"),
            )),
        },
        Err(err) => Err(err),
    };
    match result {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

/// The agent that holds the grant, as the audit log names it.
fn grant_context(meta: &ClientMeta, grant: &GrantRecord) -> AuditContext {
    meta.audit_context(Actor::ApiKey { id: grant.key_id.clone(), display: format!("OAuth: {}", grant.client_name) })
}

/// Revokes a grant whose code or refresh token came back, and drops its tokens from the cache.
async fn revoke_reused(state: &AppState, meta: &ClientMeta, grant: &GrantRecord) -> OAuthError {
    let ctx = grant_context(meta, grant);
    if let Err(err) = state.store.revoke_grant(&grant.id, Timestamp::now(), RevokeReason::ReuseDetected, &ctx).await {
        return err.into();
    }
    state.verifier.forget_key(&grant.key_id);
    OAuthError::invalid_grant(
        "this was already used once, so it may have been stolen: the permission and every token issued with it \
         were revoked; connect the agent again",
    )
}

fn check_resource(request: &TokenRequest, grant: &GrantRecord) -> Result<(), OAuthError> {
    match request.resource.as_deref() {
        Some(resource) if resource != grant.resource => {
            Err(OAuthError::new("invalid_target", format!("this grant is for {}, not {resource}", grant.resource)))
        }
        _ => Ok(()),
    }
}

fn check_live(grant: &GrantRecord, now: Timestamp) -> Result<(), OAuthError> {
    if grant.revoked_at.is_some() {
        return Err(OAuthError::invalid_grant("this permission was revoked; connect the agent again"));
    }
    if grant.expires_at <= now {
        return Err(OAuthError::invalid_grant("this permission has expired; connect the agent again"));
    }
    Ok(())
}

/// Whether `verifier` is the PKCE S256 verifier of `challenge`.
fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let shaped = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    shaped && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

async fn exchange_code(state: &AppState, meta: &ClientMeta, request: &TokenRequest) -> Result<Response, OAuthError> {
    let raw = required(&request.code, "code")?;
    let client_id = required(&request.client_id, "client_id")?;
    let redirect_uri = required(&request.redirect_uri, "redirect_uri")?;
    let verifier = required(&request.code_verifier, "code_verifier (PKCE)")?;
    let unknown = || OAuthError::invalid_grant("this authorization code is not valid (unknown or expired)");
    let code = OAuthSecret::parse(CODE_PREFIX, raw).ok_or_else(unknown)?;
    let digest = code.digest();
    let record = state.store.find_code(&digest).await?.ok_or_else(unknown)?;
    if record.used_at.is_some() {
        return Err(revoke_reused(state, meta, &record.grant).await);
    }
    let now = Timestamp::now();
    if record.expires_at <= now {
        return Err(OAuthError::invalid_grant("this authorization code has expired (codes last 60 s); start again"));
    }
    if record.client_id != client_id {
        return Err(OAuthError::invalid_grant("this authorization code was issued to another client"));
    }
    if record.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant("redirect_uri is not the one this code was issued for"));
    }
    if !verifier_matches(verifier, &record.code_challenge) {
        return Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge (PKCE S256)"));
    }
    check_resource(request, &record.grant)?;
    check_live(&record.grant, now)?;
    let issued = Issued::mint(state, &record.grant, now);
    let ctx = grant_context(meta, &record.grant);
    if !state.store.redeem_code(&digest, now, &issued.rows, &ctx).await? {
        // Another exchange of the same code won the race: a replay.
        return Err(revoke_reused(state, meta, &record.grant).await);
    }
    Ok(issued.response())
}

async fn refresh(state: &AppState, meta: &ClientMeta, request: &TokenRequest) -> Result<Response, OAuthError> {
    let raw = required(&request.refresh_token, "refresh_token")?;
    let client_id = required(&request.client_id, "client_id")?;
    let unknown = || OAuthError::invalid_grant("this refresh token is not valid (unknown or expired)");
    let token = OAuthSecret::parse(REFRESH_PREFIX, raw).ok_or_else(unknown)?;
    let digest = token.digest();
    let record = state.store.find_token(&digest).await?.ok_or_else(unknown)?;
    if record.kind != TokenKind::Refresh {
        return Err(unknown());
    }
    if record.grant.client_id != client_id {
        return Err(OAuthError::invalid_grant("this refresh token was issued to another client"));
    }
    if record.used_at.is_some() {
        return Err(revoke_reused(state, meta, &record.grant).await);
    }
    let now = Timestamp::now();
    check_live(&record.grant, now)?;
    if record.revoked_at.is_some() || record.expires_at <= now {
        return Err(unknown());
    }
    check_resource(request, &record.grant)?;
    let issued = Issued::mint(state, &record.grant, now);
    let ctx = grant_context(meta, &record.grant);
    if !state.store.rotate_refresh(&digest, now, &issued.rows, &ctx).await? {
        return Err(revoke_reused(state, meta, &record.grant).await);
    }
    Ok(issued.response())
}

/// A fresh access and refresh token, and their rows.
struct Issued {
    access: OAuthSecret,
    refresh: OAuthSecret,
    expires_in: u64,
    rows: Vec<NewToken>,
}

impl Issued {
    fn mint(state: &AppState, grant: &GrantRecord, now: Timestamp) -> Self {
        let left_ms = grant.expires_at.as_millis().saturating_sub(now.as_millis()).max(0);
        let left = u64::try_from(left_ms / 1000).unwrap_or(0);
        let expires_in = state.config.oauth.access_token_secs.max(1).min(left.max(1));
        let access = OAuthSecret::mint(ACCESS_PREFIX);
        let refresh = OAuthSecret::mint(REFRESH_PREFIX);
        let row = |secret: &OAuthSecret, kind, expires_at| NewToken {
            digest: secret.digest(),
            grant_id: grant.id.clone(),
            kind,
            created_at: now,
            expires_at,
        };
        let rows = vec![
            row(&access, TokenKind::Access, now.plus_seconds(expires_in)),
            row(&refresh, TokenKind::Refresh, grant.expires_at),
        ];
        Self { access, refresh, expires_in, rows }
    }

    fn response(&self) -> Response {
        let body = json!({
            "access_token": self.access.expose(),
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh.expose(),
            "scope": SCOPE,
        });
        no_store((StatusCode::OK, axum::Json(body)).into_response())
    }
}

/// `POST /oauth/revoke` (RFC 7009): a refresh token revokes its grant, an access token itself.
/// Unknown tokens are answered like known ones.
pub async fn revoke(State(state): State<AppState>, meta: ClientMeta, body: axum::body::Bytes) -> Response {
    let request = match read_form(&body) {
        Ok(request) => request,
        Err(err) => return err.into_response(),
    };
    let Some(raw) = request.token.as_deref().filter(|t| !t.is_empty()) else {
        return OAuthError::invalid_request("token is required").into_response();
    };
    let secret = OAuthSecret::parse(REFRESH_PREFIX, raw).or_else(|| OAuthSecret::parse(ACCESS_PREFIX, raw));
    if let Some(secret) = secret
        && let Err(err) = revoke_one(&state, &meta, &request, raw, &secret.digest()).await
    {
        return err.into_response();
    }
    no_store(StatusCode::OK.into_response())
}

async fn revoke_one(
    state: &AppState,
    meta: &ClientMeta,
    request: &TokenRequest,
    raw: &str,
    digest: &TokenDigest,
) -> Result<(), OAuthError> {
    let Some(record) = state.store.find_token(digest).await? else { return Ok(()) };
    if let Some(client_id) = request.client_id.as_deref()
        && client_id != record.grant.client_id
    {
        return Err(OAuthError::new("invalid_client", "this token was issued to another client"));
    }
    match record.kind {
        TokenKind::Refresh => {
            let ctx = grant_context(meta, &record.grant);
            state.store.revoke_grant(&record.grant.id, Timestamp::now(), RevokeReason::Revoked, &ctx).await?;
            state.verifier.forget_key(&record.grant.key_id);
        }
        TokenKind::Access => {
            state.store.revoke_token(digest, Timestamp::now()).await?;
            state.verifier.forget_token(raw);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_is_base64url_sha256_of_the_verifier() {
        // Challenge computed independently (Python: urlsafe_b64encode(sha256(verifier)) unpadded).
        let verifier = "dBjftJeZ4CVP-mJ0PYbIoKQOhnyeOqX-L0JwT8vuDoE";
        let challenge = "vzRMLkOxn_CnPGpg3UL57VzcfJs0791e7xLk8haG6Is";
        assert!(verifier_matches(verifier, challenge));
        assert!(!verifier_matches(verifier, "vzRMLkOxn_CnPGpg3UL57VzcfJs0791e7xLk8haG6It"));
        assert!(!verifier_matches("short", challenge));
        // plain PKCE: the verifier sent as its own challenge is refused.
        assert!(!verifier_matches(verifier, verifier));
    }
}
