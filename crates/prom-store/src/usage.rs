//! Usage events from the gateway, written in batches with the `api_key.use` rows derived from them.

use async_trait::async_trait;
use prom_core::audit::NewAuditEvent;
use prom_core::store::{StoreResult, UsageStore};
use prom_core::usage::UsageEvent;

use crate::audit::insert_audit;
use crate::{SqlStore, db_err, with_write};

/// Events per INSERT statement (10 parameters each; well under both databases' limits).
const ROWS_PER_INSERT: usize = 100;

#[async_trait]
impl UsageStore for SqlStore {
    async fn record_usage(&self, events: &[UsageEvent], audit: &[NewAuditEvent]) -> StoreResult<()> {
        if events.is_empty() && audit.is_empty() {
            return Ok(());
        }
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            // Multi-row inserts: one statement per chunk instead of one per event.
            for chunk in events.chunks(ROWS_PER_INSERT) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO usage_events (at, tenant_id, key_id, service, method, tool, outcome, latency_us, \
                     request_bytes, response_bytes) ",
                );
                insert.push_values(chunk, |mut row, event| {
                    row.push_bind(event.at.as_millis())
                        .push_bind(event.tenant_id.as_str())
                        .push_bind(event.key_id.as_str())
                        .push_bind(event.service.as_str())
                        .push_bind(event.method.as_str())
                        .push_bind(event.tool.as_deref())
                        .push_bind(event.outcome.as_str())
                        .push_bind(event.latency_us)
                        .push_bind(event.request_bytes)
                        .push_bind(event.response_bytes);
                });
                insert.build().execute(&mut *tx).await.map_err(db_err)?;
            }
            for row in audit {
                insert_audit!(&mut *tx, row)?;
            }
            tx.commit().await.map_err(db_err)
        })
    }
}
