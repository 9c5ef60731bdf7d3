//! The API keys page: the tenant's keys page by page, the form that creates one (and its one-time
//! reveal, with configurations ready to paste), and the confirmation pages that revoke, delete or
//! rotate a key (`keys/confirm.rs`).
//!
//! Every change is made by the `/v1/keys` handler itself with the viewer's principal, so the
//! roles, the tenant isolation, the audit rows and the messages are the API's. The new key is
//! rendered straight into the response to the form: it never travels in a URL and is never
//! stored anywhere it could be shown again.

mod confirm;
mod reveal;

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use prom_core::store::{KeyRecord, KeyStatus};
use prom_core::time::Timestamp;
use serde::Deserialize;

use self::reveal::Reveal;
use super::page::{Chrome, Nav, PageError, render, render_status};
use super::viewer::{Posted, Viewer};
use crate::api::ApiJson;
use crate::api::views::CreateKeyRequest;
use crate::error::ApiError;
use crate::state::AppState;

/// Keys shown per page.
const PAGE_SIZE: u32 = 50;
/// Pages past this are not asked for (the offset stays far from overflow).
const MAX_PAGE: u32 = 1_000_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api-keys", get(keys_page).post(create_key))
        .route("/api-keys/{id}/revoke", get(confirm::revoke_page).post(confirm::revoke))
        .route("/api-keys/{id}/delete", get(confirm::delete_page).post(confirm::delete))
        .route("/api-keys/{id}/rotate", get(confirm::rotate_page).post(confirm::rotate))
}

/// A time as people read it (`2026-11-23 19:08 UTC`), and as machines do (RFC 3339).
#[derive(Clone, Debug)]
struct When {
    text: String,
    date: String,
    rfc3339: String,
}

impl When {
    fn of(at: Timestamp) -> Self {
        let time = at.to_datetime();
        Self {
            text: format!("{} {:02}:{:02} UTC", at.date_string(), time.hour(), time.minute()),
            date: at.date_string(),
            rfc3339: at.to_string(),
        }
    }
}

/// A key's state as a badge.
#[derive(Debug)]
struct Status {
    text: &'static str,
    class: &'static str,
    /// When a rotated key stops working.
    until: Option<When>,
    /// Still authenticates (so it may be rotated or revoked).
    active: bool,
}

impl Status {
    fn of(key: &KeyRecord, now: Timestamp) -> Self {
        let ended = |text| Self { text, class: "bad", until: None, active: false };
        match (key.status(now), key.expires_at) {
            (KeyStatus::Active, Some(at)) => {
                Self { text: "rotated", class: "warn", until: Some(When::of(at)), active: true }
            }
            (KeyStatus::Active, None) => Self { text: "active", class: "ok", until: None, active: true },
            (KeyStatus::Revoked, _) => ended("revoked"),
            (KeyStatus::Expired, _) => ended("expired"),
            (KeyStatus::Deleted, _) => ended("deleted"),
        }
    }
}

/// One row of the keys table (never the key itself: only its display form).
#[derive(Debug)]
struct KeyRow {
    id: String,
    label: String,
    display: String,
    environment: String,
    created: When,
    created_by: String,
    last_used: Option<When>,
    status: Status,
}

/// Links to the neighbouring pages of the list.
#[derive(Debug, Default)]
struct Pager {
    page: u32,
    pages: u64,
    prev: Option<String>,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    chrome: Chrome,
    notice: Option<&'static str>,
    error: Option<String>,
    /// The label as typed (kept when the form is shown again).
    label: String,
    /// The service the person came from (`?service=`), carried by the form to the reveal.
    service: String,
    reveal: Option<Reveal>,
    keys: Vec<KeyRow>,
    total: u64,
    pager: Pager,
}

fn notice(code: Option<&str>) -> Option<&'static str> {
    match code? {
        "revoked" => Some("The key is revoked: requests with it are refused from now on."),
        "deleted" => {
            Some("The key is deleted: it no longer works and is gone from this list. Its audit history stays.")
        }
        _ => None,
    }
}

/// `?service=` when it names a service the way slugs are written (it ends up in the snippets).
fn requested_service(raw: Option<&str>) -> String {
    raw.map(str::trim)
        .filter(|raw| prom_core::service::ServiceSlug::parse(raw).is_ok())
        .map(str::to_owned)
        .unwrap_or_default()
}

/// The link to page `page` of the list.
fn page_link(page: u64, service: &str) -> String {
    if service.is_empty() {
        format!("/app/api-keys?page={page}")
    } else {
        format!("/app/api-keys?page={page}&service={service}")
    }
}

/// The keys page for page `page` (1-based) of the viewer's tenant's keys, with no notice, error
/// or reveal yet.
async fn listing(state: &AppState, viewer: &Viewer, page: u32, service: String) -> Result<KeysPage, PageError> {
    let tenant = viewer.principal.tenant_id();
    let page = page.clamp(1, MAX_PAGE);
    let (records, total) = state.store.list_keys_page(tenant, (page - 1) * PAGE_SIZE, PAGE_SIZE).await?;
    let creators: HashMap<String, String> = state
        .store
        .list_members(tenant)
        .await?
        .into_iter()
        .map(|member| (member.user_id.to_string(), member.email.to_string()))
        .collect();
    let now = Timestamp::now();
    let keys = records
        .iter()
        .map(|key| KeyRow {
            id: key.id.to_string(),
            label: key.label.to_string(),
            display: key.display(),
            environment: key.environment.to_string(),
            created: When::of(key.created_at),
            created_by: key
                .created_by
                .as_ref()
                .and_then(|user| creators.get(&user.to_string()).cloned())
                .unwrap_or_else(|| "—".to_owned()),
            last_used: key.last_used_at.map(When::of),
            status: Status::of(key, now),
        })
        .collect();
    let pages = total.div_ceil(u64::from(PAGE_SIZE)).max(1);
    let at = u64::from(page);
    let pager = Pager {
        page,
        pages,
        prev: (at > 1).then(|| page_link((at - 1).min(pages), &service)),
        next: (at < pages).then(|| page_link(at + 1, &service)),
    };
    Ok(KeysPage {
        chrome: viewer.chrome(Nav::Keys, "API keys"),
        notice: None,
        error: None,
        label: String::new(),
        service,
        reveal: None,
        keys,
        total,
        pager,
    })
}

#[derive(Debug, Default, Deserialize)]
struct KeysQuery {
    page: Option<String>,
    notice: Option<String>,
    service: Option<String>,
}

async fn keys_page(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(query): Query<KeysQuery>,
) -> Result<Response, PageError> {
    let page = query.page.as_deref().and_then(|raw| raw.trim().parse::<u32>().ok()).unwrap_or(1);
    let service = requested_service(query.service.as_deref());
    let mut shown = listing(&state, &viewer, page, service).await?;
    shown.notice = notice(query.notice.as_deref());
    Ok(render(&shown))
}

#[derive(Debug, Deserialize)]
struct CreateForm {
    #[serde(default)]
    label: String,
    #[serde(default)]
    service: String,
}

/// Creates a key with the API's own handler and shows it once.
async fn create_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    posted: Posted<CreateForm>,
) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    let service = requested_service(Some(&form.service));
    let request = CreateKeyRequest { label: form.label.clone(), environment: None };
    let created = crate::api::keys::create_key(
        State(state.clone()),
        viewer.principal.clone(),
        viewer.meta.clone(),
        ApiJson(request),
    )
    .await;
    match created {
        Ok((status, Json(created))) => {
            let mut shown = listing(&state, &viewer, 1, service).await?;
            let target = reveal::Target::resolve(&state, &headers, &shown.service).await?;
            shown.reveal = Some(Reveal::new("Your new API key", &created, &target, None));
            Ok(render_status(status, &shown))
        }
        Err(err @ ApiError::Internal(_)) => Err(err.into()),
        Err(err) => {
            let mut shown = listing(&state, &viewer, 1, service).await?;
            shown.error = Some(err.body().error.message);
            shown.label = form.label;
            Ok(render_status(err.status(), &shown))
        }
    }
}
