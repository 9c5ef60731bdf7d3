//! OAuth 2.1 for interactive agents (the MCP authorization spec): clients, grants, codes and
//! tokens, and the store that keeps them.
//!
//! A **grant** is what one person allowed one client to do with one service of their tenant: use
//! it and spend up to a cap until an expiry. Every grant is backed by a credential row of its own
//! in the key table (`kind = 'grant'`, never listed with the API keys and never matching any
//! presented key), so charges, usage, the audit log and instant revocation treat an agent signed
//! in by OAuth exactly like an agent with an API key: its calls are charged to that row.
//!
//! Codes and tokens are 32 random bytes behind a prefix (`prom_ac_`, `prom_at_`, `prom_rt_`),
//! stored as SHA-256 digests: with 256 random bits there is nothing for a slow hash to protect.

use std::fmt;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::audit::AuditContext;
use crate::id::{GrantId, KeyId, TenantId, UserId};
use crate::money::Amount;
use crate::service::ServiceSlug;
use crate::store::StoreResult;
use crate::time::Timestamp;

/// Prefix of authorization codes.
pub const CODE_PREFIX: &str = "prom_ac_";
/// Prefix of access tokens: the gateway tells them from API keys by it.
pub const ACCESS_PREFIX: &str = "prom_at_";
/// Prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "prom_rt_";

/// A cleartext code or token.
pub struct OAuthSecret(SecretString);

/// The stored digest of a code or token.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenDigest(pub [u8; 32]);

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

impl OAuthSecret {
    /// A fresh secret: `prefix` + 64 lowercase hex characters.
    pub fn mint(prefix: &str) -> Self {
        let mut bytes = [0u8; 32];
        crate::os_random(&mut bytes);
        Self(SecretString::from(format!("{prefix}{}", hex::encode(bytes))))
    }

    /// Accepts anything with `prefix` and the right shape; the digest lookup decides.
    pub fn parse(prefix: &str, raw: &str) -> Option<Self> {
        let body = raw.strip_prefix(prefix)?;
        let ok = body.len() == 64 && body.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Self(SecretString::from(raw)))
    }

    pub fn digest(&self) -> TokenDigest {
        TokenDigest(Sha256::digest(self.0.expose_secret().as_bytes()).into())
    }

    /// The cleartext, for the one response that hands it out.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for OAuthSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OAuthSecret(..)")
    }
}

/// Where a client's metadata came from (the consent page says so).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientSource {
    /// Dynamic client registration (RFC 7591): the client said who it is; nobody vouches for it.
    Registered,
    /// A client ID metadata document fetched from the `https` URL that is its id.
    MetadataDocument,
    /// Listed in the server's configuration by its operator.
    Configured,
}

impl ClientSource {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::MetadataDocument => "metadata_document",
            Self::Configured => "configured",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Registered, Self::MetadataDocument, Self::Configured].into_iter().find(|s| s.as_str() == raw)
    }
}

/// A client the authorization server knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthClient {
    /// The `client_id`: a server-made id for registered clients, the document's URL for
    /// metadata documents, the configured id otherwise.
    pub id: String,
    pub name: String,
    /// Exact redirect URIs (a loopback one matches any port, RFC 8252).
    pub redirect_uris: Vec<String>,
    pub client_uri: Option<String>,
    pub source: ClientSource,
    pub created_at: Timestamp,
    /// When a grant was last made for it; a registration never used expires.
    pub last_used_at: Option<Timestamp>,
}

/// A grant about to be made, with the code that hands it to the client.
#[derive(Clone, Debug)]
pub struct NewGrant {
    pub id: GrantId,
    /// The id of the credential row that backs the grant (charges and usage name it).
    pub key_id: KeyId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub client_id: String,
    pub client_name: String,
    pub service: ServiceSlug,
    /// The service's canonical MCP URL (RFC 8707 resource indicator).
    pub resource: String,
    pub scopes: Vec<String>,
    /// The most the client may spend under this grant, over its whole life.
    pub spend_cap: Amount,
    /// When the grant stops working (its tokens and refreshes with it).
    pub expires_at: Timestamp,
    pub created_at: Timestamp,
}

/// A stored grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    pub id: GrantId,
    pub key_id: KeyId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub client_id: String,
    pub client_name: String,
    pub service: ServiceSlug,
    pub resource: String,
    pub scopes: Vec<String>,
    pub spend_cap: Amount,
    pub expires_at: Timestamp,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// When an agent last used it (its credential row's `last_used_at`).
    pub last_used_at: Option<Timestamp>,
}

impl GrantRecord {
    /// Whether tokens of this grant authenticate at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// A grant as the Connected apps page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantView {
    pub grant: GrantRecord,
    pub client_source: Option<ClientSource>,
    /// What its calls were charged (captured or settled).
    pub spent: Amount,
}

/// An authorization code about to be stored.
#[derive(Clone, Debug)]
pub struct NewCode {
    pub digest: TokenDigest,
    pub grant_id: GrantId,
    pub client_id: String,
    pub redirect_uri: String,
    /// The PKCE S256 challenge (base64url, no padding).
    pub code_challenge: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A stored authorization code with its grant.
#[derive(Clone, Debug)]
pub struct CodeRecord {
    pub grant: GrantRecord,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub expires_at: Timestamp,
    /// Set once the code was exchanged.
    pub used_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
        }
    }
}

/// A token about to be stored.
#[derive(Clone, Debug)]
pub struct NewToken {
    pub digest: TokenDigest,
    pub grant_id: GrantId,
    pub kind: TokenKind,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A stored token with its grant.
#[derive(Clone, Debug)]
pub struct TokenRecord {
    pub grant: GrantRecord,
    pub kind: TokenKind,
    pub expires_at: Timestamp,
    /// A refresh token is used once: set when it was exchanged for new tokens.
    pub used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// Why a grant is revoked (the audit log's action).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeReason {
    /// A person revoked it, or its client did at `/oauth/revoke`: `oauth.revoke`.
    Revoked,
    /// A used code or refresh token came back: `oauth.reuse_detected`.
    ReuseDetected,
}

/// Clients, grants, codes and tokens. Every change that revokes or grants something writes its
/// audit row in the same transaction.
#[async_trait]
pub trait OAuthStore: Send + Sync {
    /// Inserts a client, or replaces the one with its id (a metadata document fetched again, a
    /// configured client at start-up). Keeps `created_at` and `last_used_at` of the one replaced.
    async fn save_client(&self, client: &OAuthClient) -> StoreResult<()>;
    async fn get_client(&self, id: &str) -> StoreResult<Option<OAuthClient>>;
    /// Deletes registered clients (source `Registered`) created before `before` that no grant
    /// ever used (`last_used_at` is null). Returns how many.
    async fn purge_unused_clients(&self, before: Timestamp) -> StoreResult<u64>;

    /// Makes the grant (its credential row: kind `grant`, labelled with the client's name, scope
    /// `agent:connect`, created by the user; and the grant row), stores its code, marks the
    /// client used, and writes `oauth.consent` — one transaction.
    async fn create_grant(&self, grant: &NewGrant, code: &NewCode, ctx: &AuditContext) -> StoreResult<GrantRecord>;
    async fn get_grant(&self, tenant: &TenantId, id: &GrantId) -> StoreResult<Option<GrantRecord>>;
    /// The tenant's grants, newest first, with what each spent.
    async fn list_grants(&self, tenant: &TenantId) -> StoreResult<Vec<GrantView>>;
    /// Revokes the grant, its credential row (`revoked_at`) and every token of it, and writes the
    /// audit row for `reason`. `None` when no such grant; a grant revoked already is returned
    /// unchanged (no second audit row).
    async fn revoke_grant(
        &self,
        id: &GrantId,
        at: Timestamp,
        reason: RevokeReason,
        ctx: &AuditContext,
    ) -> StoreResult<Option<GrantRecord>>;

    async fn find_code(&self, digest: &TokenDigest) -> StoreResult<Option<CodeRecord>>;
    /// Marks the code used and stores `tokens`, writing `oauth.token_issue` — one transaction,
    /// and only if the code was not used yet (`false` then, and nothing is written).
    async fn redeem_code(
        &self,
        digest: &TokenDigest,
        at: Timestamp,
        tokens: &[NewToken],
        ctx: &AuditContext,
    ) -> StoreResult<bool>;

    async fn find_token(&self, digest: &TokenDigest) -> StoreResult<Option<TokenRecord>>;
    /// Marks the refresh token used and stores `tokens`, writing `oauth.token_issue` — one
    /// transaction, and only if it was not used or revoked yet (`false` then, nothing written).
    async fn rotate_refresh(
        &self,
        digest: &TokenDigest,
        at: Timestamp,
        tokens: &[NewToken],
        ctx: &AuditContext,
    ) -> StoreResult<bool>;
    /// Revokes one token (RFC 7009 for an access token). `false` when unknown.
    async fn revoke_token(&self, digest: &TokenDigest, at: Timestamp) -> StoreResult<bool>;
    /// Deletes codes and tokens that expired before `before`.
    async fn purge_expired_tokens(&self, before: Timestamp) -> StoreResult<u64>;

    /// What the calls charged to the credential `key` cost (captured or settled), counting
    /// charges still in the embedded database's journal.
    async fn spent_by_key(&self, key: &KeyId) -> StoreResult<Amount>;
}
