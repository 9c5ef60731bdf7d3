//! API key lifecycle: create (the one-time reveal), list, get, revoke, delete, rotate.
//! Owners and admins change keys; any member may look. Every lookup is confined to the caller's
//! tenant, so another tenant's key id is simply not found.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use prom_core::access::{Role, Scope};
use prom_core::id::KeyId;
use prom_core::key::{Environment, PlainKey};
use prom_core::store::{KeyRecord, NewKey};
use prom_core::time::Timestamp;
use prom_core::user::{Label, MAX_LABEL_CHARS};

use super::views::{CreateKeyRequest, CreatedKeyView, KeyListView, KeyView, RotateKeyRequest, RotatedKeyView, scopes};
use super::{ApiJson, OptionalJson};
use crate::auth::pool::{Lane, PoolError};
use crate::auth::{ClientMeta, Principal, UserPrincipal};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

fn parse_id(raw: &str) -> Result<KeyId, ApiError> {
    KeyId::parse(raw).ok_or_else(|| not_found(raw))
}

fn not_found(raw: &str) -> ApiError {
    let shown: String = raw.chars().take(40).collect();
    ApiError::NotFound(format!("no API key with id {shown:?} in this tenant; list keys with GET /v1/keys"))
}

/// A store error for key `raw`: "not found" says which key and where to look.
fn store_error(err: prom_core::store::StoreError, raw: &str) -> ApiError {
    match err {
        prom_core::store::StoreError::NotFound => not_found(raw),
        other => other.into(),
    }
}

fn invalid(err: impl std::fmt::Display) -> ApiError {
    ApiError::InvalidRequest(err.to_string())
}

/// Mints a key for the caller's tenant, with its digest computed on the hashing pool.
async fn mint(
    state: &AppState,
    principal: &Principal,
    user: &UserPrincipal,
    label: Label,
    environment: Environment,
    scopes: Vec<Scope>,
    at: Timestamp,
) -> Result<(PlainKey, NewKey), ApiError> {
    let key = PlainKey::mint(environment);
    let hasher = state.hasher.clone();
    let text = key.expose().to_owned();
    let digest = state
        .pool
        .run(Lane::SignIn, move || {
            let digest = PlainKey::parse(&text).map_err(ApiError::internal).and_then(|key| {
                // A key that cannot be hashed is never stored (it would have no usable digest).
                hasher.digest(&key).map_err(ApiError::internal)
            });
            drop(text);
            digest
        })
        .await
        .map_err(|err| match err {
            PoolError::Busy => {
                ApiError::RateLimited { message: "the server is busy; retry in a moment".into(), retry_after_secs: 1 }
            }
            PoolError::Crashed(err) => ApiError::internal(err),
        })??;
    let new = NewKey {
        id: KeyId::new(),
        tenant_id: principal.tenant_id().clone(),
        label,
        environment,
        digest,
        last4: key.last4(),
        scopes,
        created_by: Some(user.session.user_id.clone()),
        created_at: at,
    };
    Ok((key, new))
}

fn created_view(record: &KeyRecord, key: &PlainKey) -> CreatedKeyView {
    CreatedKeyView {
        id: record.id.to_string(),
        label: record.label.to_string(),
        key: key.expose().to_owned(),
        display: record.display(),
        environment: record.environment.to_string(),
        scopes: scopes(&record.scopes),
        created_at: record.created_at.to_string(),
    }
}

/// Creates an API key. The response is the only time the key itself is shown.
#[utoipa::path(post, path = "/v1/keys", request_body = CreateKeyRequest, security(("session" = [])), responses(
    (status = 201, body = CreatedKeyView, description = "Created; `key` is shown this once"),
    (status = 400, body = ErrorBody, description = "INVALID_REQUEST: missing or bad label"),
    (status = 409, body = ErrorBody, description = "CONFLICT: a key of the other environment than this server's"),
    (status = 401, body = ErrorBody, description = "TOKEN_MISSING or TOKEN_INVALID"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: needs owner or admin"),
))]
pub async fn create_key(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    ApiJson(request): ApiJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKeyView>), ApiError> {
    let user = principal.require(Role::Admin)?;
    let label = Label::parse(&request.label).map_err(invalid)?;
    let environment = match request.environment.as_deref() {
        None => state.config.environment,
        Some(raw) => raw.parse::<Environment>().map_err(invalid)?,
    };
    if environment != state.config.environment {
        return Err(ApiError::Conflict(format!(
            "this server runs in the {0} environment and can only create {0} keys ({1}…); a {2} key \
             would never work here",
            state.config.environment,
            state.config.environment.prefix(),
            environment,
        )));
    }
    let (key, new) =
        mint(&state, &principal, user, label, environment, vec![Scope::AgentConnect], Timestamp::now()).await?;
    let record = state.store.insert_key(new, &principal.audit_context(&meta)).await?;
    state.verifier.forget_unknown(&key);
    tracing::info!(key_id = %record.id, tenant = %record.tenant_id, "API key created");
    Ok((StatusCode::CREATED, Json(created_view(&record, &key))))
}

/// Lists the tenant's keys (never the keys themselves), newest first.
#[utoipa::path(get, path = "/v1/keys", security(("session" = [])), responses(
    (status = 200, body = KeyListView),
    (status = 401, body = ErrorBody, description = "TOKEN_MISSING or TOKEN_INVALID"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: an API key cannot list keys"),
))]
pub async fn list_keys(State(state): State<AppState>, principal: Principal) -> Result<Json<KeyListView>, ApiError> {
    principal.require(Role::Member)?;
    let keys = state.store.list_keys(principal.tenant_id()).await?;
    Ok(Json(KeyListView { keys: keys.iter().map(KeyView::of).collect() }))
}

/// One key of the tenant.
#[utoipa::path(get, path = "/v1/keys/{id}", security(("session" = [])), params(("id" = String, Path)), responses(
    (status = 200, body = KeyView),
    (status = 404, body = ErrorBody, description = "NOT_FOUND"),
))]
pub async fn get_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    principal.require(Role::Member)?;
    let key_id = parse_id(&id)?;
    let record = state.store.get_key(principal.tenant_id(), &key_id).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(KeyView::of(&record)))
}

/// Revokes a key at once and for good. The next request with it gets 401.
#[utoipa::path(post, path = "/v1/keys/{id}/revoke", security(("session" = [])), params(("id" = String, Path)), responses(
    (status = 200, body = KeyView, description = "Revoked (revoking a revoked key changes nothing)"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: needs owner or admin"),
    (status = 404, body = ErrorBody, description = "NOT_FOUND"),
))]
pub async fn revoke_key(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    principal.require(Role::Admin)?;
    let key_id = parse_id(&id)?;
    let record = state
        .store
        .revoke_key(principal.tenant_id(), &key_id, Timestamp::now(), &principal.audit_context(&meta))
        .await
        .map_err(|err| store_error(err, &id))?;
    state.verifier.forget_key(&key_id);
    tracing::info!(key_id = %key_id, "API key revoked");
    Ok(Json(KeyView::of(&record)))
}

/// Deletes a key: it stops working and leaves the list; its audit history stays.
#[utoipa::path(delete, path = "/v1/keys/{id}", security(("session" = [])), params(("id" = String, Path)), responses(
    (status = 204, description = "Deleted"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: needs owner or admin"),
    (status = 404, body = ErrorBody, description = "NOT_FOUND"),
))]
pub async fn delete_key(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    let key_id = parse_id(&id)?;
    state
        .store
        .delete_key(principal.tenant_id(), &key_id, Timestamp::now(), &principal.audit_context(&meta))
        .await
        .map_err(|err| store_error(err, &id))?;
    state.verifier.forget_key(&key_id);
    tracing::info!(key_id = %key_id, "API key deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Creates a replacement key; the old one stops now or after a grace period.
#[utoipa::path(post, path = "/v1/keys/{id}/rotate", request_body(content = Option<RotateKeyRequest>, description = "Optional: the new label and a grace period"), security(("session" = [])),
    params(("id" = String, Path)), responses(
    (status = 201, body = RotatedKeyView, description = "The new key (shown once) and the replaced key"),
    (status = 400, body = ErrorBody, description = "INVALID_REQUEST: bad label or grace period"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: needs owner or admin"),
    (status = 404, body = ErrorBody, description = "NOT_FOUND"),
    (status = 409, body = ErrorBody, description = "CONFLICT: the key is revoked or expired"),
))]
pub async fn rotate_key(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path(id): Path<String>,
    OptionalJson(request): OptionalJson<RotateKeyRequest>,
) -> Result<(StatusCode, Json<RotatedKeyView>), ApiError> {
    let user = principal.require(Role::Admin)?;
    let key_id = parse_id(&id)?;
    let old = state.store.get_key(principal.tenant_id(), &key_id).await?.ok_or_else(|| not_found(&id))?;
    let now = Timestamp::now();
    let label = match request.label.as_deref() {
        Some(raw) => Label::parse(raw).map_err(invalid)?,
        None => default_rotated_label(&old.label, now),
    };
    let grace = request.expire_old_after_seconds.unwrap_or(0);
    if grace > state.config.max_rotation_grace_secs {
        return Err(ApiError::InvalidRequest(format!(
            "expire_old_after_seconds is at most {} ({} days)",
            state.config.max_rotation_grace_secs,
            state.config.max_rotation_grace_secs / 86_400
        )));
    }
    let (key, new) = mint(&state, &principal, user, label, old.environment, old.scopes.clone(), now).await?;
    let (old, new) = state
        .store
        .rotate_key(principal.tenant_id(), &key_id, new, now.plus_seconds(grace), &principal.audit_context(&meta))
        .await
        .map_err(|err| store_error(err, &id))?;
    state.verifier.forget_key(&key_id);
    state.verifier.forget_unknown(&key);
    tracing::info!(old_key_id = %old.id, new_key_id = %new.id, grace_secs = grace, "API key rotated");
    Ok((StatusCode::CREATED, Json(RotatedKeyView { new_key: created_view(&new, &key), replaced: KeyView::of(&old) })))
}

/// `"<old label> (rotated 2026-11-23)"`, shortened to fit the label limit.
fn default_rotated_label(old: &Label, now: Timestamp) -> Label {
    let suffix = format!(" (rotated {})", now.date_string());
    let room = MAX_LABEL_CHARS.saturating_sub(suffix.chars().count());
    let base: String = old.as_str().chars().take(room).collect();
    Label::from_trusted(format!("{}{suffix}", base.trim_end()))
}
