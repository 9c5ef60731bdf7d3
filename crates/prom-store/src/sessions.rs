//! Sign-in sessions: created and ended with their audit rows, found by digest with the member's
//! current role, touched as they are used, and revoked together when a member leaves a tenant.

use async_trait::async_trait;
use prom_core::audit::{AuditAction, AuditContext, NewAuditEvent};
use prom_core::id::{SessionId, TenantId, UserId};
use prom_core::session::SessionDigest;
use prom_core::store::{NewSession, SessionRecord, SessionStore, StoreResult};
use prom_core::time::Timestamp;
use serde_json::json;

use crate::audit::insert_audit;
use crate::rows::SessionRow;
use crate::{SqlStore, db_err, with_read, with_write};

/// Ends every live session of a user in a tenant (binds: user, tenant, instant). Also run by
/// `remove_member`, in its transaction.
pub(crate) const REVOKE_USER_SESSIONS: &str =
    "UPDATE sessions SET revoked_at = $3 WHERE user_id = $1 AND tenant_id = $2 AND revoked_at IS NULL";

#[async_trait]
impl SessionStore for SqlStore {
    async fn create_session(&self, session: NewSession, ctx: &AuditContext) -> StoreResult<()> {
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            sqlx::query(
                "INSERT INTO sessions (id, digest, user_id, tenant_id, created_at, expires_at, last_seen_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $5)",
            )
            .bind(session.id.as_str())
            .bind(&session.digest.as_bytes()[..])
            .bind(session.user_id.as_str())
            .bind(session.tenant_id.as_str())
            .bind(session.created_at.as_millis())
            .bind(session.expires_at.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let event = NewAuditEvent {
                at: session.created_at,
                tenant_id: Some(session.tenant_id.clone()),
                action: AuditAction::UserLogin,
                context: ctx.clone(),
                target: None,
                details: json!({ "session_id": session.id.as_str(), "expires_at": session.expires_at.to_string() }),
            };
            insert_audit!(&mut *tx, &event)?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn find_session(&self, digest: &SessionDigest) -> StoreResult<Option<SessionRecord>> {
        let row: Option<SessionRow> = with_read!(self, pool => {
            sqlx::query_as(
                "SELECT s.id AS session_id, s.user_id, u.email, t.id, t.slug, t.name, t.created_at, m.role, \
                        s.expires_at, s.revoked_at, s.last_seen_at \
                 FROM sessions s \
                 JOIN users u ON u.id = s.user_id \
                 JOIN memberships m ON m.user_id = s.user_id AND m.tenant_id = s.tenant_id \
                 JOIN tenants t ON t.id = s.tenant_id \
                 WHERE s.digest = $1",
            )
            .bind(&digest.as_bytes()[..])
            .fetch_optional(pool)
            .await
            .map_err(db_err)?
        });
        row.map(SessionRecord::try_from).transpose()
    }

    async fn revoke_session(&self, session: &SessionRecord, at: Timestamp, ctx: &AuditContext) -> StoreResult<()> {
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            let done = sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(at.as_millis())
                .bind(session.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            if done.rows_affected() == 1 {
                let event = NewAuditEvent {
                    at,
                    tenant_id: Some(session.tenant.id.clone()),
                    action: AuditAction::UserLogout,
                    context: ctx.clone(),
                    target: None,
                    details: json!({ "session_id": session.id.as_str() }),
                };
                insert_audit!(&mut *tx, &event)?;
            }
            tx.commit().await.map_err(db_err)
        })
    }

    async fn touch_session(&self, id: &SessionId, at: Timestamp) -> StoreResult<()> {
        // Only ever forward: a late write from a slower request must not move it back.
        with_write!(self, pool => {
            sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2")
                .bind(id.as_str())
                .bind(at.as_millis())
                .execute(pool)
                .await
                .map_err(db_err)?;
        });
        Ok(())
    }

    async fn revoke_user_sessions(&self, user: &UserId, tenant: &TenantId, at: Timestamp) -> StoreResult<u64> {
        let revoked = with_write!(self, pool => {
            sqlx::query(REVOKE_USER_SESSIONS)
                .bind(user.as_str())
                .bind(tenant.as_str())
                .bind(at.as_millis())
                .execute(pool)
                .await
                .map_err(db_err)?
                .rows_affected()
        });
        Ok(revoked)
    }
}
