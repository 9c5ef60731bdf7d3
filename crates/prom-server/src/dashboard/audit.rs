//! The audit log page (`/app/audit`): the tenant's events newest first, filtered by action, key,
//! actor and days, fifty a page with an "Older" link (the `before` cursor); and its exports,
//! `/app/audit.csv` and `/app/audit.json` (the events of `GET /v1/audit`), with the same filters.
//!
//! Any member may read the log, as with `GET /v1/audit`; it is always the viewer's tenant's.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use prom_core::access::Role;
use prom_core::audit::{AuditAction, AuditEvent, AuditFilter, MAX_AUDIT_PAGE};
use prom_core::id::{KeyId, TenantId};
use prom_core::time::Timestamp;
use serde::Deserialize;

use super::page::{Chrome, Nav, PageError, render, render_status};
use super::usage::csv::{Csv, attachment};
use super::usage::{DAY_MS, parse_day};
use super::viewer::Viewer;
use crate::api::views::AuditEventView;
use crate::error::ApiError;
use crate::state::AppState;

/// Events on a page.
const PAGE: u32 = 50;
/// Most events an export holds.
const EXPORT_CAP: usize = 100_000;
/// Cells show this many characters of a long value; the rest is in the cell's `title`.
const CELL_CHARS: usize = 48;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit", get(audit_page))
        .route("/audit.csv", get(audit_csv))
        .route("/audit.json", get(audit_json))
}

#[derive(Debug, Default, Deserialize)]
struct AuditParams {
    #[serde(default)]
    action: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    before: String,
}

/// The filters, checked.
#[derive(Debug, Default)]
struct Filters {
    action: Option<AuditAction>,
    key_id: Option<KeyId>,
    actor: Option<String>,
    from: Option<Timestamp>,
    /// The start of the day after the chosen `to` (people's `to` is inclusive).
    to: Option<Timestamp>,
}

fn given(raw: &str) -> Option<&str> {
    Some(raw.trim()).filter(|value| !value.is_empty())
}

impl Filters {
    fn parse(params: &AuditParams) -> Result<Self, String> {
        let action = given(&params.action)
            .map(|raw| {
                AuditAction::parse(raw).ok_or_else(|| {
                    let shown: String = raw.chars().take(40).collect();
                    format!("there is no action {shown:?}; pick one from the list")
                })
            })
            .transpose()?;
        let key_id = given(&params.key)
            .map(|raw| {
                KeyId::parse(raw).ok_or_else(|| "key must be a key id (a UUID, as on the API keys page)".to_owned())
            })
            .transpose()?;
        let from = given(&params.from).map(|raw| parse_day("from", raw)).transpose()?;
        let to = given(&params.to).map(|raw| parse_day("to", raw)).transpose()?;
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err("from must be on or before to".into());
        }
        let actor = given(&params.actor).map(|raw| raw.chars().take(320).collect());
        Ok(Self { action, key_id, actor, from, to: to.map(|day| day.plus_millis(DAY_MS)) })
    }

    fn store_filter(&self, before: Option<i64>, limit: u32) -> AuditFilter {
        AuditFilter {
            action: self.action,
            key_id: self.key_id.clone(),
            before,
            limit,
            actor: self.actor.clone(),
            from: self.from,
            to: self.to,
        }
    }
}

/// The filters of `params` as a query string (empty ones left out), for links that keep them.
fn filter_query(params: &AuditParams) -> String {
    let pairs: Vec<(&str, &str)> = [
        ("action", &params.action),
        ("key", &params.key),
        ("actor", &params.actor),
        ("from", &params.from),
        ("to", &params.to),
    ]
    .into_iter()
    .filter_map(|(name, value)| given(value).map(|value| (name, value)))
    .collect();
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") }
}

/// `text` cut to [`CELL_CHARS`] characters (with an ellipsis) when longer.
fn shorten(text: &str) -> String {
    if text.chars().count() <= CELL_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(CELL_CHARS - 1).collect();
    short.push('…');
    short
}

/// `YYYY-MM-DD HH:MM:SS`, UTC.
fn time_text(at: Timestamp) -> String {
    let time = at.to_datetime();
    format!("{} {:02}:{:02}:{:02}", at.date_string(), time.hour(), time.minute(), time.second())
}

fn details_text(details: &serde_json::Value) -> String {
    match details {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Object(map) if map.is_empty() => String::new(),
        other => other.to_string(),
    }
}

struct EventRow {
    at_iso: String,
    at_text: String,
    action: String,
    actor_kind: String,
    actor_name: String,
    target_kind: String,
    target: String,
    ip: String,
    user_agent: String,
    user_agent_short: String,
    details: String,
    details_short: String,
}

impl EventRow {
    fn of(event: &AuditEvent) -> Self {
        let actor = &event.actor;
        let user_agent = event.user_agent.clone().unwrap_or_default();
        let details = details_text(&event.details);
        Self {
            at_iso: event.at.to_string(),
            at_text: time_text(event.at),
            action: event.action.clone(),
            actor_kind: actor.kind.clone(),
            actor_name: actor.name.clone().or_else(|| actor.id.clone()).unwrap_or_default(),
            target_kind: event.target.as_ref().map(|t| t.kind.clone()).unwrap_or_default(),
            target: event.target.as_ref().map(|t| t.label.clone().unwrap_or_else(|| t.id.clone())).unwrap_or_default(),
            ip: event.ip.clone().unwrap_or_default(),
            user_agent_short: shorten(&user_agent),
            user_agent,
            details_short: shorten(&details),
            details,
        }
    }
}

struct ActionOption {
    value: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    key: String,
    actor: String,
    from: String,
    to: String,
    actions: Vec<ActionOption>,
    error: Option<String>,
    events: Vec<EventRow>,
    /// Whether this is a later page (so "Newest" leads back).
    paged: bool,
    older_href: Option<String>,
    newest_href: String,
    csv_href: String,
    json_href: String,
}

async fn audit_page(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(params): Query<AuditParams>,
) -> Result<Response, PageError> {
    viewer.principal.require(Role::Member)?;
    let query = filter_query(&params);
    let checked = Filters::parse(&params).and_then(|filters| {
        let before = given(&params.before)
            .map(|raw| raw.parse::<i64>().map_err(|_| "before must be an event number from an Older link".to_owned()))
            .transpose()?;
        Ok((filters, before))
    });
    let mut page = AuditPage {
        chrome: viewer.chrome(Nav::Audit, "Audit log"),
        actions: AuditAction::ALL
            .iter()
            .map(|action| ActionOption { value: action.as_str(), selected: params.action.trim() == action.as_str() })
            .collect(),
        key: params.key.clone(),
        actor: params.actor.clone(),
        from: params.from.clone(),
        to: params.to.clone(),
        error: None,
        events: Vec::new(),
        paged: given(&params.before).is_some(),
        older_href: None,
        newest_href: with_query("/app/audit", &query),
        csv_href: with_query("/app/audit.csv", &query),
        json_href: with_query("/app/audit.json", &query),
    };
    let (filters, before) = match checked {
        Ok(checked) => checked,
        Err(message) => {
            page.error = Some(message);
            return Ok(render_status(StatusCode::BAD_REQUEST, &page));
        }
    };
    // One more than a page: whether there is an older page without showing an empty one.
    let mut events =
        state.store.list_audit(viewer.principal.tenant_id(), &filters.store_filter(before, PAGE + 1)).await?;
    if events.len() > PAGE as usize {
        events.truncate(PAGE as usize);
        let last = events.last().map(|event| event.id);
        page.older_href = last.map(|id| match query.as_str() {
            "" => format!("/app/audit?before={id}"),
            filters => format!("/app/audit?{filters}&before={id}"),
        });
    }
    page.events = events.iter().map(EventRow::of).collect();
    Ok(render(&page))
}

/// Every event matching `filters`, newest first, at most [`EXPORT_CAP`]; and whether more matched.
async fn export_events(
    state: &AppState,
    tenant: &TenantId,
    filters: &Filters,
) -> Result<(Vec<AuditEvent>, bool), ApiError> {
    let mut events: Vec<AuditEvent> = Vec::new();
    let mut before = None;
    loop {
        let chunk = state.store.list_audit(tenant, &filters.store_filter(before, MAX_AUDIT_PAGE)).await?;
        let full = chunk.len() == MAX_AUDIT_PAGE as usize;
        before = chunk.last().map(|event| event.id);
        events.extend(chunk);
        if events.len() >= EXPORT_CAP {
            let more = events.len() > EXPORT_CAP || full;
            events.truncate(EXPORT_CAP);
            return Ok((events, more));
        }
        if !full {
            return Ok((events, false));
        }
    }
}

/// Checks the export's filters and reads its events.
async fn export(viewer: &Viewer, state: &AppState, params: &AuditParams) -> Result<(Vec<AuditEvent>, bool), PageError> {
    viewer.principal.require(Role::Member)?;
    let filters = Filters::parse(params).map_err(ApiError::InvalidRequest)?;
    Ok(export_events(state, viewer.principal.tenant_id(), &filters).await?)
}

fn export_name(viewer: &Viewer, extension: &str) -> String {
    format!("audit-{}-{}.{extension}", viewer.user().session.tenant.slug, Timestamp::now().date_string())
}

/// Marks an export cut at [`EXPORT_CAP`] events (narrow the filters to get the rest).
fn mark_truncated(mut response: Response, truncated: bool) -> Response {
    if truncated {
        response.headers_mut().insert("x-export-truncated", HeaderValue::from_static("true"));
    }
    response
}

async fn audit_csv(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(params): Query<AuditParams>,
) -> Result<Response, PageError> {
    let (events, truncated) = export(&viewer, &state, &params).await?;
    let mut csv = Csv::new(&[
        "id",
        "at",
        "action",
        "actor_type",
        "actor_id",
        "actor_name",
        "target_type",
        "target_id",
        "target_label",
        "ip",
        "user_agent",
        "details",
    ]);
    for event in &events {
        let target = event.target.as_ref();
        csv.row([
            event.id.to_string(),
            event.at.to_string(),
            event.action.clone(),
            event.actor.kind.clone(),
            event.actor.id.clone().unwrap_or_default(),
            event.actor.name.clone().unwrap_or_default(),
            target.map(|t| t.kind.clone()).unwrap_or_default(),
            target.map(|t| t.id.clone()).unwrap_or_default(),
            target.and_then(|t| t.label.clone()).unwrap_or_default(),
            event.ip.clone().unwrap_or_default(),
            event.user_agent.clone().unwrap_or_default(),
            details_text(&event.details),
        ]);
    }
    Ok(mark_truncated(csv.into_response(&export_name(&viewer, "csv")), truncated))
}

async fn audit_json(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(params): Query<AuditParams>,
) -> Result<Response, PageError> {
    let (events, truncated) = export(&viewer, &state, &params).await?;
    let views: Vec<AuditEventView> = events.iter().map(AuditEventView::of).collect();
    let body = serde_json::to_string(&views).map_err(ApiError::internal)?;
    Ok(mark_truncated(attachment(body, "application/json", &export_name(&viewer, "json")), truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> AuditParams {
        serde_urlencoded::from_str(&serde_urlencoded::to_string(pairs).expect("encode")).expect("decode")
    }

    #[test]
    fn filters_are_checked_and_kept_in_links() {
        let raw = params(&[
            ("action", "member.add"),
            ("actor", " a@b.example "),
            ("from", "2026-03-01"),
            ("to", "2026-03-01"),
        ]);
        let filters = Filters::parse(&raw).expect("valid filters");
        assert_eq!(filters.action, Some(AuditAction::MemberAdd));
        assert_eq!(filters.actor.as_deref(), Some("a@b.example"));
        let (from, to) = (filters.from.expect("from"), filters.to.expect("to"));
        assert_eq!(to.as_millis() - from.as_millis(), DAY_MS, "to covers the whole day");
        assert_eq!(filter_query(&raw), "action=member.add&actor=a%40b.example&from=2026-03-01&to=2026-03-01");
        assert_eq!(filter_query(&params(&[("key", ""), ("before", "9")])), "", "before is not a filter");
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        let error = |pairs: &[(&str, &str)]| Filters::parse(&params(pairs)).expect_err("refused");
        assert!(error(&[("action", "nope")]).contains("no action \"nope\""));
        assert!(error(&[("key", "not-a-uuid")]).starts_with("key must be a key id"));
        assert!(error(&[("from", "yesterday")]).starts_with("from must be a date"));
        assert_eq!(error(&[("from", "2026-03-02"), ("to", "2026-03-01")]), "from must be on or before to");
    }

    #[test]
    fn long_values_are_shortened_for_their_cell() {
        assert_eq!(shorten("curl/8"), "curl/8");
        let long = "x".repeat(100);
        let short = shorten(&long);
        assert_eq!(short.chars().count(), CELL_CHARS);
        assert!(short.ends_with('…'));
        assert_eq!(time_text(Timestamp::parse_rfc3339("2026-03-01T04:05:06.789Z").expect("t")), "2026-03-01 04:05:06");
    }
}
