//! API keys: insert, rotate, revoke, delete, look up by digest, record last use.
//!
//! Every change is a conditional `UPDATE … WHERE <state is what the change expects>` inside a
//! transaction with its audit row, so two concurrent revocations write one audit row, and a key
//! of another tenant is never touched whatever id is passed.
//!
//! The table also holds the credential rows of OAuth grants (`kind = 'grant'`, see `oauth/`).
//! Everything here that people see or change through the keys pages and API reads and changes
//! `kind = 'key'` rows only: a grant is listed, and revoked, as a grant. Digest lookups and
//! `touch_keys` need no filter: a grant row's digest matches no key, and its last use is shown
//! on the Connected apps page.

use async_trait::async_trait;
use prom_core::access::Scope;
use prom_core::audit::{AuditAction, AuditContext, AuditTarget, NewAuditEvent};
use prom_core::id::{KeyId, TenantId};
use prom_core::kdf::KeyDigest;
use prom_core::store::{KeyRecord, KeyStatus, KeyStore, NewKey, StoreError, StoreResult};
use prom_core::time::Timestamp;
use serde_json::json;

use crate::audit::insert_audit;
use crate::rows::{KEY_COLUMNS, KeyRow};
use crate::{SqlStore, db_err, with_read, with_write};

const INSERT_KEY: &str = "INSERT INTO api_keys \
     (id, tenant_id, label, environment, digest, last4, scopes, created_by, created_at, rotated_from) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Inserts a [`NewKey`] with any executor of either backend.
macro_rules! insert_key {
    ($executor:expr, $key:expr, $rotated_from:expr) => {{
        let key: &NewKey = $key;
        sqlx::query(INSERT_KEY)
            .bind(key.id.as_str())
            .bind(key.tenant_id.as_str())
            .bind(key.label.as_str())
            .bind(key.environment.as_str())
            .bind(&key.digest.as_bytes()[..])
            .bind(&key.last4)
            .bind(Scope::join(&key.scopes))
            .bind(key.created_by.as_ref().map(|u| u.as_str()))
            .bind(key.created_at.as_millis())
            .bind($rotated_from)
            .execute($executor)
            .await
            .map_err(db_err)
    }};
}

/// Reads one live (not deleted) API key (not a grant's row) of a tenant with any executor.
macro_rules! select_tenant_key {
    ($executor:expr, $tenant:expr, $id:expr) => {{
        let row: Option<KeyRow> = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys \
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL AND kind = 'key'"
        ))
        .bind($tenant.as_str())
        .bind($id.as_str())
        .fetch_optional($executor)
        .await
        .map_err(db_err)?;
        row.map(KeyRecord::try_from).transpose()
    }};
}

fn record_of(key: &NewKey, rotated_from: Option<KeyId>) -> KeyRecord {
    KeyRecord {
        id: key.id.clone(),
        tenant_id: key.tenant_id.clone(),
        label: key.label.clone(),
        environment: key.environment,
        last4: key.last4.clone(),
        scopes: key.scopes.clone(),
        created_by: key.created_by.clone(),
        created_at: key.created_at,
        last_used_at: None,
        revoked_at: None,
        expires_at: None,
        deleted_at: None,
        rotated_from,
    }
}

fn key_event(
    action: AuditAction,
    key: &KeyRecord,
    at: Timestamp,
    ctx: &AuditContext,
    details: serde_json::Value,
) -> NewAuditEvent {
    NewAuditEvent {
        at,
        tenant_id: Some(key.tenant_id.clone()),
        action,
        context: ctx.clone(),
        target: Some(AuditTarget::api_key(&key.id, key.label.as_str())),
        details,
    }
}

fn created_details(key: &KeyRecord) -> serde_json::Value {
    json!({
        "display": key.display(),
        "environment": key.environment.as_str(),
        "scopes": Scope::join(&key.scopes),
        "rotated_from": key.rotated_from.as_ref().map(|k| k.as_str()),
    })
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn insert_key(&self, key: NewKey, ctx: &AuditContext) -> StoreResult<KeyRecord> {
        let record = record_of(&key, None);
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            insert_key!(&mut *tx, &key, None::<&str>)?;
            let event = key_event(AuditAction::ApiKeyCreate, &record, key.created_at, ctx, created_details(&record));
            insert_audit!(&mut *tx, &event)?;
            tx.commit().await.map_err(db_err)?;
        });
        Ok(record)
    }

    async fn rotate_key(
        &self,
        tenant: &TenantId,
        old: &KeyId,
        new: NewKey,
        old_expires_at: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<(KeyRecord, KeyRecord)> {
        let now = new.created_at;
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            // Take the write lock first (PostgreSQL: row lock; SQLite: the single writer), then read.
            let updated = sqlx::query(
                "UPDATE api_keys SET expires_at = CASE WHEN expires_at IS NULL OR expires_at > $1 THEN $1 ELSE expires_at END \
                 WHERE tenant_id = $2 AND id = $3 AND deleted_at IS NULL AND revoked_at IS NULL AND kind = 'key' \
                   AND (expires_at IS NULL OR expires_at > $4)",
            )
            .bind(old_expires_at.as_millis())
            .bind(tenant.as_str())
            .bind(old.as_str())
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let old_record = select_tenant_key!(&mut *tx, tenant, old)?.ok_or(StoreError::NotFound)?;
            if updated.rows_affected() == 0 {
                return Err(match old_record.status(now) {
                    KeyStatus::Revoked => StoreError::Conflict("the key is revoked; create a new key instead".into()),
                    KeyStatus::Expired => StoreError::Conflict("the key has expired; create a new key instead".into()),
                    _ => StoreError::NotFound,
                });
            }
            insert_key!(&mut *tx, &new, Some(old.as_str()))?;
            let new_record = record_of(&new, Some(old.clone()));
            let created = key_event(AuditAction::ApiKeyCreate, &new_record, now, ctx, created_details(&new_record));
            insert_audit!(&mut *tx, &created)?;
            let rotated = key_event(
                AuditAction::ApiKeyRotate,
                &old_record,
                now,
                ctx,
                json!({
                    "new_key_id": new_record.id.as_str(),
                    "new_label": new_record.label.as_str(),
                    "old_expires_at": old_record.expires_at.map(|t| t.to_string()),
                }),
            );
            insert_audit!(&mut *tx, &rotated)?;
            tx.commit().await.map_err(db_err)?;
            Ok((old_record, new_record))
        })
    }

    async fn revoke_key(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        at: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<KeyRecord> {
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            let updated = sqlx::query(
                "UPDATE api_keys SET revoked_at = $1 \
                 WHERE tenant_id = $2 AND id = $3 AND deleted_at IS NULL AND revoked_at IS NULL AND kind = 'key'",
            )
            .bind(at.as_millis())
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let record = select_tenant_key!(&mut *tx, tenant, id)?.ok_or(StoreError::NotFound)?;
            if updated.rows_affected() == 1 {
                let event = key_event(AuditAction::ApiKeyRevoke, &record, at, ctx, json!({ "display": record.display() }));
                insert_audit!(&mut *tx, &event)?;
            }
            tx.commit().await.map_err(db_err)?;
            Ok(record)
        })
    }

    async fn delete_key(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        at: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<KeyRecord> {
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            let record = select_tenant_key!(&mut *tx, tenant, id)?.ok_or(StoreError::NotFound)?;
            let updated = sqlx::query(
                "UPDATE api_keys SET deleted_at = $1 \
                 WHERE tenant_id = $2 AND id = $3 AND deleted_at IS NULL AND kind = 'key'",
            )
            .bind(at.as_millis())
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            let event = key_event(
                AuditAction::ApiKeyDelete,
                &record,
                at,
                ctx,
                json!({ "display": record.display(), "was_revoked": record.revoked_at.is_some() }),
            );
            insert_audit!(&mut *tx, &event)?;
            tx.commit().await.map_err(db_err)?;
            Ok(KeyRecord { deleted_at: Some(at), ..record })
        })
    }

    async fn get_key(&self, tenant: &TenantId, id: &KeyId) -> StoreResult<Option<KeyRecord>> {
        with_read!(self, pool => select_tenant_key!(pool, tenant, id))
    }

    async fn list_keys(&self, tenant: &TenantId) -> StoreResult<Vec<KeyRecord>> {
        let rows: Vec<KeyRow> = with_read!(self, pool => {
            sqlx::query_as(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND deleted_at IS NULL AND kind = 'key' \
                 ORDER BY created_at DESC, id DESC"
            ))
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await
            .map_err(db_err)?
        });
        rows.into_iter().map(KeyRecord::try_from).collect()
    }

    async fn list_keys_page(&self, tenant: &TenantId, offset: u32, limit: u32) -> StoreResult<(Vec<KeyRecord>, u64)> {
        // Both read the partial index of live API keys (migrations 0018 and 0021, whose predicate
        // the queries repeat): a page deep in 10,000 keys skips index entries, not rows.
        let (rows, total): (Vec<KeyRow>, i64) = with_read!(self, pool => {
            let rows = sqlx::query_as(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND deleted_at IS NULL AND kind = 'key' \
                 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
            ))
            .bind(tenant.as_str())
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(pool)
            .await
            .map_err(db_err)?;
            let total = sqlx::query_scalar(
                "SELECT COUNT(*) FROM api_keys WHERE tenant_id = $1 AND deleted_at IS NULL AND kind = 'key'",
            )
                .bind(tenant.as_str())
                .fetch_one(pool)
                .await
                .map_err(db_err)?;
            (rows, total)
        });
        let total =
            u64::try_from(total).map_err(|_| StoreError::Corrupt(format!("a negative count of keys ({total})")))?;
        Ok((rows.into_iter().map(KeyRecord::try_from).collect::<StoreResult<_>>()?, total))
    }

    async fn find_key_by_digest(&self, digest: &KeyDigest) -> StoreResult<Option<KeyRecord>> {
        let row: Option<KeyRow> = with_read!(self, pool => {
            sqlx::query_as(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE digest = $1"))
                .bind(&digest.as_bytes()[..])
                .fetch_optional(pool)
                .await
                .map_err(db_err)?
        });
        row.map(KeyRecord::try_from).transpose()
    }

    async fn touch_keys(&self, uses: &[(KeyId, Timestamp)]) -> StoreResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            for (id, at) in uses {
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
                )
                .bind(at.as_millis())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            tx.commit().await.map_err(db_err)
        })
    }
}
