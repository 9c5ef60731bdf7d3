//! JSON on the wire. These are not database rows: each is mapped explicitly from domain records,
//! so a new column never leaks into a response by accident.

use prom_core::access::Scope;
use prom_core::audit::{ActorView, AuditEvent, AuditTarget};
use prom_core::store::{KeyRecord, KeyStatus};
use prom_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// The tenant slug to act in; needed only when the user belongs to several.
    #[serde(default)]
    pub tenant: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// The session token (`prom_sess_…`): send it as `Authorization: Bearer <token>` to `/v1`.
    pub token: String,
    pub expires_at: String,
    pub tenant: String,
    pub role: String,
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// What the key is for, such as the agent or machine that will use it.
    pub label: String,
    /// `live` or `test`; defaults to the server's environment, and must match it.
    #[serde(default)]
    pub environment: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// Label of the new key; defaults to the old label plus today's date.
    #[serde(default)]
    pub label: Option<String>,
    /// How long the old key keeps working; absent or 0 stops it at once.
    #[serde(default)]
    pub expire_old_after_seconds: Option<u64>,
}

/// A newly created key. The only response that ever contains the key itself.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKeyView {
    pub id: String,
    pub label: String,
    /// The key. Shown once: store it now, it cannot be retrieved again.
    pub key: String,
    /// The display form, `prom_live_...x7z9`.
    pub display: String,
    pub environment: String,
    pub scopes: Vec<String>,
    pub created_at: String,
}

/// The result of a rotation: the new key (shown once) and the state of the key it replaces.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RotatedKeyView {
    #[serde(flatten)]
    pub new_key: CreatedKeyView,
    pub replaced: KeyView,
}

/// A key as listed: never the key itself.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    pub label: String,
    pub display: String,
    pub environment: String,
    pub scopes: Vec<String>,
    /// `active`, `revoked`, `expired` or `deleted`.
    pub status: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    /// When a rotated key stops working.
    pub expires_at: Option<String>,
    pub rotated_from: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyListView {
    pub keys: Vec<KeyView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEventView {
    pub id: i64,
    pub at: String,
    pub action: String,
    /// `{"type":"user"|"api_key"|"admin_cli"|"anonymous","id","name"}`.
    #[schema(value_type = Object)]
    pub actor: serde_json::Value,
    /// `{"type":"api_key"|"user","id","label"}`, or null.
    #[schema(value_type = Object)]
    pub target: Option<serde_json::Value>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditListView {
    pub events: Vec<AuditEventView>,
    /// Pass as `before` to get the next (older) page; null on the last page.
    pub next_before: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WhoamiView {
    pub tenant: TenantView,
    pub key_id: String,
    pub label: String,
    pub display: String,
    pub environment: String,
    pub scopes: Vec<String>,
}

pub fn scopes(scopes: &[Scope]) -> Vec<String> {
    scopes.iter().map(|s| s.as_str().to_owned()).collect()
}

fn time(at: Option<Timestamp>) -> Option<String> {
    at.map(|t| t.to_string())
}

impl KeyView {
    pub fn of(record: &KeyRecord) -> Self {
        let status = match record.status(Timestamp::now()) {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Expired => "expired",
            KeyStatus::Deleted => "deleted",
        };
        Self {
            id: record.id.to_string(),
            label: record.label.to_string(),
            display: record.display(),
            environment: record.environment.to_string(),
            scopes: scopes(&record.scopes),
            status: status.into(),
            created_at: record.created_at.to_string(),
            last_used_at: time(record.last_used_at),
            revoked_at: time(record.revoked_at),
            expires_at: time(record.expires_at),
            rotated_from: record.rotated_from.as_ref().map(ToString::to_string),
        }
    }
}

fn actor_json(actor: &ActorView) -> serde_json::Value {
    serde_json::json!({ "type": actor.kind, "id": actor.id, "name": actor.name })
}

fn target_json(target: &AuditTarget) -> serde_json::Value {
    serde_json::json!({ "type": target.kind, "id": target.id, "label": target.label })
}

impl AuditEventView {
    pub fn of(event: &AuditEvent) -> Self {
        Self {
            id: event.id,
            at: event.at.to_string(),
            action: event.action.clone(),
            actor: actor_json(&event.actor),
            target: event.target.as_ref().map(target_json),
            ip: event.ip.clone(),
            user_agent: event.user_agent.clone(),
            details: event.details.clone(),
        }
    }
}
