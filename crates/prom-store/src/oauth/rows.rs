//! OAuth rows and their mapping to the records of `prom_core::oauth`. A grant is always read with
//! its credential row (`api_keys`), whose `last_used_at` the gateway keeps.

use prom_core::id::{GrantId, KeyId, TenantId, UserId};
use prom_core::money::Amount;
use prom_core::oauth::{ClientSource, CodeRecord, GrantRecord, OAuthClient, TokenKind, TokenRecord};
use prom_core::service::ServiceSlug;
use prom_core::store::{StoreError, StoreResult};
use prom_core::time::Timestamp;

/// The columns of a [`GrantRow`], read from [`GRANT_FROM`].
pub(super) const GRANT_COLUMNS: &str = "g.id, g.key_id, g.tenant_id, g.user_id, g.client_id, g.client_name, \
     g.service, g.resource, g.scopes, g.spend_cap, g.expires_at, g.created_at, g.revoked_at, k.last_used_at";

/// A grant joined with its credential row.
pub(super) const GRANT_FROM: &str = "oauth_grants g JOIN api_keys k ON k.id = g.key_id";

pub(super) const CLIENT_COLUMNS: &str = "id, name, redirect_uris, client_uri, source, created_at, last_used_at";

fn ts(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(Timestamp::from_millis)
}

/// A list of strings, as stored: a JSON array.
pub(super) fn to_json(list: &[String]) -> StoreResult<String> {
    serde_json::to_string(list).map_err(|err| StoreError::Backend(Box::new(err)))
}

/// Reads a JSON array of strings written by [`to_json`]; anything else was changed outside this
/// code. The message gives a position only, not the value.
fn from_json(raw: &str, what: &str, owner: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(raw).map_err(|err| {
        StoreError::Corrupt(format!("{owner} has unreadable {what} (line {}, column {})", err.line(), err.column()))
    })
}

pub(super) fn amount(raw: &str) -> StoreResult<Amount> {
    raw.parse().map_err(|_| StoreError::Corrupt(format!("stored amount {raw:?} is not a decimal")))
}

#[derive(sqlx::FromRow)]
pub(super) struct ClientRow {
    id: String,
    name: String,
    redirect_uris: String,
    client_uri: Option<String>,
    source: String,
    created_at: i64,
    last_used_at: Option<i64>,
}

fn client_source(raw: &str) -> StoreResult<ClientSource> {
    ClientSource::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("unknown OAuth client source {raw:?}")))
}

impl TryFrom<ClientRow> for OAuthClient {
    type Error = StoreError;

    fn try_from(row: ClientRow) -> StoreResult<Self> {
        Ok(OAuthClient {
            redirect_uris: from_json(&row.redirect_uris, "redirect URIs", &format!("OAuth client {}", row.id))?,
            source: client_source(&row.source)?,
            id: row.id,
            name: row.name,
            client_uri: row.client_uri,
            created_at: Timestamp::from_millis(row.created_at),
            last_used_at: ts(row.last_used_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct GrantRow {
    id: String,
    key_id: String,
    tenant_id: String,
    user_id: String,
    client_id: String,
    client_name: String,
    service: String,
    resource: String,
    scopes: String,
    spend_cap: String,
    expires_at: i64,
    created_at: i64,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl TryFrom<GrantRow> for GrantRecord {
    type Error = StoreError;

    fn try_from(row: GrantRow) -> StoreResult<Self> {
        Ok(GrantRecord {
            scopes: from_json(&row.scopes, "scopes", &format!("OAuth grant {}", row.id))?,
            spend_cap: amount(&row.spend_cap)?,
            id: GrantId::from_trusted(row.id),
            key_id: KeyId::from_trusted(row.key_id),
            tenant_id: TenantId::from_trusted(row.tenant_id),
            user_id: UserId::from_trusted(row.user_id),
            client_id: row.client_id,
            client_name: row.client_name,
            service: ServiceSlug::from_trusted(row.service),
            resource: row.resource,
            expires_at: Timestamp::from_millis(row.expires_at),
            created_at: Timestamp::from_millis(row.created_at),
            revoked_at: ts(row.revoked_at),
            last_used_at: ts(row.last_used_at),
        })
    }
}

/// A grant with where its client came from (`None` once the client is gone).
#[derive(sqlx::FromRow)]
pub(super) struct GrantViewRow {
    #[sqlx(flatten)]
    pub(super) grant: GrantRow,
    pub(super) client_source: Option<String>,
}

impl GrantViewRow {
    pub(super) fn into_parts(self) -> StoreResult<(GrantRecord, Option<ClientSource>)> {
        Ok((self.grant.try_into()?, self.client_source.as_deref().map(client_source).transpose()?))
    }
}

/// The columns of a [`CodeRow`]: its grant's, and the code's own under names of their own.
pub(super) const CODE_COLUMNS: &str = "c.client_id AS code_client_id, c.redirect_uri, c.code_challenge, \
     c.expires_at AS code_expires_at, c.used_at AS code_used_at";

#[derive(sqlx::FromRow)]
pub(super) struct CodeRow {
    #[sqlx(flatten)]
    grant: GrantRow,
    code_client_id: String,
    redirect_uri: String,
    code_challenge: String,
    code_expires_at: i64,
    code_used_at: Option<i64>,
}

impl TryFrom<CodeRow> for CodeRecord {
    type Error = StoreError;

    fn try_from(row: CodeRow) -> StoreResult<Self> {
        Ok(CodeRecord {
            grant: row.grant.try_into()?,
            client_id: row.code_client_id,
            redirect_uri: row.redirect_uri,
            code_challenge: row.code_challenge,
            expires_at: Timestamp::from_millis(row.code_expires_at),
            used_at: ts(row.code_used_at),
        })
    }
}

/// The columns of a [`TokenRow`], like [`CODE_COLUMNS`].
pub(super) const TOKEN_COLUMNS: &str = "t.kind AS token_kind, t.expires_at AS token_expires_at, \
     t.used_at AS token_used_at, t.revoked_at AS token_revoked_at";

#[derive(sqlx::FromRow)]
pub(super) struct TokenRow {
    #[sqlx(flatten)]
    grant: GrantRow,
    token_kind: String,
    token_expires_at: i64,
    token_used_at: Option<i64>,
    token_revoked_at: Option<i64>,
}

fn token_kind(raw: &str) -> StoreResult<TokenKind> {
    [TokenKind::Access, TokenKind::Refresh]
        .into_iter()
        .find(|kind| kind.as_str() == raw)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown OAuth token kind {raw:?}")))
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;

    fn try_from(row: TokenRow) -> StoreResult<Self> {
        Ok(TokenRecord {
            grant: row.grant.try_into()?,
            kind: token_kind(&row.token_kind)?,
            expires_at: Timestamp::from_millis(row.token_expires_at),
            used_at: ts(row.token_used_at),
            revoked_at: ts(row.token_revoked_at),
        })
    }
}
