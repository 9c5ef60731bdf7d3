//! Services: register, look up, list, change and remove the paid MCP services of the App Store.
//!
//! As with keys, every change is a conditional statement scoped by `tenant_id` inside a transaction
//! with its audit row, so a service of another tenant is "not found" whatever slug is passed.
//! Deleted services keep their row (`deleted_at`) so their audit history keeps its name; the
//! unique index covers live rows only, so a deleted service's slug can be registered again.

use async_trait::async_trait;
use prom_core::audit::{AuditAction, AuditContext, AuditTarget, NewAuditEvent};
use prom_core::id::TenantId;
use prom_core::service::{Prices, ServiceRecord, ServiceSlug, Upstream};
use prom_core::store::{NewService, ServicePatch, ServiceStore, StoreError, StoreResult};
use prom_core::time::Timestamp;
use serde_json::json;

use crate::audit::insert_audit;
use crate::rows::{SERVICE_COLUMNS, ServiceRow};
use crate::{SqlStore, db_err, with_read, with_write};

/// Reads one live service of a tenant with any executor.
macro_rules! select_tenant_service {
    ($executor:expr, $tenant:expr, $slug:expr) => {{
        let row: Option<ServiceRow> = sqlx::query_as(&format!(
            "SELECT {SERVICE_COLUMNS} FROM services WHERE tenant_id = $1 AND slug = $2 AND deleted_at IS NULL"
        ))
        .bind($tenant.as_str())
        .bind($slug.as_str())
        .fetch_optional($executor)
        .await
        .map_err(db_err)?;
        row.map(ServiceRecord::try_from).transpose()
    }};
}

fn upstream_json(upstream: &Upstream) -> StoreResult<String> {
    serde_json::to_string(upstream).map_err(|err| StoreError::Backend(Box::new(err)))
}

fn prices_json(prices: &Prices) -> StoreResult<String> {
    serde_json::to_string(prices).map_err(|err| StoreError::Backend(Box::new(err)))
}

/// What the audit log says about an upstream: its kind only. URLs and stdio environments may carry
/// credentials, and the audit log is exported and shown to every member of the tenant.
fn upstream_kind(upstream: &Upstream) -> &'static str {
    match upstream {
        Upstream::Http { .. } => "http",
        Upstream::Stdio { .. } => "stdio",
    }
}

fn service_event(
    action: AuditAction,
    service: &ServiceRecord,
    at: Timestamp,
    ctx: &AuditContext,
    details: serde_json::Value,
) -> NewAuditEvent {
    NewAuditEvent {
        at,
        tenant_id: Some(service.tenant_id.clone()),
        action,
        context: ctx.clone(),
        target: Some(AuditTarget::service(service.slug.as_str(), &service.name)),
        details,
    }
}

/// The fields an update changes, as the audit log names them.
fn changed_fields(before: &ServiceRecord, after: &ServiceRecord) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if before.name != after.name {
        changed.push("name");
    }
    if before.description != after.description {
        changed.push("description");
    }
    if before.upstream != after.upstream {
        changed.push("upstream");
    }
    if before.prices != after.prices {
        changed.push("prices");
    }
    if before.charge_tool_errors != after.charge_tool_errors {
        changed.push("charge_tool_errors");
    }
    changed
}

#[async_trait]
impl ServiceStore for SqlStore {
    async fn create_service(&self, service: NewService, ctx: &AuditContext) -> StoreResult<ServiceRecord> {
        let record = ServiceRecord {
            id: service.id,
            tenant_id: service.tenant_id,
            slug: service.slug,
            name: service.name,
            description: service.description,
            upstream: service.upstream,
            prices: service.prices,
            charge_tool_errors: service.charge_tool_errors,
            created_at: service.created_at,
            updated_at: service.created_at,
        };
        let upstream = upstream_json(&record.upstream)?;
        let prices = prices_json(&record.prices)?;
        // What the embedded database's charge journal holds must be in the budgets before they
        // are read.
        self.fold_journal().await?;
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            // A slug whose earlier service is still owed money (held or unsettled, or a batch on
            // its way to the ledger) is not given to anybody: settlement pays the slug's latest
            // publisher, who must be the one that served those calls.
            let owed: i64 = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM budgets WHERE service = $1 AND (held <> '0' OR unsettled <> '0')) \
                      + (SELECT COUNT(*) FROM settlements WHERE service = $1 AND state = 'pending')",
            )
            .bind(record.slug.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            if owed > 0 {
                return Err(StoreError::Conflict(format!(
                    "the slug {} belonged to a deleted service whose calls are not all settled yet; it is free \
                     once they are (within a few settlement rounds), or choose another slug",
                    record.slug
                )));
            }
            // Nothing is owed: allowances given to an earlier service of the slug end here, so a
            // new publisher inherits none (every consumer approves again).
            sqlx::query(
                "UPDATE budgets SET approved = settled, expires_at = NULL, ceiling = NULL, ledger_cap = '0' \
                 WHERE service = $1",
            )
            .bind(record.slug.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query(
                "INSERT INTO services \
                 (id, tenant_id, slug, name, description, upstream, prices, charge_tool_errors, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            )
            .bind(record.id.as_str())
            .bind(record.tenant_id.as_str())
            .bind(record.slug.as_str())
            .bind(&record.name)
            .bind(&record.description)
            .bind(&upstream)
            .bind(&prices)
            .bind(record.charge_tool_errors)
            .bind(record.created_at.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(|err| match db_err(err) {
                // The id is fresh, so the only unique value that can collide is the live slug.
                StoreError::Conflict(_) => StoreError::Conflict(format!(
                    "the slug {} is taken; choose another one",
                    record.slug
                )),
                other => other,
            })?;
            let event = service_event(
                AuditAction::ServiceCreate,
                &record,
                record.created_at,
                ctx,
                json!({
                    "upstream": upstream_kind(&record.upstream),
                    "prices": record.prices,
                    "charge_tool_errors": record.charge_tool_errors,
                }),
            );
            insert_audit!(&mut *tx, &event)?;
            tx.commit().await.map_err(db_err)?;
        });
        Ok(record)
    }

    async fn service_publisher(&self, slug: &ServiceSlug) -> StoreResult<Option<TenantId>> {
        let publisher: Option<String> = with_read!(self, pool => {
            sqlx::query_scalar("SELECT tenant_id FROM services WHERE slug = $1 ORDER BY created_at DESC, id DESC LIMIT 1")
                .bind(slug.as_str())
                .fetch_optional(pool)
                .await
                .map_err(db_err)?
        });
        Ok(publisher.map(TenantId::from_trusted))
    }

    async fn get_service(&self, slug: &ServiceSlug) -> StoreResult<Option<ServiceRecord>> {
        let row: Option<ServiceRow> = with_read!(self, pool => {
            sqlx::query_as(&format!("SELECT {SERVICE_COLUMNS} FROM services WHERE slug = $1 AND deleted_at IS NULL"))
                .bind(slug.as_str())
                .fetch_optional(pool)
                .await
                .map_err(db_err)?
        });
        row.map(ServiceRecord::try_from).transpose()
    }

    async fn list_services(&self) -> StoreResult<Vec<ServiceRecord>> {
        let rows: Vec<ServiceRow> = with_read!(self, pool => {
            sqlx::query_as(&format!("SELECT {SERVICE_COLUMNS} FROM services WHERE deleted_at IS NULL ORDER BY slug"))
                .fetch_all(pool)
                .await
                .map_err(db_err)?
        });
        rows.into_iter().map(ServiceRecord::try_from).collect()
    }

    async fn update_service(
        &self,
        tenant: &TenantId,
        slug: &ServiceSlug,
        patch: ServicePatch,
        at: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<ServiceRecord> {
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            // Take the write lock first (PostgreSQL: a row lock, taken by any UPDATE; SQLite: the
            // single writer), so the "before" read below is what this update replaces.
            let locked = sqlx::query(
                "UPDATE services SET updated_at = updated_at WHERE tenant_id = $1 AND slug = $2 AND deleted_at IS NULL",
            )
            .bind(tenant.as_str())
            .bind(slug.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if locked.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            let before = select_tenant_service!(&mut *tx, tenant, slug)?.ok_or(StoreError::NotFound)?;
            let after = ServiceRecord {
                name: patch.name.unwrap_or_else(|| before.name.clone()),
                description: patch.description.unwrap_or_else(|| before.description.clone()),
                upstream: patch.upstream.unwrap_or_else(|| before.upstream.clone()),
                prices: patch.prices.unwrap_or_else(|| before.prices.clone()),
                charge_tool_errors: patch.charge_tool_errors.unwrap_or(before.charge_tool_errors),
                updated_at: at,
                ..before.clone()
            };
            let changed = changed_fields(&before, &after);
            if changed.is_empty() {
                // Like revoking a revoked key: a patch that changes nothing writes nothing.
                tx.rollback().await.map_err(db_err)?;
                return Ok(before);
            }
            sqlx::query(
                "UPDATE services SET name = $1, description = $2, upstream = $3, prices = $4, \
                 charge_tool_errors = $5, updated_at = $6 WHERE id = $7",
            )
            .bind(&after.name)
            .bind(&after.description)
            .bind(upstream_json(&after.upstream)?)
            .bind(prices_json(&after.prices)?)
            .bind(after.charge_tool_errors)
            .bind(at.as_millis())
            .bind(after.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let mut details = json!({ "changed": changed, "upstream": upstream_kind(&after.upstream) });
            if before.prices != after.prices {
                // A price change changes what agents pay: the log keeps both sides of it.
                details["prices"] = json!({ "before": before.prices, "after": after.prices });
            }
            if before.charge_tool_errors != after.charge_tool_errors {
                // So does charging tool errors or not.
                details["charge_tool_errors"] =
                    json!({ "before": before.charge_tool_errors, "after": after.charge_tool_errors });
            }
            let event = service_event(AuditAction::ServiceUpdate, &after, at, ctx, details);
            insert_audit!(&mut *tx, &event)?;
            if before.prices != after.prices {
                // Every tenant with an allowance for the service learns of it in its own log
                // (named by the publishing tenant, not by who in it made the change).
                let consumers: Vec<String> =
                    sqlx::query_scalar("SELECT tenant_id FROM budgets WHERE service = $1 AND tenant_id <> $2")
                        .bind(after.slug.as_str())
                        .bind(after.tenant_id.as_str())
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db_err)?;
                let publisher = AuditContext {
                    actor: prom_core::audit::Actor::Publisher { tenant: after.tenant_id.clone() },
                    ip: None,
                    user_agent: None,
                };
                for consumer in consumers {
                    let mut event = service_event(
                        AuditAction::ServicePriceChange,
                        &after,
                        at,
                        &publisher,
                        json!({ "before": before.prices, "after": after.prices }),
                    );
                    event.tenant_id = Some(TenantId::from_trusted(consumer));
                    insert_audit!(&mut *tx, &event)?;
                }
            }
            tx.commit().await.map_err(db_err)?;
            Ok(after)
        })
    }

    async fn delete_service(
        &self,
        tenant: &TenantId,
        slug: &ServiceSlug,
        at: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<ServiceRecord> {
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            let record = select_tenant_service!(&mut *tx, tenant, slug)?.ok_or(StoreError::NotFound)?;
            let updated = sqlx::query("UPDATE services SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL")
                .bind(at.as_millis())
                .bind(record.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            // Nothing new may be held on its allowances; what is held and unsettled stays owed
            // (and is settled to this publisher).
            sqlx::query("UPDATE budgets SET ledger_cap = '0', ceiling = NULL WHERE service = $1")
                .bind(slug.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let event = service_event(
                AuditAction::ServiceDelete,
                &record,
                at,
                ctx,
                json!({ "upstream": upstream_kind(&record.upstream), "prices": record.prices }),
            );
            insert_audit!(&mut *tx, &event)?;
            tx.commit().await.map_err(db_err)?;
            Ok(record)
        })
    }
}
