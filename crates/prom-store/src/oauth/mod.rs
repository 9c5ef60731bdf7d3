//! OAuth (`OAuthStore`): clients, grants, codes and tokens (migration 0021; see docs/OAUTH.md).
//!
//! A grant is backed by a credential row of its own in `api_keys` (`kind = 'grant'`), so the
//! charges, usage and `last_used_at` the gateway writes for a key are written for a grant the same
//! way; the keys pages never show those rows (`keys.rs`). Codes and tokens are stored as digests
//! and exchanged by conditional updates, each in one transaction with the audit row it causes.

mod clients;
pub(crate) mod grants;
mod rows;
mod tokens;

use async_trait::async_trait;
use prom_core::audit::AuditContext;
use prom_core::id::{GrantId, KeyId, TenantId};
use prom_core::money::Amount;
use prom_core::oauth::{
    CodeRecord, GrantRecord, GrantView, NewCode, NewGrant, NewToken, OAuthClient, OAuthStore, RevokeReason,
    TokenDigest, TokenRecord,
};
use prom_core::store::{KeyRecord, StoreResult};
use prom_core::time::Timestamp;

use crate::rows::{KEY_COLUMNS, KeyRow};
use crate::{SqlStore, db_err, with_read};

#[async_trait]
impl OAuthStore for SqlStore {
    async fn save_client(&self, client: &OAuthClient) -> StoreResult<()> {
        clients::save_client(self, client).await
    }

    async fn get_client(&self, id: &str) -> StoreResult<Option<OAuthClient>> {
        clients::get_client(self, id).await
    }

    async fn purge_unused_clients(&self, before: Timestamp) -> StoreResult<u64> {
        clients::purge_unused_clients(self, before).await
    }

    async fn create_grant(&self, grant: &NewGrant, code: &NewCode, ctx: &AuditContext) -> StoreResult<GrantRecord> {
        grants::create_grant(self, grant, code, ctx).await
    }

    async fn get_grant(&self, tenant: &TenantId, id: &GrantId) -> StoreResult<Option<GrantRecord>> {
        grants::get_grant(self, tenant, id).await
    }

    async fn list_grants(&self, tenant: &TenantId) -> StoreResult<Vec<GrantView>> {
        grants::list_grants(self, tenant).await
    }

    async fn revoke_grant(
        &self,
        id: &GrantId,
        at: Timestamp,
        reason: RevokeReason,
        ctx: &AuditContext,
    ) -> StoreResult<Option<GrantRecord>> {
        grants::revoke_grant(self, id, at, reason, ctx).await
    }

    async fn find_code(&self, digest: &TokenDigest) -> StoreResult<Option<CodeRecord>> {
        tokens::find_code(self, digest).await
    }

    async fn redeem_code(
        &self,
        digest: &TokenDigest,
        at: Timestamp,
        tokens: &[NewToken],
        ctx: &AuditContext,
    ) -> StoreResult<bool> {
        tokens::redeem_code(self, digest, at, tokens, ctx).await
    }

    async fn find_token(&self, digest: &TokenDigest) -> StoreResult<Option<TokenRecord>> {
        tokens::find_token(self, digest).await
    }

    async fn rotate_refresh(
        &self,
        digest: &TokenDigest,
        at: Timestamp,
        tokens: &[NewToken],
        ctx: &AuditContext,
    ) -> StoreResult<bool> {
        tokens::rotate_refresh(self, digest, at, tokens, ctx).await
    }

    async fn revoke_token(&self, digest: &TokenDigest, at: Timestamp) -> StoreResult<bool> {
        tokens::revoke_token(self, digest, at).await
    }

    async fn purge_expired_tokens(&self, before: Timestamp) -> StoreResult<u64> {
        tokens::purge_expired_tokens(self, before).await
    }

    async fn spent_by_key(&self, key: &KeyId) -> StoreResult<Amount> {
        grants::spent_by_key(self, key).await
    }
}

impl SqlStore {
    /// The credential row of a grant as the keys table holds it, which no `KeyStore` read returns
    /// (for tests of what a grant writes there).
    #[doc(hidden)]
    pub async fn grant_credential(&self, grant: &GrantId) -> StoreResult<Option<KeyRecord>> {
        let row: Option<KeyRow> = with_read!(self, pool => {
            sqlx::query_as(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = (SELECT key_id FROM oauth_grants WHERE id = $1)"
            ))
            .bind(grant.as_str())
            .fetch_optional(pool)
            .await
            .map_err(db_err)?
        });
        row.map(KeyRecord::try_from).transpose()
    }
}
