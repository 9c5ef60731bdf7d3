//! OAuth access tokens on the verifier's path: one more kind of credential, with the same cache,
//! the same revalidation and the same instant revocation as API keys. A token's principal is its
//! grant's credential row (so `forget_key` of a revoked grant drops every token of it) bound to
//! the grant's one service and spend cap.
//!
//! Tokens carry 256 random bits, so a cold lookup is a SHA-256 and an index read — no Argon2 —
//! but it is still throttled per client like an unknown key, so a flood of made-up tokens costs
//! the database no more than a flood of made-up keys.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use prom_core::access::Scope;
use prom_core::oauth::{ACCESS_PREFIX, OAuthSecret, TokenDigest, TokenKind, TokenRecord};
use prom_core::time::Timestamp;
use prom_core::user::Label;

use super::{AgentPrincipal, CacheKey, GrantBinding, KeyVerifier, Source};
use crate::error::ApiError;

impl KeyVerifier {
    /// Verifies a presented OAuth access token (`prom_at_…`) for a request from `client`.
    pub async fn verify_token(&self, raw: &str, client: IpAddr) -> Result<Arc<AgentPrincipal>, ApiError> {
        let token = OAuthSecret::parse(ACCESS_PREFIX, raw).ok_or_else(|| {
            ApiError::TokenInvalid(
                "this access token is malformed (prom_at_ and 64 hex characters); get a new one from your MCP client"
                    .into(),
            )
        })?;
        let cache_key = self.cache_key(token.expose());
        let now = Timestamp::now();
        if let Some(principal) = self.check_cached(&cache_key, now).await? {
            return Ok(principal);
        }
        if let Some(message) = self
            .refused
            .get(&cache_key)
            .filter(|refusal| refusal.at.elapsed() < super::NEGATIVE_TTL)
            .map(|refusal| refusal.message.clone())
        {
            return Err(ApiError::TokenInvalid(message.to_string()));
        }
        if let Err(retry_after_secs) = self.throttle.take(client) {
            self.stats.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::RateLimited {
                message:
                    "too many requests with unknown access tokens from this address; sign in again and retry later"
                        .into(),
                retry_after_secs,
            });
        }
        self.stats.cold_lookups.fetch_add(1, Ordering::Relaxed);
        let digest = token.digest();
        let read_started = Instant::now();
        let Some(record) = self.store.find_token(&digest).await? else {
            self.stats.unknown.fetch_add(1, Ordering::Relaxed);
            return Err(self.refuse(cache_key, unknown_token()));
        };
        let principal = self
            .admit_token(&record, digest, cache_key, now, read_started)
            .map_err(|err| self.refuse(cache_key, err))?;
        self.throttle.refund(client);
        Ok(principal)
    }

    /// Reads a cached token's state again (its grant may have been revoked on another node).
    pub(super) async fn revalidate_token(
        &self,
        digest: TokenDigest,
        cache_key: &CacheKey,
        now: Timestamp,
        read_started: Instant,
    ) -> Result<Option<Arc<AgentPrincipal>>, ApiError> {
        match self.store.find_token(&digest).await? {
            Some(record) => {
                let admitted = self.admit_token(&record, digest, *cache_key, now, read_started);
                if admitted.is_err() {
                    self.cache.remove(cache_key);
                }
                admitted.map(Some).map_err(|err| self.refuse(*cache_key, err))
            }
            None => {
                self.cache.remove(cache_key);
                Err(self.refuse(*cache_key, unknown_token()))
            }
        }
    }

    fn admit_token(
        &self,
        record: &TokenRecord,
        digest: TokenDigest,
        cache_key: CacheKey,
        now: Timestamp,
        read_started: Instant,
    ) -> Result<Arc<AgentPrincipal>, ApiError> {
        let grant = &record.grant;
        if record.kind != TokenKind::Access {
            return Err(ApiError::TokenInvalid(
                "this is a refresh token: exchange it at /oauth/token and send the access token it returns".into(),
            ));
        }
        if let Some(at) = grant.revoked_at {
            return Err(ApiError::TokenInvalid(format!(
                "the permission given to {} was revoked at {at}; connect the agent again to get a new one",
                grant.client_name
            )));
        }
        if record.revoked_at.is_some() {
            return Err(ApiError::TokenInvalid(
                "this access token was revoked; refresh it or connect the agent again".into(),
            ));
        }
        if grant.expires_at <= now {
            return Err(ApiError::TokenInvalid(format!(
                "the permission given to {} expired at {}; connect the agent again",
                grant.client_name, grant.expires_at
            )));
        }
        if record.expires_at <= now {
            return Err(expired_token());
        }
        let label = Label::parse(&grant.client_name).unwrap_or_else(|_| Label::from_trusted("OAuth client".into()));
        let principal = Arc::new(AgentPrincipal {
            key_id: grant.key_id.clone(),
            tenant_id: grant.tenant_id.clone(),
            label,
            environment: self.settings.environment,
            scopes: vec![Scope::AgentConnect],
            display: format!("OAuth: {}", grant.client_name),
            grant: Some(GrantBinding {
                id: grant.id.clone(),
                service: grant.service.clone(),
                spend_cap: grant.spend_cap,
                client_name: grant.client_name.clone(),
            }),
        });
        let expires_at = record.expires_at.min(grant.expires_at);
        self.remember(principal.clone(), Source::Token(digest), Some(expires_at), cache_key, now, read_started);
        Ok(principal)
    }

    /// Drops one access token from the cache and remembers it as refused (RFC 7009 revocation).
    pub fn forget_token(&self, raw: &str) {
        let cache_key = self.cache_key(raw);
        self.cache.remove(&cache_key);
        let _ = self.refuse(
            cache_key,
            ApiError::TokenInvalid("this access token was revoked; refresh it or connect the agent again".into()),
        );
    }
}

fn unknown_token() -> ApiError {
    ApiError::TokenInvalid(
        "this access token is not known to this server (it may have been replaced by a refresh); get a new one \
         from your MCP client"
            .into(),
    )
}

pub(super) fn expired_token() -> ApiError {
    ApiError::TokenInvalid(
        "this access token has expired; refresh it with the refresh token (your MCP client does this)".into(),
    )
}
