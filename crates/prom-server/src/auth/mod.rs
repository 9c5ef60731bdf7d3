//! Authentication: one extractor turns a request's credential into a typed [`Principal`], and
//! handlers state what they need of it (`principal.require(Role::Admin)?`). No handler reads
//! credential headers itself.
//!
//! A credential arrives in `x-api-key` or in `Authorization: Bearer …`. API keys
//! (`prom_live_…`/`prom_test_…`) are checked by the [`verifier::KeyVerifier`]; sign-in session
//! tokens (`prom_sess_…`) by a digest lookup; OAuth access tokens (`prom_at_…`) by the same
//! verifier as keys (`verifier/tokens.rs`). Whatever tenant ids a request carries in headers,
//! paths or bodies, the tenant always comes from the credential.

pub mod pool;
pub mod throttle;
pub mod verifier;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use prom_core::access::{Role, Scope};
use prom_core::audit::{Actor, AuditContext};
use prom_core::id::TenantId;
use prom_core::oauth::ACCESS_PREFIX;
use prom_core::session::{SESSION_PREFIX, SessionToken};
use prom_core::store::SessionRecord;
use prom_core::time::Timestamp;

pub use self::verifier::AgentPrincipal;
use crate::error::ApiError;
use crate::state::AppState;

/// The header agents may put their key in.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Longest user agent kept in the audit log.
const MAX_USER_AGENT: usize = 256;

/// A signed-in person acting within one tenant.
#[derive(Clone, Debug)]
pub struct UserPrincipal {
    pub session: SessionRecord,
}

/// Who is making a request.
#[derive(Clone, Debug)]
pub enum Principal {
    /// An agent presenting an API key.
    Agent(Arc<AgentPrincipal>),
    /// A person signed in with a session token.
    User(UserPrincipal),
}

impl Principal {
    /// The tenant every action of this request is confined to.
    pub fn tenant_id(&self) -> &TenantId {
        match self {
            Self::Agent(agent) => &agent.tenant_id,
            Self::User(user) => &user.session.tenant.id,
        }
    }

    /// A signed-in person with at least `role`. API keys never manage anything.
    pub fn require(&self, role: Role) -> Result<&UserPrincipal, ApiError> {
        match self {
            Self::Agent(_) => Err(ApiError::Forbidden(
                "API keys authenticate agents and cannot manage the account; sign in (`prom login` or \
                 POST /v1/auth/login) and use the session token"
                    .into(),
            )),
            Self::User(user) if user.session.role.includes(role) => Ok(user),
            Self::User(user) => Err(ApiError::Forbidden(format!(
                "this needs the {role} role or higher in tenant {}; you are {}: ask an owner",
                user.session.tenant.slug, user.session.role,
            ))),
        }
    }

    /// An agent key carrying `scope`.
    pub fn require_scope(&self, scope: Scope) -> Result<&Arc<AgentPrincipal>, ApiError> {
        match self {
            Self::Agent(agent) if agent.scopes.contains(&scope) => Ok(agent),
            Self::Agent(_) => Err(ApiError::Forbidden(format!("this API key lacks the {scope} scope"))),
            Self::User(_) => Err(ApiError::Forbidden(
                "this needs an agent API key (prom_live_… or prom_test_…), not a sign-in session token".into(),
            )),
        }
    }

    pub fn actor(&self) -> Actor {
        match self {
            Self::Agent(agent) => Actor::ApiKey { id: agent.key_id.clone(), display: agent.display.clone() },
            Self::User(user) => Actor::User { id: user.session.user_id.clone(), email: user.session.email.clone() },
        }
    }

    pub fn audit_context(&self, meta: &ClientMeta) -> AuditContext {
        meta.audit_context(self.actor())
    }
}

/// Where a request came from: for throttling and the audit log.
#[derive(Clone, Debug)]
pub struct ClientMeta {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
}

impl ClientMeta {
    pub(crate) fn from_parts(parts: &Parts) -> Self {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
        Self { ip, user_agent }
    }

    pub fn audit_context(&self, actor: Actor) -> AuditContext {
        AuditContext { actor, ip: Some(self.ip.to_string()), user_agent: self.user_agent.clone() }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts))
    }
}

/// The credential a request presents, before it is checked.
fn presented_credential(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let unreadable =
        || ApiError::TokenInvalid("the credential header contains bytes that are not text; copy the key again".into());
    let from_api_key = match headers.get(API_KEY_HEADER) {
        Some(value) => Some(value.to_str().map_err(|_| unreadable())?.trim()).filter(|v| !v.is_empty()),
        None => None,
    };
    let from_bearer = match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let value = value.to_str().map_err(|_| unreadable())?.trim();
            if value.eq_ignore_ascii_case("bearer") {
                return Ok(from_api_key);
            }
            match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                    Some(token.trim()).filter(|t| !t.is_empty())
                }
                _ if value.is_empty() => None,
                _ => {
                    return Err(ApiError::TokenInvalid(
                        "the Authorization header must be `Bearer <key>`; or send the key alone in x-api-key".into(),
                    ));
                }
            }
        }
        None => None,
    };
    match (from_api_key, from_bearer) {
        (Some(a), Some(b)) if a != b => Err(ApiError::TokenInvalid(
            "two different credentials were sent (x-api-key and Authorization); send one".into(),
        )),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let raw = presented_credential(&parts.headers)?.ok_or(ApiError::TokenMissing)?;
        if raw.starts_with(SESSION_PREFIX) {
            return authenticate_session(state, raw).await.map(Principal::User);
        }
        let client = ClientMeta::from_parts(parts).ip;
        if raw.starts_with(ACCESS_PREFIX) {
            return state.verifier.verify_token(raw, client).await.map(Principal::Agent);
        }
        state.verifier.verify(raw, client).await.map(Principal::Agent)
    }
}

pub(crate) async fn authenticate_session(state: &AppState, raw: &str) -> Result<UserPrincipal, ApiError> {
    let invalid = || {
        ApiError::TokenInvalid(
            "the session is not valid (signed out, expired or unknown): sign in again with `prom login`".into(),
        )
    };
    let token = SessionToken::parse(raw).ok_or_else(invalid)?;
    let session = state.store.find_session(&token.digest()).await?.ok_or_else(invalid)?;
    if session.revoked_at.is_some() || session.expires_at <= Timestamp::now() {
        return Err(invalid());
    }
    Ok(UserPrincipal { session })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn reads_either_header() {
        assert_eq!(presented_credential(&headers(&[("x-api-key", "k1")])).unwrap(), Some("k1"));
        assert_eq!(presented_credential(&headers(&[("authorization", "Bearer k2")])).unwrap(), Some("k2"));
        assert_eq!(presented_credential(&headers(&[("authorization", "bearer  k3 ")])).unwrap(), Some("k3"));
        assert_eq!(
            presented_credential(&headers(&[("x-api-key", "k"), ("authorization", "Bearer k")])).unwrap(),
            Some("k")
        );
        assert_eq!(presented_credential(&headers(&[])).unwrap(), None);
        assert_eq!(presented_credential(&headers(&[("x-api-key", "  ")])).unwrap(), None);
        assert_eq!(presented_credential(&headers(&[("authorization", "Bearer")])).unwrap(), None);
        assert_eq!(presented_credential(&headers(&[("authorization", "Bearer  ")])).unwrap(), None);
    }

    #[test]
    fn rejects_confusing_credentials() {
        assert!(matches!(
            presented_credential(&headers(&[("authorization", "Basic abc")])),
            Err(ApiError::TokenInvalid(_))
        ));
        assert!(matches!(
            presented_credential(&headers(&[("x-api-key", "a"), ("authorization", "Bearer b")])),
            Err(ApiError::TokenInvalid(_))
        ));
    }
}
