//! `GET /v1/audit`: the tenant's audit log, newest first, filterable and paged.

use axum::Json;
use axum::extract::State;
use prom_core::access::Role;
use prom_core::audit::{AuditAction, AuditFilter, MAX_AUDIT_PAGE};
use prom_core::id::KeyId;
use serde::Deserialize;
use utoipa::IntoParams;

use super::ApiQuery;
use super::views::{AuditEventView, AuditListView};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The schema of `action`: the actions the audit log records, or empty for any. Made from
/// [`AuditAction::ALL`], so it names every action the server accepts.
#[derive(Debug)]
pub struct ActionName;

impl utoipa::PartialSchema for ActionName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let names = std::iter::once("").chain(AuditAction::ALL.iter().map(|action| action.as_str()));
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names)).into()
    }
}

impl utoipa::ToSchema for ActionName {}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this action, such as `api_key.revoke`.
    #[param(value_type = Option<ActionName>)]
    pub action: Option<String>,
    /// Only events about this key.
    #[param(pattern = r"^$|^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub key_id: Option<String>,
    /// Only events older than this event id (from `next_before`).
    pub before: Option<i64>,
    /// At most this many events (1–500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/audit", security(("session" = [])), params(AuditQuery), responses(
    (status = 200, body = AuditListView),
    (status = 400, body = ErrorBody, description = "INVALID_REQUEST: unknown action or malformed parameter"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: an API key cannot read the audit log"),
))]
pub async fn list_audit(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditListView>, ApiError> {
    principal.require(Role::Member)?;
    let action = match query.action.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(raw) => Some(AuditAction::parse(raw).ok_or_else(|| {
            let known: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
            ApiError::InvalidRequest(format!("unknown action {raw:?}; known actions: {}", known.join(", ")))
        })?),
    };
    let key_id = match query.key_id.as_deref().filter(|k| !k.is_empty()) {
        None => None,
        Some(raw) => {
            Some(KeyId::parse(raw).ok_or_else(|| ApiError::InvalidRequest("key_id is not a key id (a UUID)".into()))?)
        }
    };
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_AUDIT_PAGE {
        return Err(ApiError::InvalidRequest(format!("limit must be between 1 and {MAX_AUDIT_PAGE}")));
    }
    let filter = AuditFilter { action, key_id, before: query.before, limit, ..AuditFilter::default() };
    let events = state.store.list_audit(principal.tenant_id(), &filter).await?;
    let next_before = (events.len() == limit as usize).then(|| events.last().map(|e| e.id)).flatten();
    Ok(Json(AuditListView { events: events.iter().map(AuditEventView::of).collect(), next_before }))
}
