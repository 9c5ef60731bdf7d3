//! Usage events from the gateway, written in batches with the `api_key.use` rows derived from them.

use async_trait::async_trait;
use prom_core::audit::NewAuditEvent;
use prom_core::store::{StoreResult, UsageStore};
use prom_core::usage::UsageEvent;

use crate::audit::insert_audit;
use crate::{SqlStore, db_err, with_write};

#[async_trait]
impl UsageStore for SqlStore {
    async fn record_usage(&self, events: &[UsageEvent], audit: &[NewAuditEvent]) -> StoreResult<()> {
        if events.is_empty() && audit.is_empty() {
            return Ok(());
        }
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            for event in events {
                sqlx::query(
                    "INSERT INTO usage_events (at, tenant_id, key_id, service, method, tool, outcome, latency_us, \
                     request_bytes, response_bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(event.at.as_millis())
                .bind(event.tenant_id.as_str())
                .bind(event.key_id.as_str())
                .bind(event.service.as_str())
                .bind(&event.method)
                .bind(event.tool.as_deref())
                .bind(&event.outcome)
                .bind(event.latency_us)
                .bind(event.request_bytes)
                .bind(event.response_bytes)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            for row in audit {
                insert_audit!(&mut *tx, row)?;
            }
            tx.commit().await.map_err(db_err)
        })
    }
}
