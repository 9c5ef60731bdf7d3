//! Connected apps (`/app/apps`): every OAuth grant of the tenant — the app, the service, the
//! spend cap and what was spent under it, when it expires and was last used — and Revoke, which
//! stops the app's next call (the grant's credential leaves the verifier's cache at once).
//! Owners and admins revoke any grant; a member only the grants they made.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use prom_core::access::Role;
use prom_core::id::GrantId;
use prom_core::oauth::{ClientSource, GrantView, RevokeReason};
use prom_core::time::Timestamp;
use serde::Deserialize;

use super::page::{Chrome, Nav, PageError, render};
use super::viewer::{Posted, Viewer};
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/apps", get(apps_page)).route("/apps/{grant}/revoke", post(revoke))
}

/// A grant as a row of the page.
struct Row {
    id: String,
    client_name: String,
    client_id: String,
    source: &'static str,
    service: String,
    cap: String,
    spent: String,
    expires: String,
    last_used: String,
    status: &'static str,
    live: bool,
    may_revoke: bool,
}

#[derive(Template)]
#[template(path = "apps.html")]
struct AppsPage {
    chrome: Chrome,
    rows: Vec<Row>,
    notice: Option<&'static str>,
}

#[derive(Deserialize)]
struct Notice {
    notice: Option<String>,
}

fn source_word(source: Option<ClientSource>) -> &'static str {
    match source {
        Some(ClientSource::Registered) => "self-registered",
        Some(ClientSource::MetadataDocument) => "metadata document",
        Some(ClientSource::Configured) => "configured",
        None => "no longer registered",
    }
}

fn row(view: GrantView, viewer: &Viewer, now: Timestamp) -> Row {
    let grant = view.grant;
    let session = &viewer.user().session;
    let status = if grant.revoked_at.is_some() {
        "revoked"
    } else if grant.expires_at <= now {
        "expired"
    } else {
        "active"
    };
    Row {
        id: grant.id.to_string(),
        client_name: grant.client_name,
        client_id: grant.client_id,
        source: source_word(view.client_source),
        service: grant.service.to_string(),
        cap: grant.spend_cap.to_string(),
        spent: view.spent.to_string(),
        expires: grant.expires_at.date_string(),
        last_used: grant.last_used_at.map_or_else(|| "never".to_owned(), |at| at.date_string()),
        status,
        live: status == "active",
        may_revoke: session.role.includes(Role::Admin) || grant.user_id == session.user_id,
    }
}

async fn apps_page(State(state): State<AppState>, viewer: Viewer, Query(query): Query<Notice>) -> Response {
    let grants = match state.store.list_grants(viewer.principal.tenant_id()).await {
        Ok(grants) => grants,
        Err(err) => return PageError::from(err).into_response(),
    };
    let now = Timestamp::now();
    let rows = grants.into_iter().map(|view| row(view, &viewer, now)).collect();
    let notice = match query.notice.as_deref() {
        Some("revoked") => Some("The app was disconnected: its next call is refused."),
        _ => None,
    };
    render(&AppsPage { chrome: viewer.chrome(Nav::Apps, "Connected apps"), rows, notice })
}

#[derive(Deserialize)]
struct NoFields {}

async fn revoke(State(state): State<AppState>, Path(raw): Path<String>, posted: Posted<NoFields>) -> Response {
    let viewer = posted.viewer;
    let not_found = || PageError::NotFound("there is no such connected app in this tenant".into());
    let Some(id) = GrantId::parse(&raw) else { return not_found().into_response() };
    let session = &viewer.user().session;
    let grant = match state.store.get_grant(&session.tenant.id, &id).await {
        Ok(Some(grant)) => grant,
        Ok(None) => return not_found().into_response(),
        Err(err) => return PageError::from(err).into_response(),
    };
    if !session.role.includes(Role::Admin) && grant.user_id != session.user_id {
        let err = ApiError::Forbidden("only owners, admins and whoever connected the app may revoke it".into());
        return PageError::from(err).into_response();
    }
    let ctx = viewer.principal.audit_context(&viewer.meta);
    match state.store.revoke_grant(&id, Timestamp::now(), RevokeReason::Revoked, &ctx).await {
        Ok(_) => {
            state.verifier.forget_key(&grant.key_id);
            Redirect::to("/app/apps?notice=revoked").into_response()
        }
        Err(err) => PageError::from(err).into_response(),
    }
}
