//! TEMPORARY STUB (replaced by the real implementation from branch oauth-store).
use async_trait::async_trait;
use prom_core::audit::AuditContext;
use prom_core::id::{GrantId, KeyId, TenantId};
use prom_core::money::Amount;
use prom_core::oauth::*;
use prom_core::store::{StoreError, StoreResult};
use prom_core::time::Timestamp;

use crate::SqlStore;

fn no() -> StoreError {
    StoreError::Corrupt("stub".into())
}

#[async_trait]
impl OAuthStore for SqlStore {
    async fn save_client(&self, _: &OAuthClient) -> StoreResult<()> { Err(no()) }
    async fn get_client(&self, _: &str) -> StoreResult<Option<OAuthClient>> { Err(no()) }
    async fn purge_unused_clients(&self, _: Timestamp) -> StoreResult<u64> { Err(no()) }
    async fn create_grant(&self, _: &NewGrant, _: &NewCode, _: &AuditContext) -> StoreResult<GrantRecord> { Err(no()) }
    async fn get_grant(&self, _: &TenantId, _: &GrantId) -> StoreResult<Option<GrantRecord>> { Err(no()) }
    async fn list_grants(&self, _: &TenantId) -> StoreResult<Vec<GrantView>> { Err(no()) }
    async fn revoke_grant(&self, _: &GrantId, _: Timestamp, _: RevokeReason, _: &AuditContext) -> StoreResult<Option<GrantRecord>> { Err(no()) }
    async fn find_code(&self, _: &TokenDigest) -> StoreResult<Option<CodeRecord>> { Err(no()) }
    async fn redeem_code(&self, _: &TokenDigest, _: Timestamp, _: &[NewToken], _: &AuditContext) -> StoreResult<bool> { Err(no()) }
    async fn find_token(&self, _: &TokenDigest) -> StoreResult<Option<TokenRecord>> { Err(no()) }
    async fn rotate_refresh(&self, _: &TokenDigest, _: Timestamp, _: &[NewToken], _: &AuditContext) -> StoreResult<bool> { Err(no()) }
    async fn revoke_token(&self, _: &TokenDigest, _: Timestamp) -> StoreResult<bool> { Err(no()) }
    async fn purge_expired_tokens(&self, _: Timestamp) -> StoreResult<u64> { Err(no()) }
    async fn spent_by_key(&self, _: &KeyId) -> StoreResult<Amount> { Err(no()) }
}
