//! The usage page (`/app/usage`): the tenant's gateway calls and what they were charged, by key,
//! service, tool or day, over a range of days, with a chart of calls and spend per day and a CSV
//! export (`/app/usage.csv`) of the same table.
//!
//! Any member may look (as `GET /v1/usage`); the report is always the viewer's tenant's. People
//! pick whole UTC days and both ends are inclusive: `to=2026-03-31` covers all of the 31st.

pub(super) mod csv;

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use prom_core::access::Role;
use prom_core::time::Timestamp;
use prom_core::usage::{UsageGroup, UsageGrouping, UsageQuery, UsageRow, UsageTotals};
use serde::Deserialize;

use self::csv::Csv;
use super::chart::{DayBar, thousands, usage_chart};
use super::page::{Chrome, Nav, PageError, render, render_status};
use super::viewer::Viewer;
use crate::error::ApiError;
use crate::state::AppState;

/// A day in milliseconds.
pub(super) const DAY_MS: i64 = 86_400_000;
/// The range shown when none is chosen: the last 30 days, today included.
const DEFAULT_DAYS: i64 = 30;
/// The longest range the page reports (one bar a day must stay readable).
const MAX_DAYS: i64 = 366;

pub fn routes() -> Router<AppState> {
    Router::new().route("/usage", get(usage_page)).route("/usage.csv", get(usage_csv))
}

/// The start (00:00 UTC) of the day `at` falls in.
pub(super) fn day_start(at: Timestamp) -> Timestamp {
    Timestamp::from_millis(at.as_millis() - at.as_millis().rem_euclid(DAY_MS))
}

/// Reads a date a person typed (`YYYY-MM-DD`) as the start of that UTC day.
pub(super) fn parse_day(name: &str, raw: &str) -> Result<Timestamp, String> {
    let raw = raw.trim();
    let shaped = raw.len() == 10
        && raw.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    let parsed = if shaped { Timestamp::parse_rfc3339(&format!("{raw}T00:00:00Z")) } else { None };
    parsed.ok_or_else(|| {
        let shown: String = raw.chars().take(40).collect();
        format!("{name} must be a date like 2026-03-01 (year-month-day), not {shown:?}")
    })
}

#[derive(Debug, Default, Deserialize)]
struct UsageParams {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    group: String,
}

/// What the page reports: whole days `from..=to` (as their starts), grouped by `group`.
#[derive(Clone, Copy, Debug)]
struct Range {
    from: Timestamp,
    to: Timestamp,
    group: UsageGrouping,
}

impl Range {
    /// The chosen range; an empty `from` or `to` takes the default (the last 30 days).
    fn parse(params: &UsageParams, now: Timestamp) -> Result<Self, String> {
        let group = match params.group.trim() {
            "" => UsageGrouping::Day,
            raw => UsageGrouping::parse(raw).ok_or_else(|| {
                let shown: String = raw.chars().take(40).collect();
                format!("group must be key, service, tool or day, not {shown:?}")
            })?,
        };
        let to = match params.to.trim() {
            "" => day_start(now),
            raw => parse_day("to", raw)?,
        };
        let from = match params.from.trim() {
            "" => to.plus_millis(-(DEFAULT_DAYS - 1) * DAY_MS),
            raw => parse_day("from", raw)?,
        };
        if from > to {
            return Err("from must be on or before to".into());
        }
        if (to.as_millis() - from.as_millis()) / DAY_MS >= MAX_DAYS {
            return Err(format!("choose a range of at most {MAX_DAYS} days"));
        }
        Ok(Self { from, to, group })
    }

    fn query(self, viewer: &Viewer, group: UsageGrouping) -> UsageQuery {
        UsageQuery {
            tenant_id: viewer.principal.tenant_id().clone(),
            key_id: None,
            service: None,
            from: self.from,
            // People's `to` is inclusive; the report's is exclusive.
            to: self.to.plus_millis(DAY_MS),
            group_by: group,
        }
    }

    /// The range as the form's query string (`from=…&to=…&group=…`).
    fn query_string(self) -> String {
        let pairs = [
            ("from", self.from.date_string()),
            ("to", self.to.date_string()),
            ("group", self.group.as_str().to_owned()),
        ];
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    /// Every day of the range, as `YYYY-MM-DD`.
    fn days(self) -> Vec<String> {
        let mut days = Vec::new();
        let mut day = self.from;
        while day <= self.to {
            days.push(day.date_string());
            day = day.plus_millis(DAY_MS);
        }
        days
    }
}

/// What a row is about, for the table and the export: a name, and a detail (a key's display form).
struct GroupName {
    name: String,
    detail: String,
    id: String,
}

fn group_name(group: &UsageGroup) -> GroupName {
    match group {
        UsageGroup::Key { id, label, display } => {
            GroupName { name: label.to_string(), detail: display.clone(), id: id.to_string() }
        }
        UsageGroup::Service(slug) => GroupName { name: slug.to_string(), detail: String::new(), id: slug.to_string() },
        UsageGroup::Tool(Some(tool)) => GroupName { name: tool.clone(), detail: String::new(), id: tool.clone() },
        UsageGroup::Tool(None) => GroupName {
            name: "(no tool)".into(),
            detail: "initialize, tools/list and other requests that call no tool".into(),
            id: String::new(),
        },
        UsageGroup::Day(day) => GroupName { name: day.clone(), detail: String::new(), id: day.clone() },
    }
}

/// The heading of the table's first column.
fn group_heading(group: UsageGrouping) -> &'static str {
    match group {
        UsageGrouping::Key => "API key",
        UsageGrouping::Service => "Service",
        UsageGrouping::Tool => "Tool",
        UsageGrouping::Day => "Day (UTC)",
    }
}

struct RowView {
    name: String,
    detail: String,
    calls: String,
    ok: String,
    errors: String,
    charged: String,
}

impl RowView {
    fn of(name: GroupName, totals: &UsageTotals) -> Self {
        Self {
            name: name.name,
            detail: name.detail,
            calls: thousands(u128::from(totals.calls)),
            ok: thousands(u128::from(totals.ok())),
            errors: thousands(u128::from(totals.errors())),
            charged: thousands(totals.charged.units()),
        }
    }
}

struct GroupOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

struct Report {
    heading: &'static str,
    rows: Vec<RowView>,
    total: RowView,
    /// Built by [`usage_chart`], which escapes every text it puts in.
    chart: String,
    csv_href: String,
}

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    chrome: Chrome,
    from: String,
    to: String,
    groups: Vec<GroupOption>,
    error: Option<String>,
    report: Option<Report>,
}

fn group_options(chosen: Option<UsageGrouping>) -> Vec<GroupOption> {
    [
        (UsageGrouping::Day, "Day"),
        (UsageGrouping::Key, "API key"),
        (UsageGrouping::Service, "Service"),
        (UsageGrouping::Tool, "Tool"),
    ]
    .into_iter()
    .map(|(group, label)| GroupOption {
        value: group.as_str(),
        label,
        selected: chosen.unwrap_or(UsageGrouping::Day) == group,
    })
    .collect()
}

async fn usage_page(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(params): Query<UsageParams>,
) -> Result<Response, PageError> {
    viewer.principal.require(Role::Member)?;
    let chrome = viewer.chrome(Nav::Usage, "Usage");
    let range = match Range::parse(&params, Timestamp::now()) {
        Ok(range) => range,
        Err(message) => {
            let page = UsagePage {
                chrome,
                from: params.from,
                to: params.to,
                groups: group_options(UsageGrouping::parse(params.group.trim())),
                error: Some(message),
                report: None,
            };
            return Ok(render_status(StatusCode::BAD_REQUEST, &page));
        }
    };
    let by_day = state.store.usage_report(&range.query(&viewer, UsageGrouping::Day)).await?;
    let table = match range.group {
        UsageGrouping::Day => by_day.clone(),
        other => state.store.usage_report(&range.query(&viewer, other)).await?,
    };
    let rows = table.rows.iter().map(|row| RowView::of(group_name(&row.group), &row.totals)).collect();
    let total =
        RowView::of(GroupName { name: "Total".into(), detail: String::new(), id: String::new() }, &table.totals);
    let report = Report {
        heading: group_heading(range.group),
        rows,
        total,
        chart: usage_chart("usage-chart", &day_bars(range, &by_day.rows)),
        csv_href: format!("/app/usage.csv?{}", range.query_string()),
    };
    let page = UsagePage {
        chrome,
        from: range.from.date_string(),
        to: range.to.date_string(),
        groups: group_options(Some(range.group)),
        error: None,
        report: Some(report),
    };
    Ok(render(&page))
}

/// One bar per day of the range, zero on days without usage.
fn day_bars(range: Range, rows: &[UsageRow]) -> Vec<DayBar> {
    range
        .days()
        .into_iter()
        .map(|day| {
            let totals = rows.iter().find(|row| matches!(&row.group, UsageGroup::Day(d) if *d == day));
            DayBar {
                calls: totals.map_or(0, |row| row.totals.calls),
                charged: totals.map_or(prom_core::money::Amount::ZERO, |row| row.totals.charged),
                day,
            }
        })
        .collect()
}

/// `/app/usage.csv`: the page's table, one line per row (no total line, so the file sums cleanly).
async fn usage_csv(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(params): Query<UsageParams>,
) -> Result<Response, PageError> {
    viewer.principal.require(Role::Member)?;
    let range = Range::parse(&params, Timestamp::now()).map_err(ApiError::InvalidRequest)?;
    let report = state.store.usage_report(&range.query(&viewer, range.group)).await?;
    let first: &[&str] = match range.group {
        UsageGrouping::Key => &["key_id", "label", "display"],
        UsageGrouping::Service => &["service"],
        UsageGrouping::Tool => &["tool"],
        UsageGrouping::Day => &["day"],
    };
    let mut header = first.to_vec();
    header.extend(["calls", "ok", "errors", "charged"]);
    let mut csv = Csv::new(&header);
    for row in &report.rows {
        let name = group_name(&row.group);
        let mut fields = match &row.group {
            UsageGroup::Key { .. } => vec![name.id, name.name, name.detail],
            _ => vec![name.id],
        };
        let totals = &row.totals;
        fields.extend([totals.calls.to_string(), totals.ok().to_string(), totals.errors().to_string()]);
        fields.push(totals.charged.to_string());
        csv.row(fields);
    }
    let filename = format!(
        "usage-{}-{}-{}-by-{}.csv",
        viewer.user().session.tenant.slug,
        range.from.date_string(),
        range.to.date_string(),
        range.group.as_str()
    );
    Ok(csv.into_response(&filename))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(from: &str, to: &str, group: &str) -> UsageParams {
        UsageParams { from: from.into(), to: to.into(), group: group.into() }
    }

    #[test]
    fn the_default_range_is_the_last_thirty_days_today_included() {
        let now = Timestamp::parse_rfc3339("2026-03-31T15:04:05Z").expect("a time");
        let range = Range::parse(&params("", "", ""), now).expect("the default range");
        assert_eq!((range.from.date_string(), range.to.date_string()), ("2026-03-02".into(), "2026-03-31".into()));
        assert_eq!(range.group, UsageGrouping::Day);
        assert_eq!(range.days().len(), 30);
        assert_eq!(range.query_string(), "from=2026-03-02&to=2026-03-31&group=day");
    }

    #[test]
    fn dates_are_whole_days_with_to_inclusive() {
        let now = Timestamp::now();
        let range = Range::parse(&params("2026-02-27", "2026-03-01", "key"), now).expect("a range");
        assert_eq!(range.days(), ["2026-02-27", "2026-02-28", "2026-03-01"]);
        assert_eq!(range.group, UsageGrouping::Key);
        let day = |raw: &str| parse_day("d", raw).expect("a date");
        assert_eq!(day_start(Timestamp::parse_rfc3339("2026-03-01T23:59:59.999Z").expect("t")), day("2026-03-01"));
        assert_eq!(day(" 2026-03-01 "), Timestamp::parse_rfc3339("2026-03-01T00:00:00Z").expect("t"));
    }

    #[test]
    fn bad_ranges_are_explained() {
        let now = Timestamp::now();
        let error =
            |from: &str, to: &str, group: &str| Range::parse(&params(from, to, group), now).expect_err("refused");
        assert_eq!(error("2026-3-1", "", ""), "from must be a date like 2026-03-01 (year-month-day), not \"2026-3-1\"");
        assert!(error("", "2026-02-30", "").starts_with("to must be a date"));
        assert!(error("", "2026-01-01T00:00:00Z", "").starts_with("to must be a date"));
        assert_eq!(error("2026-03-02", "2026-03-01", ""), "from must be on or before to");
        assert_eq!(error("2025-01-01", "2026-03-01", ""), "choose a range of at most 366 days");
        assert!(error("", "", "week").starts_with("group must be key, service, tool or day"));
    }
}
