//! The audit log: writing events (inside the transaction of the change they record) and listing them.

use async_trait::async_trait;
use prom_core::audit::{AuditEvent, AuditFilter, MAX_AUDIT_PAGE, NewAuditEvent};
use prom_core::id::TenantId;
use prom_core::store::{AuditStore, StoreResult};

use crate::rows::AuditRow;
use crate::{SqlStore, db_err, with_read, with_write};

pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit_events \
     (at, tenant_id, action, actor_kind, actor_id, actor_name, target_kind, target_id, target_label, ip, user_agent, details) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// Inserts a [`NewAuditEvent`] with any executor (a pool or `&mut *transaction`) of either backend.
macro_rules! insert_audit {
    ($executor:expr, $event:expr) => {{
        let event: &prom_core::audit::NewAuditEvent = $event;
        let target = event.target.as_ref();
        sqlx::query($crate::audit::INSERT_AUDIT)
            .bind(event.at.as_millis())
            .bind(event.tenant_id.as_ref().map(|t| t.as_str()))
            .bind(event.action.as_str())
            .bind(event.context.actor.kind())
            .bind(event.context.actor.id())
            .bind(event.context.actor.name())
            .bind(target.map(|t| t.kind.as_str()))
            .bind(target.map(|t| t.id.as_str()))
            .bind(target.and_then(|t| t.label.as_deref()))
            .bind(event.context.ip.as_deref())
            .bind(event.context.user_agent.as_deref())
            .bind(event.details.to_string())
            .execute($executor)
            .await
            .map_err($crate::db_err)
    }};
}
pub(crate) use insert_audit;

#[async_trait]
impl AuditStore for SqlStore {
    async fn record_audit(&self, event: NewAuditEvent) -> StoreResult<()> {
        with_write!(self, pool => insert_audit!(pool, &event).map(drop))?;
        Ok(())
    }

    async fn list_audit(&self, tenant: &TenantId, filter: &AuditFilter) -> StoreResult<Vec<AuditEvent>> {
        let limit = i64::from(filter.limit.clamp(1, MAX_AUDIT_PAGE));
        let rows: Vec<AuditRow> = with_read!(self, pool => {
            sqlx::query_as(
                "SELECT id, at, tenant_id, action, actor_kind, actor_id, actor_name, target_kind, target_id, \
                        target_label, ip, user_agent, details \
                 FROM audit_events \
                 WHERE tenant_id = $1 \
                   AND ($2 IS NULL OR action = $2) \
                   AND ($3 IS NULL OR target_id = $3) \
                   AND ($4 IS NULL OR id < $4) \
                 ORDER BY id DESC LIMIT $5",
            )
            .bind(tenant.as_str())
            .bind(filter.action.map(|a| a.as_str()))
            .bind(filter.key_id.as_ref().map(|k| k.as_str()))
            .bind(filter.before)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(db_err)?
        });
        Ok(rows.into_iter().map(AuditEvent::from).collect())
    }
}
