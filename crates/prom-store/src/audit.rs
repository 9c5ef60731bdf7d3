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

/// The columns of a listed event.
const AUDIT_COLUMNS: &str = "id, at, tenant_id, action, actor_kind, actor_id, actor_name, target_kind, target_id, \
     target_label, ip, user_agent, details";

/// A value bound to a listing's query.
enum Arg<'a> {
    Text(&'a str),
    Int(i64),
}

/// The SQL of a listing and its arguments, numbered as they are added.
#[derive(Default)]
struct Listing<'a> {
    args: Vec<Arg<'a>>,
}

impl<'a> Listing<'a> {
    /// Adds an argument; returns its placeholder.
    fn arg(&mut self, arg: Arg<'a>) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    /// The query listing `tenant`'s events that match `filter`, newest first. Only the filters
    /// given appear in it, so each query has a plan of its own that reads one index of migration
    /// 0019 backwards from its start and stops after `limit` rows: the tenant's events by time,
    /// or those of one action, actor (an id and a name: two index scans, merged) or target.
    fn sql(&mut self, tenant: &'a str, filter: &'a AuditFilter, limit: i64) -> String {
        let mut conditions = vec![format!("tenant_id = {}", self.arg(Arg::Text(tenant)))];
        if let Some(action) = filter.action {
            conditions.push(format!("action = {}", self.arg(Arg::Text(action.as_str()))));
        }
        if let Some(key) = &filter.key_id {
            conditions.push(format!("target_id = {}", self.arg(Arg::Text(key.as_str()))));
        }
        if let Some(from) = filter.from {
            conditions.push(format!("at >= {}", self.arg(Arg::Int(from.as_millis()))));
        }
        if let Some(to) = filter.to {
            conditions.push(format!("at < {}", self.arg(Arg::Int(to.as_millis()))));
        }
        if let Some(before) = filter.before {
            // After the event `before` in the listing's order, (at, id). An id that is not one of
            // the tenant's events stands for the end of time: paging from it starts at the newest.
            let before = self.arg(Arg::Int(before));
            conditions.push(format!(
                "(at, id) < (COALESCE((SELECT b.at FROM audit_events AS b WHERE b.id = {before} AND b.tenant_id = $1), \
                 {}), {before})",
                i64::MAX
            ));
        }
        let limit = self.arg(Arg::Int(limit));
        let conditions = conditions.join(" AND ");
        let select = |extra: &str| {
            format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE {conditions}{extra} ORDER BY at DESC, id DESC LIMIT {limit}"
            )
        };
        match &filter.actor {
            None => select(""),
            Some(actor) => {
                let actor = self.arg(Arg::Text(actor));
                format!(
                    "SELECT {AUDIT_COLUMNS} FROM (SELECT * FROM ({}) AS by_id UNION SELECT * FROM ({}) AS by_name) AS matched \
                     ORDER BY at DESC, id DESC LIMIT {limit}",
                    select(&format!(" AND actor_id = {actor}")),
                    select(&format!(" AND actor_name = {actor}")),
                )
            }
        }
    }
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn record_audit(&self, event: NewAuditEvent) -> StoreResult<()> {
        with_write!(self, pool => insert_audit!(pool, &event).map(drop))?;
        Ok(())
    }

    async fn list_audit(&self, tenant: &TenantId, filter: &AuditFilter) -> StoreResult<Vec<AuditEvent>> {
        let limit = i64::from(filter.limit.clamp(1, MAX_AUDIT_PAGE));
        let mut listing = Listing::default();
        let sql = listing.sql(tenant.as_str(), filter, limit);
        let rows: Vec<AuditRow> = with_read!(self, pool => {
            let mut query = sqlx::query_as(&sql);
            for arg in &listing.args {
                query = match arg {
                    Arg::Text(text) => query.bind(*text),
                    Arg::Int(int) => query.bind(*int),
                };
            }
            query.fetch_all(pool).await.map_err(db_err)?
        });
        Ok(rows.into_iter().map(AuditEvent::from).collect())
    }
}
