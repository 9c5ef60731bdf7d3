//! A service's page in the App Store: what it is and who publishes it, its tools and prices, how
//! to connect an agent, and Access & Billing — the tenant's allowance for the service (read and
//! set through the `/v1/services/{slug}/allowance` handlers) and a way to a key for it.

use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use prom_core::access::Role;
use prom_core::money::Amount;
use prom_core::service::{ServiceRecord, ServiceSlug};
use prom_core::time::Timestamp;
use serde::Deserialize;

use super::{CatalogNote, NoticeQuery, ToolRow, grouped, publisher_names, tool_rows};
use crate::api::ApiJson;
use crate::api::allowance::{AllowanceView, SetAllowanceRequest, get_allowance};
use crate::dashboard::page::{Chrome, Nav, PageError, render_status};
use crate::dashboard::viewer::{Posted, Viewer};
use crate::error::ApiError;
use crate::origin::base_url;
use crate::state::AppState;

/// How long the page waits for a tool list it has not read yet.
const PAGE_WAIT: Duration = Duration::from_secs(2);

fn service_notice(code: Option<&str>) -> Option<&'static str> {
    match code? {
        "allowance_saved" => Some("The allowance is saved. Paid calls may use it at once."),
        "allowance_revoked" => {
            Some("The allowance is revoked. Paid calls to this service stop; free tools still work.")
        }
        _ => None,
    }
}

/// One line of the allowance's summary.
#[derive(Debug)]
struct Figure {
    label: &'static str,
    value: String,
}

/// The allowance form as shown (and as typed, when it comes back with an error).
#[derive(Debug, Default)]
struct AllowanceForm {
    amount: String,
    expires_at: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "store_service.html")]
struct ServicePage {
    chrome: Chrome,
    notice: Option<&'static str>,
    slug: String,
    name: String,
    publisher: String,
    description: String,
    /// The viewer's tenant published it (a link to its publishing page).
    own: bool,
    charge_tool_errors: bool,
    tools: Vec<ToolRow>,
    note: CatalogNote,
    mcp_url: String,
    connect_config: String,
    connect_curl: String,
    connect_ts: String,
    figures: Vec<Figure>,
    /// Why paid calls are stopped now, in words.
    stopped: Option<String>,
    /// Prices raised since the approval, in words.
    pending: Vec<String>,
    /// The allowance could not be read.
    allowance_error: Option<String>,
    form: AllowanceForm,
}

/// The three ways to connect: an MCP host's `mcpServers` entry, curl, the TypeScript SDK.
fn connect_snippets(slug: &str, mcp_url: &str) -> (String, String, String) {
    let config = serde_json::json!({
        "mcpServers": {
            slug: {
                "command": "prom",
                "args": ["connect", mcp_url],
                "env": { "PROMETHEUS_API_KEY": "prom_live_…" }
            }
        }
    });
    let config = serde_json::to_string_pretty(&config).unwrap_or_default();
    let initialize = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "curl", "version": "1" } }
    });
    let curl = format!(
        "curl -sS {mcp_url} \\\n  -H \"x-api-key: $PROMETHEUS_API_KEY\" \\\n  -H 'content-type: application/json' \\\n  \
         -H 'accept: application/json, text/event-stream' \\\n  -d '{initialize}'"
    );
    let url = serde_json::Value::String(mcp_url.to_owned());
    let typescript = format!(
        "import {{ Client }} from '@modelcontextprotocol/sdk/client/index.js';\n\
         import {{ StreamableHTTPClientTransport }} from '@modelcontextprotocol/sdk/client/streamableHttp.js';\n\n\
         const transport = new StreamableHTTPClientTransport(new URL({url}), {{\n  \
         requestInit: {{ headers: {{ 'x-api-key': process.env.PROMETHEUS_API_KEY! }} }},\n}});\n\
         const client = new Client({{ name: 'my-agent', version: '1.0.0' }});\n\
         await client.connect(transport);\n\
         console.log(await client.listTools());"
    );
    (config, curl, typescript)
}

/// `2026-12-31T23:59:00Z` as `2026-12-31 23:59 UTC`.
fn when(rfc3339: &str) -> String {
    match Timestamp::parse_rfc3339(rfc3339) {
        Some(at) => {
            let at = at.to_datetime();
            format!("{} {:02}:{:02} UTC", Timestamp::from_datetime(at).date_string(), at.hour(), at.minute())
        }
        None => rfc3339.to_owned(),
    }
}

/// The value a `datetime-local` input shows for an RFC 3339 time (UTC, to the minute).
fn local_input(rfc3339: &str) -> String {
    match Timestamp::parse_rfc3339(rfc3339) {
        Some(at) => {
            let at = at.to_datetime();
            format!("{}T{:02}:{:02}", Timestamp::from_datetime(at).date_string(), at.hour(), at.minute())
        }
        None => String::new(),
    }
}

fn sum(a: &str, b: &str) -> String {
    match (a.parse::<Amount>(), b.parse::<Amount>()) {
        (Ok(a), Ok(b)) => a.checked_add(b).map_or_else(|| "more than can be shown".to_owned(), grouped),
        _ => format!("{a} + {b}"),
    }
}

fn figures(view: &AllowanceView) -> Vec<Figure> {
    let figure = |label, value| Figure { label, value };
    vec![
        figure("Approved", grouped(&view.approved)),
        figure("Held for calls in flight", grouped(&view.held)),
        figure("Spent", format!("{} ({} settled)", sum(&view.unsettled, &view.settled), grouped(&view.settled))),
        figure("Available", grouped(&view.available)),
        figure("Expires", view.expires_at.as_deref().map_or_else(|| "never".to_owned(), when)),
        figure(
            "Paid calls stop",
            view.paid_calls_stop_at
                .as_deref()
                .map_or_else(|| "when it is used up".to_owned(), |at| format!("at {}", when(at))),
        ),
        figure("Wallet balance", grouped(&view.wallet_balance)),
    ]
}

fn stopped_words(view: &AllowanceView) -> Option<String> {
    let why = match view.stopped_by.as_deref()? {
        "expiry" => {
            "the allowance has expired, or expires too soon for a call to be settled. Approve it again with a \
                     later expiry."
        }
        "wallet" => "the wallet cannot pay more. Fund the wallet, or approve again.",
        "allowance" => "the allowance is used up. Raise it below.",
        _ => "the allowance does not cover more calls.",
    };
    Some(format!("Paid calls to this service are stopped: {why}"))
}

/// The service `raw` names, or the page's 404.
async fn find_service(state: &AppState, raw: &str) -> Result<ServiceRecord, PageError> {
    let missing = || PageError::NotFound(format!("there is no service {raw:?} in the App Store"));
    let slug = ServiceSlug::parse(raw).map_err(|_| missing())?;
    state.store.get_service(&slug).await?.ok_or_else(missing)
}

/// The page for `service`, with the allowance form as given.
async fn page(
    state: &AppState,
    viewer: &Viewer,
    headers: &HeaderMap,
    service: &ServiceRecord,
    notice: Option<&'static str>,
    mut form: AllowanceForm,
) -> Result<ServicePage, PageError> {
    let slug = service.slug.to_string();
    let publisher = publisher_names(state, std::slice::from_ref(service)).await?.remove(&service.tenant_id);
    let own = &service.tenant_id == viewer.principal.tenant_id();
    let outcome = state.catalog.tools(service, PAGE_WAIT).await;
    let listing = outcome.as_ref().and_then(|outcome| outcome.as_ref().ok());
    let tools = tool_rows(service, listing.map(|listing| listing.as_ref()));
    // The publisher's owners and admins are told why a read failed; everyone else only that it did.
    let note = CatalogNote::of(outcome.as_ref(), own && viewer.principal.require(Role::Admin).is_ok());
    let mcp_url = format!("{}/mcp/{slug}", base_url(state, headers));
    let (connect_config, connect_curl, connect_ts) = connect_snippets(&slug, &mcp_url);
    let allowance = get_allowance(State(state.clone()), viewer.principal.clone(), Path(slug.clone())).await;
    let (figures, stopped, pending, allowance_error) = match allowance {
        Ok(axum::Json(view)) => {
            if form.amount.is_empty() && form.error.is_none() {
                form.amount = view.approved.clone();
                form.expires_at = view.expires_at.as_deref().map(local_input).unwrap_or_default();
            }
            let pending = view
                .pending_increases
                .iter()
                .map(|increase| match &increase.approved {
                    Some(approved) => format!(
                        "{} now costs {}; your approval covers {}. Save the allowance again to accept the new price.",
                        increase.tool,
                        grouped(&increase.price),
                        grouped(approved)
                    ),
                    None => format!(
                        "{} costs {} now but was free when you approved; save the allowance again to use it.",
                        increase.tool,
                        grouped(&increase.price)
                    ),
                })
                .collect();
            (figures(&view), stopped_words(&view), pending, None)
        }
        Err(ApiError::Internal(cause)) => return Err(ApiError::Internal(cause).into()),
        Err(err) => (Vec::new(), None, Vec::new(), Some(err.to_string())),
    };
    Ok(ServicePage {
        chrome: viewer.chrome(Nav::Store, service.name.clone()),
        notice,
        slug,
        name: service.name.clone(),
        publisher: publisher.unwrap_or_default(),
        description: service.description.clone(),
        own,
        charge_tool_errors: service.charge_tool_errors,
        tools,
        note,
        mcp_url,
        connect_config,
        connect_curl,
        connect_ts,
        figures,
        stopped,
        pending,
        allowance_error,
        form,
    })
}

/// `GET /app/store/{slug}`.
pub async fn service_page(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Query(query): Query<NoticeQuery>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let service = find_service(&state, &raw).await?;
    let notice = service_notice(query.notice.as_deref());
    let page = page(&state, &viewer, &headers, &service, notice, AllowanceForm::default()).await?;
    Ok(render_status(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize)]
pub struct AllowanceFields {
    #[serde(default)]
    amount: String,
    #[serde(default)]
    expires_at: String,
}

/// The amount typed, in the token's smallest unit (separators allowed).
pub(crate) fn parse_amount(raw: &str) -> Result<Amount, ApiError> {
    let digits: String = raw.chars().filter(|c| !matches!(c, ',' | '_' | ' ' | '\u{202f}')).collect();
    if digits.is_empty() {
        return Err(ApiError::InvalidRequest(
            "enter an amount in the token's smallest unit, like 1000000 (0 revokes the allowance)".into(),
        ));
    }
    digits.parse::<Amount>().map_err(|_| {
        ApiError::InvalidRequest(format!(
            "the amount {:?} is not a whole number of the token's smallest unit; enter digits only, like 1000000",
            raw.chars().take(40).collect::<String>()
        ))
    })
}

/// A `datetime-local` value (read as UTC) as RFC 3339; empty means no expiry.
fn parse_expiry(raw: &str) -> Result<Option<String>, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let rfc3339 = match raw.len() {
        16 => format!("{raw}:00Z"),
        19 => format!("{raw}Z"),
        _ => raw.to_owned(),
    };
    match Timestamp::parse_rfc3339(&rfc3339) {
        Some(_) => Ok(Some(rfc3339)),
        None => Err(ApiError::InvalidRequest(
            "the expiry must be a date and time (UTC) like 2026-12-31T23:59, or empty for none".into(),
        )),
    }
}

/// `POST /app/store/{slug}/allowance`: approves the amount (0 revokes) through the API.
pub async fn set_allowance(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    posted: Posted<AllowanceFields>,
) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    let service = find_service(&state, &raw).await?;
    let parsed = parse_amount(&form.amount).and_then(|amount| Ok((amount, parse_expiry(&form.expires_at)?)));
    let outcome = match parsed {
        Ok((amount, expires_at)) => {
            let request = SetAllowanceRequest { amount, expires_at, expected_allowance: None };
            crate::api::allowance::set_allowance(
                State(state.clone()),
                viewer.principal.clone(),
                viewer.meta.clone(),
                Path(service.slug.to_string()),
                ApiJson(request),
            )
            .await
            .map(|_| amount)
        }
        Err(err) => Err(err),
    };
    match outcome {
        Ok(amount) => {
            let notice = if amount == Amount::ZERO { "allowance_revoked" } else { "allowance_saved" };
            Ok(Redirect::to(&format!("/app/store/{}?notice={notice}#access", service.slug)).into_response())
        }
        Err(ApiError::Internal(cause)) => Err(ApiError::Internal(cause).into()),
        Err(err) => {
            let status = err.status();
            let form = AllowanceForm { amount: form.amount, expires_at: form.expires_at, error: Some(err.to_string()) };
            let page = page(&state, &viewer, &headers, &service, None, form).await?;
            Ok(render_status(status, &page))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_time_is_sent_as_utc() {
        assert_eq!(parse_expiry("2030-01-02T03:04").ok().flatten().as_deref(), Some("2030-01-02T03:04:00Z"));
        assert_eq!(parse_expiry("2030-01-02T03:04:05").ok().flatten().as_deref(), Some("2030-01-02T03:04:05Z"));
        assert_eq!(parse_expiry(" ").ok().flatten(), None);
        assert!(parse_expiry("tomorrow").is_err());
        assert_eq!(local_input("2030-01-02T03:04:00Z"), "2030-01-02T03:04");
        assert_eq!(when("2030-01-02T03:04:00.000Z"), "2030-01-02 03:04 UTC");
    }

    #[test]
    fn amounts_may_be_typed_with_separators() {
        assert_eq!(parse_amount("1,000,000").ok(), Some(Amount::new(1_000_000)));
        assert_eq!(parse_amount(" 250 ").ok(), Some(Amount::new(250)));
        assert!(parse_amount("").is_err());
        assert!(parse_amount("1.5").is_err());
        assert!(parse_amount("-3").is_err());
    }
}
