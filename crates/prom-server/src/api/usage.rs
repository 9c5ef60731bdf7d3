//! `GET /v1/usage`: what the tenant's agents did through the gateway and what it cost — requests
//! (by outcome) and captured charges, in total and by key, tool, service or UTC day. Any member may look;
//! the report only ever covers the caller's tenant, so another tenant's key id or service simply
//! matches nothing.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use prom_core::access::Role;
use prom_core::id::KeyId;
use prom_core::service::ServiceSlug;
use prom_core::time::Timestamp;
use prom_core::usage::{UsageGroup, UsageGrouping, UsageQuery, UsageRow, UsageTotals};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiQuery;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The range a report covers when the query names none.
const DEFAULT_RANGE_DAYS: u64 = 30;

/// The schema of `group_by`: how a usage report is grouped, or empty for the default, `day`.
/// Made from [`UsageGrouping::ALL`], so it names every grouping the server accepts.
#[derive(Debug)]
pub struct GroupBy;

impl utoipa::PartialSchema for GroupBy {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let names = std::iter::once("").chain(UsageGrouping::ALL.iter().map(|grouping| grouping.as_str()));
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names)).into()
    }
}

impl ToSchema for GroupBy {}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// Only this key's usage.
    #[param(pattern = r"^$|^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub key_id: Option<String>,
    /// Only this service's usage (its slug).
    #[param(pattern = r"^$|^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$")]
    pub service: Option<String>,
    /// Start of the range, inclusive (RFC 3339); default: 30 days before `to`. A start at or
    /// after `to` makes the range (and the report) empty.
    #[param(
        pattern = r"^$|^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
    )]
    pub from: Option<String>,
    /// End of the range, exclusive (RFC 3339); default: now.
    #[param(
        pattern = r"^$|^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
    )]
    pub to: Option<String>,
    /// `key`, `tool`, `service` or `day` (UTC); default `day`.
    #[param(value_type = Option<GroupBy>)]
    pub group_by: Option<String>,
}

/// A usage report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    pub from: String,
    pub to: String,
    pub group_by: String,
    /// Gateway requests in the range.
    pub calls: u64,
    /// Requests with outcome `ok`.
    pub ok: u64,
    /// Requests with any other outcome (tool and upstream errors, refusals, unfinished).
    pub errors: u64,
    /// The sum of captured and settled charges (a decimal string in the token's smallest unit).
    pub charged: String,
    /// One row per key, tool, service or day that has requests or charges: days in calendar
    /// order, keys, tools and services busiest first.
    pub rows: Vec<UsageRowView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageRowView {
    #[serde(flatten)]
    pub group: UsageGroupView,
    pub calls: u64,
    pub ok: u64,
    pub errors: u64,
    /// Requests by outcome: `ok`, `tool_error`, `rpc_error`, `upstream_error`, `incomplete`,
    /// `allowance_exceeded`.
    pub outcomes: BTreeMap<String, u64>,
    pub charged: String,
}

/// What a row is about, by `group_by`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum UsageGroupView {
    /// `group_by=key` (deleted keys included).
    Key { key_id: String, label: String, display: String },
    /// `group_by=service`: the service's slug.
    Service { service: String },
    /// `group_by=tool`; `tool` is null for requests that call no tool (`initialize`, `tools/list`, …).
    Tool { tool: Option<String> },
    /// `group_by=day`: `YYYY-MM-DD`, UTC.
    Day { day: String },
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidRequest(message.into())
}

/// A parameter's value, treating `name=` like an absent parameter.
fn given(raw: &Option<String>) -> Option<&str> {
    raw.as_deref().filter(|value| !value.is_empty())
}

fn time(name: &str, raw: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse_rfc3339(raw).ok_or_else(|| {
        invalid(format!("{name} must be an RFC 3339 time like 2026-11-01T00:00:00Z (in a URL, write + as %2B)"))
    })
}

impl UsageParams {
    fn into_query(self, principal: &Principal, now: Timestamp) -> Result<UsageQuery, ApiError> {
        let group_by = match given(&self.group_by) {
            None => UsageGrouping::Day,
            Some(raw) => UsageGrouping::parse(raw).ok_or_else(|| {
                invalid(format!("group_by must be key, tool, service or day (UTC days), not {:?}", shorten(raw)))
            })?,
        };
        let key_id = given(&self.key_id)
            .map(|raw| {
                KeyId::parse(raw).ok_or_else(|| invalid("key_id is not a key id (a UUID); list keys with GET /v1/keys"))
            })
            .transpose()?;
        let service = given(&self.service)
            .map(|raw| {
                ServiceSlug::parse(raw).map_err(|_| {
                    invalid("service is not a service slug (like demo); list services with GET /v1/services")
                })
            })
            .transpose()?;
        let to = given(&self.to).map(|raw| time("to", raw)).transpose()?.unwrap_or(now);
        let from = match given(&self.from) {
            Some(raw) => time("from", raw)?,
            None => Timestamp::from_millis(to.as_millis().saturating_sub(days_ms(DEFAULT_RANGE_DAYS))),
        };
        // The range is from ≤ t < to: with from at or after to it is empty (and the report says so
        // by its from and to), not an error.
        let from = from.min(to);
        Ok(UsageQuery { tenant_id: principal.tenant_id().clone(), key_id, service, from, to, group_by })
    }
}

fn days_ms(days: u64) -> i64 {
    i64::try_from(days).unwrap_or(0).saturating_mul(86_400_000)
}

/// At most 40 characters of something the caller sent, for an error message.
fn shorten(raw: &str) -> String {
    raw.chars().take(40).collect()
}

impl UsageRowView {
    fn of(row: &UsageRow) -> Self {
        let group = match &row.group {
            UsageGroup::Key { id, label, display } => {
                UsageGroupView::Key { key_id: id.to_string(), label: label.to_string(), display: display.clone() }
            }
            UsageGroup::Tool(tool) => UsageGroupView::Tool { tool: tool.clone() },
            UsageGroup::Day(day) => UsageGroupView::Day { day: day.clone() },
            UsageGroup::Service(service) => UsageGroupView::Service { service: service.to_string() },
        };
        let totals = &row.totals;
        Self {
            group,
            calls: totals.calls,
            ok: totals.ok(),
            errors: totals.errors(),
            outcomes: totals.outcomes.clone(),
            charged: totals.charged.to_string(),
        }
    }
}

fn report_view(query: &UsageQuery, totals: &UsageTotals, rows: &[UsageRow]) -> UsageView {
    UsageView {
        from: query.from.to_string(),
        to: query.to.to_string(),
        group_by: query.group_by.as_str().to_owned(),
        calls: totals.calls,
        ok: totals.ok(),
        errors: totals.errors(),
        charged: totals.charged.to_string(),
        rows: rows.iter().map(UsageRowView::of).collect(),
    }
}

/// The tenant's gateway usage and charges, grouped by key, tool, service or day.
#[utoipa::path(get, path = "/v1/usage", security(("session" = [])), params(UsageParams), responses(
    (status = 200, body = UsageView),
    (status = 400, body = ErrorBody, description = "INVALID_REQUEST: a malformed or unknown parameter, or from not before to"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: an API key cannot read usage; sign in"),
))]
pub async fn get_usage(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<UsageParams>,
) -> Result<Json<UsageView>, ApiError> {
    principal.require(Role::Member)?;
    let query = params.into_query(&principal, Timestamp::now())?;
    let report = state.store.usage_report(&query).await?;
    Ok(Json(report_view(&query, &report.totals, &report.rows)))
}
