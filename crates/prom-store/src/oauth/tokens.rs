//! Authorization codes and tokens: found by digest with their grant, exchanged once (a
//! conditional update on `used_at`, so however many requests race with one code or refresh token,
//! one wins), revoked, and purged once expired. Only digests are ever stored or logged.

use prom_core::audit::{AuditAction, AuditContext};
use prom_core::id::{GrantId, TenantId};
use prom_core::oauth::{CodeRecord, NewToken, TokenDigest, TokenRecord};
use prom_core::store::{StoreError, StoreResult};
use prom_core::time::Timestamp;
use serde_json::json;

use super::grants::grant_event;
use super::rows::{CODE_COLUMNS, CodeRow, GRANT_COLUMNS, TOKEN_COLUMNS, TokenRow};
use crate::audit::insert_audit;
use crate::{SqlStore, db_err, with_read, with_write};

/// Stores `$tokens` and writes `oauth.token_issue` for grant `$grant` (its id, as text), within
/// transaction `$tx` of either backend; `$how` is the grant type that issued them.
macro_rules! issue_tokens {
    ($tx:ident, $grant:expr, $tokens:expr, $at:expr, $ctx:expr, $how:expr) => {{
        let (grant, tokens, at, ctx): (&str, &[NewToken], Timestamp, &AuditContext) = ($grant, $tokens, $at, $ctx);
        for token in tokens {
            sqlx::query(
                "INSERT INTO oauth_tokens (digest, grant_id, kind, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&token.digest.0[..])
            .bind(token.grant_id.as_str())
            .bind(token.kind.as_str())
            .bind(token.created_at.as_millis())
            .bind(token.expires_at.as_millis())
            .execute(&mut *$tx)
            .await
            .map_err(db_err)?;
        }
        let (tenant, client_name): (String, String) =
            sqlx::query_as("SELECT tenant_id, client_name FROM oauth_grants WHERE id = $1")
                .bind(grant)
                .fetch_one(&mut *$tx)
                .await
                .map_err(db_err)?;
        let event = grant_event(
            AuditAction::OAuthTokenIssue,
            &TenantId::from_trusted(tenant),
            &GrantId::from_trusted(grant.to_owned()),
            &client_name,
            at,
            ctx,
            json!({ "kind": $how }),
        );
        insert_audit!(&mut *$tx, &event)?;
    }};
}

/// Every token must belong to the grant whose code or refresh token issues it.
fn check_tokens(grant: &str, tokens: &[NewToken]) -> StoreResult<()> {
    if tokens.iter().any(|token| token.grant_id.as_str() != grant) {
        return Err(StoreError::Conflict("a token to issue is not for the grant that issues it".into()));
    }
    Ok(())
}

pub(super) async fn find_code(store: &SqlStore, digest: &TokenDigest) -> StoreResult<Option<CodeRecord>> {
    let row: Option<CodeRow> = with_read!(store, pool => {
        sqlx::query_as(&format!(
            "SELECT {GRANT_COLUMNS}, {CODE_COLUMNS} FROM oauth_codes c \
             JOIN oauth_grants g ON g.id = c.grant_id JOIN api_keys k ON k.id = g.key_id WHERE c.digest = $1"
        ))
        .bind(&digest.0[..])
        .fetch_optional(pool)
        .await
        .map_err(db_err)?
    });
    row.map(CodeRecord::try_from).transpose()
}

pub(super) async fn redeem_code(
    store: &SqlStore,
    digest: &TokenDigest,
    at: Timestamp,
    tokens: &[NewToken],
    ctx: &AuditContext,
) -> StoreResult<bool> {
    with_write!(store, pool => {
        let mut tx = pool.begin().await.map_err(db_err)?;
        // A code whose grant was revoked meanwhile is spent too: its tokens would never work.
        let grant: Option<String> = sqlx::query_scalar(
            "UPDATE oauth_codes SET used_at = $2 WHERE digest = $1 AND used_at IS NULL \
               AND grant_id IN (SELECT id FROM oauth_grants WHERE revoked_at IS NULL) \
             RETURNING grant_id",
        )
        .bind(&digest.0[..])
        .bind(at.as_millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(grant) = grant else { return Ok(false) };
        check_tokens(&grant, tokens)?;
        issue_tokens!(tx, &grant, tokens, at, ctx, "authorization_code");
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    })
}

pub(super) async fn find_token(store: &SqlStore, digest: &TokenDigest) -> StoreResult<Option<TokenRecord>> {
    let row: Option<TokenRow> = with_read!(store, pool => {
        sqlx::query_as(&format!(
            "SELECT {GRANT_COLUMNS}, {TOKEN_COLUMNS} FROM oauth_tokens t \
             JOIN oauth_grants g ON g.id = t.grant_id JOIN api_keys k ON k.id = g.key_id WHERE t.digest = $1"
        ))
        .bind(&digest.0[..])
        .fetch_optional(pool)
        .await
        .map_err(db_err)?
    });
    row.map(TokenRecord::try_from).transpose()
}

pub(super) async fn rotate_refresh(
    store: &SqlStore,
    digest: &TokenDigest,
    at: Timestamp,
    tokens: &[NewToken],
    ctx: &AuditContext,
) -> StoreResult<bool> {
    with_write!(store, pool => {
        let mut tx = pool.begin().await.map_err(db_err)?;
        // Revoking a grant revokes its tokens in the same transaction, so a refresh token of a
        // revoked grant fails here too.
        let grant: Option<String> = sqlx::query_scalar(
            "UPDATE oauth_tokens SET used_at = $2 \
             WHERE digest = $1 AND kind = 'refresh' AND used_at IS NULL AND revoked_at IS NULL RETURNING grant_id",
        )
        .bind(&digest.0[..])
        .bind(at.as_millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(grant) = grant else { return Ok(false) };
        check_tokens(&grant, tokens)?;
        issue_tokens!(tx, &grant, tokens, at, ctx, "refresh_token");
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    })
}

pub(super) async fn revoke_token(store: &SqlStore, digest: &TokenDigest, at: Timestamp) -> StoreResult<bool> {
    // Matches a known token whether or not it was revoked already (keeping the first revocation):
    // only an unknown one reports `false`.
    let matched = with_write!(store, pool => {
        sqlx::query("UPDATE oauth_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE digest = $1")
            .bind(&digest.0[..])
            .bind(at.as_millis())
            .execute(pool)
            .await
            .map_err(db_err)?
            .rows_affected()
    });
    Ok(matched > 0)
}

pub(super) async fn purge_expired_tokens(store: &SqlStore, before: Timestamp) -> StoreResult<u64> {
    with_write!(store, pool => {
        let mut tx = pool.begin().await.map_err(db_err)?;
        let codes = sqlx::query("DELETE FROM oauth_codes WHERE expires_at < $1")
            .bind(before.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        let tokens = sqlx::query("DELETE FROM oauth_tokens WHERE expires_at < $1")
            .bind(before.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(codes + tokens)
    })
}
