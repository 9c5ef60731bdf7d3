//! The confirmation pages that revoke, delete or rotate one key: each names the key (its label
//! and display form) and posts to the API's handler. Revoking and deleting go back to the list
//! with a notice; rotating shows the new key once, like creating one.

use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use prom_core::access::Role;
use prom_core::time::Timestamp;
use serde::Deserialize;

use super::reveal::{Reveal, Target};
use super::{When, listing};
use crate::api::OptionalJson;
use crate::api::views::{KeyView, RotateKeyRequest};
use crate::dashboard::page::{Chrome, Nav, PageError, render_status};
use crate::dashboard::viewer::{Posted, Viewer};
use crate::error::ApiError;
use crate::state::AppState;

/// The grace periods offered when rotating: how long the old key keeps working (seconds).
const GRACE_CHOICES: [(u64, &str); 4] = [(0, "Stop it now"), (3_600, "1 hour"), (86_400, "1 day"), (604_800, "7 days")];

/// What the page asks to confirm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Revoke,
    Delete,
    Rotate,
}

impl Action {
    /// The path segment, as in `/app/api-keys/{id}/revoke`.
    pub const fn verb(self) -> &'static str {
        match self {
            Self::Revoke => "revoke",
            Self::Delete => "delete",
            Self::Rotate => "rotate",
        }
    }

    pub const fn form_id(self) -> &'static str {
        match self {
            Self::Revoke => "confirm-revoke",
            Self::Delete => "confirm-delete",
            Self::Rotate => "confirm-rotate",
        }
    }

    pub const fn title(self) -> &'static str {
        match self {
            Self::Revoke => "Revoke API key",
            Self::Delete => "Delete API key",
            Self::Rotate => "Rotate API key",
        }
    }

    pub const fn button(self) -> &'static str {
        match self {
            Self::Revoke => "Revoke key",
            Self::Delete => "Delete key",
            Self::Rotate => "Rotate key",
        }
    }

    pub const fn button_class(self) -> &'static str {
        match self {
            Self::Revoke | Self::Delete => "button danger",
            Self::Rotate => "button",
        }
    }

    pub const fn consequence(self) -> &'static str {
        match self {
            Self::Revoke => {
                "Every request with this key is refused from the moment you confirm, for good. The key stays in the \
                 list as revoked."
            }
            Self::Delete => {
                "The key stops working at once and leaves the list. Its history stays in the audit log. This cannot \
                 be undone."
            }
            Self::Rotate => {
                "A new key with the same permissions replaces this one; it is shown once. The old key stops working \
                 now, or after the grace period you choose, so you can update your agents first."
            }
        }
    }

    pub fn is_rotate(self) -> bool {
        self == Self::Rotate
    }
}

/// One grace period in the rotate form's select.
#[derive(Debug)]
struct Grace {
    value: u64,
    text: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "keys_confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    action: Action,
    key: KeyView,
    status: String,
    error: Option<String>,
    /// The rotate form as typed.
    label: String,
    graces: Vec<Grace>,
}

fn graces(chosen: u64) -> Vec<Grace> {
    GRACE_CHOICES.iter().map(|&(value, text)| Grace { value, text, selected: value == chosen }).collect()
}

/// The key's state in words, for the page that names it.
fn status_text(key: &KeyView) -> String {
    match (key.status.as_str(), key.expires_at.as_deref().and_then(Timestamp::parse_rfc3339)) {
        ("active", Some(at)) => format!("rotated, works until {}", When::of(at).text),
        (status, _) => status.to_owned(),
    }
}

/// The confirmation page for `action` on key `id` of the viewer's tenant. Only owners and admins
/// change keys, so only they are shown the form; another tenant's key is not found.
async fn confirm_page(
    state: AppState,
    viewer: Viewer,
    id: String,
    action: Action,
    error: Option<String>,
    label: String,
    grace: u64,
) -> Result<ConfirmPage, PageError> {
    viewer.principal.require(Role::Admin)?;
    let Json(key) = crate::api::keys::get_key(State(state), viewer.principal.clone(), Path(id)).await?;
    Ok(ConfirmPage {
        chrome: viewer.chrome(Nav::Keys, format!("{} {}", action.title(), key.label)),
        action,
        status: status_text(&key),
        key,
        error,
        label,
        graces: graces(grace),
    })
}

async fn show(state: AppState, viewer: Viewer, id: String, action: Action) -> Result<Response, PageError> {
    let page = confirm_page(state, viewer, id, action, None, String::new(), 0).await?;
    Ok(render_status(StatusCode::OK, &page))
}

pub async fn revoke_page(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    show(state, viewer, id, Action::Revoke).await
}

pub async fn delete_page(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    show(state, viewer, id, Action::Delete).await
}

pub async fn rotate_page(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    show(state, viewer, id, Action::Rotate).await
}

/// A form with nothing but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct NoFields {}

pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, PageError> {
    let viewer = posted.viewer;
    let _revoked =
        crate::api::keys::revoke_key(State(state), viewer.principal.clone(), viewer.meta.clone(), Path(id)).await?;
    Ok(Redirect::to("/app/api-keys?notice=revoked").into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, PageError> {
    let viewer = posted.viewer;
    crate::api::keys::delete_key(State(state), viewer.principal.clone(), viewer.meta.clone(), Path(id)).await?;
    Ok(Redirect::to("/app/api-keys?notice=deleted").into_response())
}

#[derive(Debug, Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    grace: String,
    #[serde(default)]
    label: String,
}

/// Rotates with the API's handler and shows the new key once, above the list.
pub async fn rotate(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    posted: Posted<RotateForm>,
) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    let grace = match form.grace.trim() {
        "" => Some(0),
        raw => raw.parse::<u64>().ok(),
    };
    let Some(grace) = grace else {
        let message = "choose how long the old key keeps working: one of the periods offered".to_owned();
        let page = confirm_page(state, viewer, id, Action::Rotate, Some(message), form.label, 0).await?;
        return Ok(render_status(StatusCode::BAD_REQUEST, &page));
    };
    let label = Some(form.label.clone()).filter(|label| !label.trim().is_empty());
    let request = RotateKeyRequest { label, expire_old_after_seconds: Some(grace) };
    let rotated = crate::api::keys::rotate_key(
        State(state.clone()),
        viewer.principal.clone(),
        viewer.meta.clone(),
        Path(id.clone()),
        OptionalJson(request),
    )
    .await;
    match rotated {
        Ok((status, Json(rotated))) => {
            let replaced = &rotated.replaced;
            let until =
                replaced.expires_at.as_deref().and_then(Timestamp::parse_rfc3339).filter(|at| *at > Timestamp::now());
            let fate = match until {
                Some(at) if replaced.status == "active" => {
                    format!("The old key {} keeps working until {}.", replaced.display, When::of(at).text)
                }
                _ => format!("The old key {} has stopped working.", replaced.display),
            };
            let mut shown = listing(&state, &viewer, 1, String::new()).await?;
            let target = Target::resolve(&state, &headers, "").await?;
            shown.reveal = Some(Reveal::new("Your replacement key", &rotated.new_key, &target, Some(fate)));
            Ok(render_status(status, &shown))
        }
        // A label or grace period the API refuses, or a key that can no longer be rotated: the
        // form again, with what was chosen.
        Err(err @ (ApiError::InvalidRequest(_) | ApiError::Conflict(_))) => {
            let message = err.body().error.message;
            let page = confirm_page(state, viewer, id, Action::Rotate, Some(message), form.label, grace).await?;
            Ok(render_status(err.status(), &page))
        }
        Err(err) => Err(err.into()),
    }
}
