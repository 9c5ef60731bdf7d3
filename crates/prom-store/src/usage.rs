//! Usage events from the gateway, written in batches with the `api_key.use` rows derived from them,
//! and read back as usage reports.
//!
//! A report is two grouped reads — requests from `usage_events` by (group, outcome), money from
//! `charges` by (group, amount) — merged in Rust. Amounts are decimal text (a `u128` fits no SQL
//! integer), so the database only counts how many charges of each amount a group has and the sum
//! is computed here, exactly; a tool's price rarely changes, so that is a handful of rows per group.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use prom_core::audit::NewAuditEvent;
use prom_core::id::KeyId;
use prom_core::key::{Environment, display_form};
use prom_core::money::Amount;
use prom_core::service::ServiceSlug;
use prom_core::store::{StoreError, StoreResult, UsageStore};
use prom_core::time::Timestamp;
use prom_core::usage::{UsageEvent, UsageGroup, UsageGrouping, UsageQuery, UsageReport, UsageRow, UsageTotals};
use prom_core::user::Label;

use crate::audit::insert_audit;
use crate::{SqlStore, db_err, with_read, with_write};

/// Events per INSERT statement (10 parameters each; well under both databases' limits).
const ROWS_PER_INSERT: usize = 100;

pub(crate) const DAY_MS: i64 = 86_400_000;

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

    async fn usage_report(&self, query: &UsageQuery) -> StoreResult<UsageReport> {
        self.fold_journal().await?;
        let events_sql = format!(
            "SELECT {group} AS grp, outcome, COUNT(*) AS n FROM usage_events WHERE {filter} GROUP BY {group}, outcome",
            group = group_expr(query.group_by, "at"),
            filter = filter(query, "at"),
        );
        let charges_sql = format!(
            "SELECT {group} AS grp, amount, COUNT(*) AS n FROM charges \
             WHERE {filter} AND state IN ('captured', 'settled') GROUP BY {group}, amount",
            group = group_expr(query.group_by, "created_at"),
            filter = filter(query, "created_at"),
        );
        let (events, charges): (Vec<EventCount>, Vec<ChargeCount>) = with_read!(self, pool => {
            let mut events = sqlx::query_as(&events_sql)
                .bind(query.tenant_id.as_str())
                .bind(query.from.as_millis())
                .bind(query.to.as_millis());
            let mut charges = sqlx::query_as(&charges_sql)
                .bind(query.tenant_id.as_str())
                .bind(query.from.as_millis())
                .bind(query.to.as_millis());
            if let Some(key) = &query.key_id {
                events = events.bind(key.as_str());
                charges = charges.bind(key.as_str());
            }
            if let Some(service) = &query.service {
                events = events.bind(service.as_str());
                charges = charges.bind(service.as_str());
            }
            (
                events.fetch_all(pool).await.map_err(db_err)?,
                charges.fetch_all(pool).await.map_err(db_err)?,
            )
        });

        let mut groups: BTreeMap<Option<String>, UsageTotals> = BTreeMap::new();
        for row in events {
            groups.entry(row.grp).or_default().count(&row.outcome, count(row.n)?);
        }
        for row in charges {
            let amount: Amount =
                row.amount.parse().map_err(|_| corrupt(format!("stored amount {:?} is not a decimal", row.amount)))?;
            let sum = amount
                .units()
                .checked_mul(u128::from(count(row.n)?))
                .map(Amount::new)
                .ok_or_else(|| corrupt("a usage report's charged sum overflowed".into()))?;
            let totals = groups.entry(row.grp).or_default();
            totals.charged = totals
                .charged
                .checked_add(sum)
                .ok_or_else(|| corrupt("a usage report's charged sum overflowed".into()))?;
        }

        let mut report = UsageReport::default();
        for totals in groups.values() {
            report.totals.absorb(totals).ok_or_else(|| corrupt("a usage report's charged sum overflowed".into()))?;
        }
        let keys = match query.group_by {
            UsageGrouping::Key => self.key_names(query).await?,
            UsageGrouping::Tool | UsageGrouping::Day | UsageGrouping::Service => HashMap::new(),
        };
        for (grp, totals) in groups {
            let group = match query.group_by {
                UsageGrouping::Tool => UsageGroup::Tool(grp),
                UsageGrouping::Day => UsageGroup::Day(day(grp.as_deref())?),
                UsageGrouping::Service => UsageGroup::Service(ServiceSlug::from_trusted(
                    grp.ok_or_else(|| corrupt("a usage row has no service".into()))?,
                )),
                UsageGrouping::Key => {
                    let id = grp.ok_or_else(|| corrupt("a usage row has no key".into()))?;
                    let (label, display) = keys
                        .get(&id)
                        .cloned()
                        .ok_or_else(|| corrupt(format!("usage of key {id}, which is not a key of the tenant")))?;
                    UsageGroup::Key { id: KeyId::from_trusted(id), label, display }
                }
            };
            report.rows.push(UsageRow { group, totals });
        }
        // Days in calendar order (the map's order already); keys, tools and services busiest first.
        if query.group_by != UsageGrouping::Day {
            report.rows.sort_by_key(|row| std::cmp::Reverse(row.totals.calls));
        }
        Ok(report)
    }
}

impl SqlStore {
    /// Label and display form of every key of the query's tenant, deleted ones included, and of
    /// OAuth grants' credential rows (`kind = 'grant'`): those are labelled with the client's name,
    /// so usage by an agent signed in with OAuth is named after its client.
    async fn key_names(&self, query: &UsageQuery) -> StoreResult<HashMap<String, (Label, String)>> {
        let rows: Vec<KeyName> = with_read!(self, pool => {
            sqlx::query_as("SELECT id, label, environment, last4 FROM api_keys WHERE tenant_id = $1")
                .bind(query.tenant_id.as_str())
                .fetch_all(pool)
                .await
                .map_err(db_err)?
        });
        rows.into_iter()
            .map(|row| {
                let environment: Environment = row
                    .environment
                    .parse()
                    .map_err(|_| corrupt(format!("key {} has environment {:?}", row.id, row.environment)))?;
                Ok((row.id, (Label::from_trusted(row.label), display_form(environment, &row.last4))))
            })
            .collect()
    }
}

#[derive(sqlx::FromRow)]
struct EventCount {
    grp: Option<String>,
    outcome: String,
    n: i64,
}

#[derive(sqlx::FromRow)]
struct ChargeCount {
    grp: Option<String>,
    amount: String,
    n: i64,
}

#[derive(sqlx::FromRow)]
struct KeyName {
    id: String,
    label: String,
    environment: String,
    last4: String,
}

/// The SQL expression a report groups by. Days are whole days since the epoch, as text so that
/// every grouping decodes the same way (integer division of two integers on both databases).
fn group_expr(grouping: UsageGrouping, time_column: &str) -> String {
    match grouping {
        UsageGrouping::Key => "key_id".to_owned(),
        UsageGrouping::Tool => "tool".to_owned(),
        UsageGrouping::Service => "service".to_owned(),
        UsageGrouping::Day => format!("CAST({time_column} / {DAY_MS} AS TEXT)"),
    }
}

/// The WHERE clause of a report: `$1` tenant, `$2`/`$3` the time range, then the optional key and
/// service, numbered in that order (the binds follow the same order).
fn filter(query: &UsageQuery, time_column: &str) -> String {
    let mut clause = format!("tenant_id = $1 AND {time_column} >= $2 AND {time_column} < $3");
    let mut next = 4;
    if query.key_id.is_some() {
        clause.push_str(&format!(" AND key_id = ${next}"));
        next += 1;
    }
    if query.service.is_some() {
        clause.push_str(&format!(" AND service = ${next}"));
    }
    clause
}

fn corrupt(message: String) -> StoreError {
    StoreError::Corrupt(message)
}

fn count(n: i64) -> StoreResult<u64> {
    u64::try_from(n).map_err(|_| corrupt(format!("a negative count ({n})")))
}

/// `YYYY-MM-DD` of a day number (days since the epoch, as text).
pub(crate) fn day(raw: Option<&str>) -> StoreResult<String> {
    let days: i64 = raw
        .and_then(|raw| raw.parse().ok())
        .ok_or_else(|| corrupt(format!("a usage row's day {raw:?} is not a number")))?;
    Ok(Timestamp::from_millis(days.saturating_mul(DAY_MS)).date_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_calendar_dates() {
        assert_eq!(day(Some("0")).ok(), Some("1970-01-01".to_owned()));
        assert_eq!(day(Some("20415")).ok(), Some("2025-11-23".to_owned()));
        assert!(day(Some("x")).is_err());
        assert!(day(None).is_err());
    }
}
