//! One published service's page for its tenant (`/app/publish/{slug}`): its name, description
//! and upstream, its tools read from the upstream with a price for each, and deletion behind a
//! confirmation page. Changes go through the `/v1/services/{slug}` handlers. Another tenant's
//! service is "not found" here, as in the API.

use std::collections::BTreeMap;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use prom_core::access::Role;
use prom_core::service::{ServiceRecord, ServiceSlug, Upstream};
use serde::Deserialize;

use crate::api::ApiJson;
use crate::api::services::{delete_service as api_delete_service, update_service};
use crate::api::views::{UpdateServiceRequest, UpstreamSpec};
use crate::dashboard::page::{Chrome, Nav, PageError, render_status};
use crate::dashboard::store::{CatalogNote, NoticeQuery, ToolRow, tool_rows};
use crate::dashboard::viewer::{Posted, Viewer};
use crate::error::ApiError;
use crate::state::AppState;

/// How long the page waits for a tool list it has not read yet.
const PAGE_WAIT: Duration = Duration::from_secs(3);
/// The prefix of the price fields' names: `price.{tool}`.
const PRICE_FIELD: &str = "price.";

/// A notice at the top of the page (a warning when something did not work).
#[derive(Clone, Copy, Debug)]
struct Notice {
    text: &'static str,
    warning: bool,
}

fn edit_notice(code: Option<&str>) -> Option<Notice> {
    let (text, warning) = match code? {
        "published" => (
            "The service is published. Read its tools from the upstream and give the paid ones a price below; tools \
             without a price are free.",
            false,
        ),
        "saved" => ("The changes are saved.", false),
        "prices_saved" => (
            "The prices are saved. A raised price applies to a tenant once it approves its allowance again; until \
             then its approval's price holds.",
            false,
        ),
        "tools_read" => ("The tools were read from the upstream.", false),
        "tools_failed" => ("The tools could not be read from the upstream; the reason is below.", true),
        _ => return None,
    };
    Some(Notice { text, warning })
}

/// The service `raw` names, if the viewer's tenant publishes it; "not found" otherwise.
async fn own_service(state: &AppState, viewer: &Viewer, raw: &str) -> Result<ServiceRecord, PageError> {
    let missing = || {
        PageError::NotFound(format!(
            "your tenant publishes no service {:?}; your services are listed under Publish",
            raw.chars().take(40).collect::<String>()
        ))
    };
    let slug = ServiceSlug::parse(raw).map_err(|_| missing())?;
    match state.store.get_service(&slug).await? {
        Some(service) if &service.tenant_id == viewer.principal.tenant_id() => Ok(service),
        _ => Err(missing()),
    }
}

/// The details form as shown or typed.
#[derive(Debug, Default, Deserialize)]
pub struct DetailsFields {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    upstream: String,
}

#[derive(Template)]
#[template(path = "publish_service.html")]
struct EditPage {
    chrome: Chrome,
    notice: Option<Notice>,
    slug: String,
    /// The name as stored (the heading), and the form's values.
    name: String,
    form: DetailsFields,
    details_error: Option<String>,
    /// The upstream's command, for a stdio service (not editable here).
    command: Option<String>,
    tools: Vec<ToolRow>,
    note: CatalogNote,
    prices_error: Option<String>,
}

/// The upstream URL as the API shows it to the publisher (credentials masked).
fn shown_url(service: &ServiceRecord) -> Option<String> {
    match &service.upstream {
        Upstream::Http { .. } => UpstreamSpec::masked(&service.upstream).url,
        Upstream::Stdio { .. } => None,
    }
}

/// The page for `service`; `form` and `typed_prices` as typed when a form comes back.
async fn page(
    state: &AppState,
    viewer: &Viewer,
    service: &ServiceRecord,
    notice: Option<Notice>,
    details: Option<(DetailsFields, String)>,
    prices: Option<(BTreeMap<String, String>, String)>,
) -> EditPage {
    let outcome = state.catalog.tools(service, PAGE_WAIT).await;
    let listing = outcome.as_ref().and_then(|outcome| outcome.as_ref().ok());
    let mut tools = tool_rows(service, listing.map(|listing| listing.as_ref()));
    let (prices_error, typed) = match prices {
        Some((typed, error)) => (Some(error), typed),
        None => (None, BTreeMap::new()),
    };
    for (tool, units) in typed {
        match tools.iter_mut().find(|row| row.name == tool) {
            Some(row) => row.units = units,
            None => tools.push(ToolRow {
                name: tool,
                title: None,
                description: String::new(),
                price: String::new(),
                units,
                listed: false,
            }),
        }
    }
    let (form, details_error) = match details {
        Some((form, error)) => (form, Some(error)),
        None => (
            DetailsFields {
                name: service.name.clone(),
                description: service.description.clone(),
                // The API shows the upstream only to the publisher's owners and admins.
                upstream: match viewer.principal.require(Role::Admin) {
                    Ok(_) => shown_url(service).unwrap_or_default(),
                    Err(_) => String::new(),
                },
            },
            None,
        ),
    };
    EditPage {
        chrome: viewer.chrome(Nav::Publish, format!("Publish · {}", service.name)),
        notice,
        slug: service.slug.to_string(),
        name: service.name.clone(),
        form,
        details_error,
        command: match &service.upstream {
            Upstream::Stdio { command, .. } => Some(command.clone()),
            Upstream::Http { .. } => None,
        },
        tools,
        // Why a read failed names the upstream, which the API shows only to owners and admins.
        note: CatalogNote::of(outcome.as_ref(), viewer.principal.require(Role::Admin).is_ok()),
        prices_error,
    }
}

/// `GET /app/publish/{slug}`.
pub async fn edit_page(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    let service = own_service(&state, &viewer, &raw).await?;
    let notice = edit_notice(query.notice.as_deref());
    let page = page(&state, &viewer, &service, notice, None, None).await;
    Ok(render_status(StatusCode::OK, &page))
}

fn redirect(slug: &str, notice: &str, anchor: &str) -> Response {
    Redirect::to(&format!("/app/publish/{slug}?notice={notice}{anchor}")).into_response()
}

/// Calls `update_service` with the viewer's principal.
async fn update(
    state: &AppState,
    viewer: &Viewer,
    service: &ServiceRecord,
    request: UpdateServiceRequest,
) -> Result<(), ApiError> {
    update_service(
        State(state.clone()),
        viewer.principal.clone(),
        viewer.meta.clone(),
        Path(service.slug.to_string()),
        ApiJson(request),
    )
    .await
    .map(|_| ())
}

/// `POST /app/publish/{slug}`: name, description and upstream (sent only when it was changed:
/// the form shows it masked, and the mask must not replace the real credentials).
pub async fn save_details(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    posted: Posted<DetailsFields>,
) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    let service = own_service(&state, &viewer, &raw).await?;
    let upstream = match shown_url(&service) {
        Some(shown) if form.upstream.trim() != shown => {
            Some(UpstreamSpec { url: Some(form.upstream.trim().to_owned()), ..UpstreamSpec::default() })
        }
        _ => None,
    };
    let request = UpdateServiceRequest {
        name: Some(form.name.clone()),
        description: Some(form.description.clone()),
        upstream,
        prices: None,
        charge_tool_errors: None,
    };
    match update(&state, &viewer, &service, request).await {
        Ok(()) => Ok(redirect(service.slug.as_str(), "saved", "")),
        Err(ApiError::Internal(cause)) => Err(ApiError::Internal(cause).into()),
        Err(err) => {
            let status = err.status();
            let page = page(&state, &viewer, &service, None, Some((form, err.to_string())), None).await;
            Ok(render_status(status, &page))
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct NoFields {}

/// `POST /app/publish/{slug}/tools`: reads the tools from the upstream again now.
pub async fn read_tools(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, PageError> {
    let viewer = posted.viewer;
    let service = own_service(&state, &viewer, &raw).await?;
    // A management action like the others of this page (it makes the server reach the upstream).
    viewer.principal.require(Role::Admin)?;
    let notice = match state.catalog.refresh(&service).await {
        Ok(_) => "tools_read",
        Err(_) => "tools_failed",
    };
    Ok(redirect(service.slug.as_str(), notice, "#tools"))
}

/// `POST /app/publish/{slug}/prices`: the whole price list (an empty field is a free tool).
pub async fn save_prices(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    posted: Posted<BTreeMap<String, String>>,
) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    let service = own_service(&state, &viewer, &raw).await?;
    let typed: BTreeMap<String, String> = form
        .into_iter()
        .filter_map(|(field, value)| field.strip_prefix(PRICE_FIELD).map(|tool| (tool.to_owned(), value)))
        .collect();
    let prices = typed
        .iter()
        .filter_map(|(tool, value)| {
            let digits: String = value.chars().filter(|c| !matches!(c, ',' | '_' | ' ' | '\u{202f}')).collect();
            (!digits.is_empty()).then(|| (tool.clone(), serde_json::Value::String(digits)))
        })
        .collect();
    let request = UpdateServiceRequest {
        name: None,
        description: None,
        upstream: None,
        prices: Some(prices),
        charge_tool_errors: None,
    };
    match update(&state, &viewer, &service, request).await {
        Ok(()) => Ok(redirect(service.slug.as_str(), "prices_saved", "#tools")),
        Err(ApiError::Internal(cause)) => Err(ApiError::Internal(cause).into()),
        Err(err) => {
            let status = err.status();
            let page = page(&state, &viewer, &service, None, None, Some((typed, err.to_string()))).await;
            Ok(render_status(status, &page))
        }
    }
}

#[derive(Template)]
#[template(path = "publish_delete.html")]
struct DeletePage {
    chrome: Chrome,
    slug: String,
    name: String,
}

/// `GET /app/publish/{slug}/delete`: the confirmation, naming the service.
pub async fn delete_page(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, PageError> {
    let service = own_service(&state, &viewer, &raw).await?;
    viewer.principal.require(Role::Admin)?;
    let page = DeletePage {
        chrome: viewer.chrome(Nav::Publish, format!("Delete {}", service.name)),
        slug: service.slug.to_string(),
        name: service.name.clone(),
    };
    Ok(render_status(StatusCode::OK, &page))
}

/// `POST /app/publish/{slug}/delete`.
pub async fn delete_service(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, PageError> {
    let viewer = posted.viewer;
    let service = own_service(&state, &viewer, &raw).await?;
    api_delete_service(
        State(state.clone()),
        viewer.principal.clone(),
        viewer.meta.clone(),
        Path(service.slug.to_string()),
    )
    .await?;
    state.catalog.forget(&service.slug);
    Ok(Redirect::to("/app/publish?notice=deleted").into_response())
}
