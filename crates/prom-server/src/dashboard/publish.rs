//! Publishing (`/app/publish`): the services the viewer's tenant publishes, what they earned in
//! the last 30 days (per day and service, with totals per service), and the form that publishes a
//! new one through `POST /v1/services`'s handler. Each service's own page — details, tools read
//! from the upstream, prices, deletion — is in [`edit`].
//!
//! Owners and admins manage; members see the list and earnings. The API enforces it: its 403 is
//! shown in words.

mod edit;

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use prom_core::money::Amount;
use prom_core::service::{ServiceRecord, Upstream};
use prom_core::time::Timestamp;
use serde::Deserialize;

use super::page::{Chrome, Nav, PageError, render_status};
use super::store::{NoticeQuery, grouped};
use super::viewer::{Posted, Viewer};
use crate::api::ApiJson;
use crate::api::services::create_service;
use crate::api::views::{CreateServiceRequest, UpstreamSpec};
use crate::error::ApiError;
use crate::state::AppState;

/// How far back the earnings go.
const EARNINGS_DAYS: u64 = 30;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/publish", get(publish_page).post(publish_service))
        .route("/publish/{slug}", get(edit::edit_page).post(edit::save_details))
        .route("/publish/{slug}/tools", post(edit::read_tools))
        .route("/publish/{slug}/prices", post(edit::save_prices))
        .route("/publish/{slug}/delete", get(edit::delete_page).post(edit::delete_service))
}

fn publish_notice(code: Option<&str>) -> Option<&'static str> {
    match code? {
        "deleted" => Some("The service is deleted: agents can no longer call it, and its slug is free again."),
        _ => None,
    }
}

/// The viewer's tenant's services.
pub async fn own_services(state: &AppState, viewer: &Viewer) -> Result<Vec<ServiceRecord>, PageError> {
    let tenant = viewer.principal.tenant_id();
    Ok(state.store.list_services().await?.into_iter().filter(|service| &service.tenant_id == tenant).collect())
}

#[derive(Debug)]
struct OwnService {
    slug: String,
    name: String,
    kind: &'static str,
    priced: usize,
    updated: String,
}

#[derive(Debug)]
struct EarningLine {
    day: String,
    service: String,
    calls: String,
    charged: String,
    settled: String,
}

/// A service's totals over the period.
#[derive(Debug, Default)]
struct Totals {
    calls: u64,
    charged: Amount,
    settled: Amount,
}

#[derive(Debug)]
struct TotalLine {
    service: String,
    calls: String,
    charged: String,
    settled: String,
}

/// The publish form as typed.
#[derive(Debug, Default, Deserialize)]
pub struct PublishFields {
    #[serde(default)]
    slug: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    upstream: String,
}

#[derive(Template)]
#[template(path = "publish.html")]
struct PublishPage {
    chrome: Chrome,
    notice: Option<&'static str>,
    services: Vec<OwnService>,
    from_day: String,
    to_day: String,
    earnings: Vec<EarningLine>,
    totals: Vec<TotalLine>,
    error: Option<String>,
    form: PublishFields,
}

async fn page(
    state: &AppState,
    viewer: &Viewer,
    notice: Option<&'static str>,
    error: Option<String>,
    form: PublishFields,
) -> Result<PublishPage, PageError> {
    let services = own_services(state, viewer)
        .await?
        .into_iter()
        .map(|service| OwnService {
            slug: service.slug.to_string(),
            name: service.name,
            kind: match service.upstream {
                Upstream::Http { .. } => "MCP over HTTP",
                Upstream::Stdio { .. } => "local command",
            },
            priced: service.prices.len(),
            updated: service.updated_at.date_string(),
        })
        .collect();
    let to = Timestamp::now();
    let from = to.minus_seconds(EARNINGS_DAYS * 24 * 60 * 60);
    let rows = state.store.publisher_earnings(viewer.principal.tenant_id(), from, to).await?;
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    let mut earnings = Vec::with_capacity(rows.len());
    for row in &rows {
        let service = row.service.to_string();
        let total = totals.entry(service.clone()).or_default();
        total.calls = total.calls.saturating_add(row.calls);
        let overflow = || ApiError::internal(std::io::Error::other("earnings past u128"));
        total.charged = total.charged.checked_add(row.charged).ok_or_else(overflow)?;
        total.settled = total.settled.checked_add(row.settled).ok_or_else(overflow)?;
        earnings.push(EarningLine {
            day: row.day.to_string(),
            service,
            calls: grouped(row.calls),
            charged: grouped(row.charged),
            settled: grouped(row.settled),
        });
    }
    let totals = totals
        .into_iter()
        .map(|(service, total)| TotalLine {
            service,
            calls: grouped(total.calls),
            charged: grouped(total.charged),
            settled: grouped(total.settled),
        })
        .collect();
    Ok(PublishPage {
        chrome: viewer.chrome(Nav::Publish, "Publish"),
        notice,
        services,
        from_day: from.date_string(),
        to_day: to.date_string(),
        earnings,
        totals,
        error,
        form,
    })
}

async fn publish_page(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    let notice = publish_notice(query.notice.as_deref());
    let page = page(&state, &viewer, notice, None, PublishFields::default()).await?;
    Ok(render_status(StatusCode::OK, &page))
}

/// `POST /app/publish`: publishes through the API, then on to the service's page to price it.
async fn publish_service(State(state): State<AppState>, posted: Posted<PublishFields>) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    let request = CreateServiceRequest {
        slug: form.slug.trim().to_owned(),
        name: form.name.clone(),
        description: form.description.clone(),
        upstream: UpstreamSpec { url: Some(form.upstream.trim().to_owned()), ..UpstreamSpec::default() },
        prices: BTreeMap::new(),
        charge_tool_errors: false,
    };
    let created =
        create_service(State(state.clone()), viewer.principal.clone(), viewer.meta.clone(), ApiJson(request)).await;
    match created {
        Ok((_, axum::Json(view))) => {
            Ok(Redirect::to(&format!("/app/publish/{}?notice=published", view.slug)).into_response())
        }
        Err(ApiError::Internal(cause)) => Err(ApiError::Internal(cause).into()),
        Err(err) => {
            let status = err.status();
            let page = page(&state, &viewer, None, Some(err.to_string()), form).await?;
            Ok(render_status(status, &page))
        }
    }
}
