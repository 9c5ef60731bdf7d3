//! JSON on the wire. These are not database rows: each is mapped explicitly from domain records,
//! so a new column never leaks into a response by accident.

use std::collections::BTreeMap;

use prom_core::access::Scope;
use prom_core::audit::{ActorView, AuditEvent, AuditTarget};
use prom_core::service::{Prices, ServiceRecord, Upstream};
use prom_core::store::{KeyRecord, KeyStatus};
use prom_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::redact;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    pub password: String,
    /// The tenant slug to act in; needed only when the user belongs to several.
    #[serde(default)]
    #[schema(pattern = r"^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$")]
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
    /// What the key is for, such as the agent or machine that will use it: 1–100 characters,
    /// not only white space, no control characters.
    #[schema(max_length = 100, pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$")]
    pub label: String,
    /// `live` or `test`; defaults to the server's environment, and must match it (409 otherwise).
    #[serde(default)]
    #[schema(value_type = Option<KeyEnvironment>)]
    pub environment: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// Label of the new key; defaults to the old label plus today's date.
    #[serde(default)]
    #[schema(max_length = 100, pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$")]
    pub label: Option<String>,
    /// How long the old key keeps working; absent or 0 stops it at once.
    /// At most `max_rotation_grace_secs` (30 days by default).
    #[serde(default, deserialize_with = "whole_seconds")]
    #[schema(minimum = 0, maximum = 2_592_000)]
    pub expire_old_after_seconds: Option<u64>,
}

/// The schema of a price list in requests: at most 1000 tools, each named with 1–128 characters,
/// priced as a string of decimal digits.
fn price_list() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let amount = ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"^[0-9]{1,38}$"));
    let name = ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(128));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(utoipa::openapi::Schema::Object(amount.build())))
        .property_names(Some(utoipa::openapi::Schema::Object(name.build())))
        .max_properties(Some(1000))
        .build()
}

/// A key's environment (the schema of `environment`).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum KeyEnvironment {
    Live,
    Test,
}

/// A count of seconds, written as a whole JSON number (`30` or `30.0`: JSON Schema's integer).
fn whole_seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let number = Option::<serde_json::Number>::deserialize(deserializer)?;
    let Some(number) = number else { return Ok(None) };
    if let Some(whole) = number.as_u64() {
        return Ok(Some(whole));
    }
    match number.as_f64() {
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "checked whole and in range")]
        Some(float) if float.fract() == 0.0 && (0.0..1.8e19).contains(&float) => Ok(Some(float as u64)),
        _ => Err(serde::de::Error::custom("a whole, non-negative number of seconds")),
    }
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
    /// `{"type":"api_key"|"user"|"service","id","label"}`, or null.
    #[schema(value_type = Option<Object>)]
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

/// An upstream as a publisher sends it: one of the two forms (the schema of `upstream` in
/// requests; they are read as [`UpstreamSpec`]).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum UpstreamInput {
    Http(HttpUpstreamInput),
    Stdio(StdioUpstreamInput),
}

/// MCP Streamable HTTP.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpUpstreamInput {
    /// An absolute `http://` or `https://` URL (https at a public address, unless the operator
    /// allows more: 403 otherwise).
    #[schema(
        max_length = 2048,
        pattern = r"^https?://[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[!-~]*)?$"
    )]
    pub url: String,
}

/// A program the gateway runs (only one the operator defined: 403 otherwise).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StdioUpstreamInput {
    #[schema(min_length = 1)]
    pub command: String,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
}

/// Where a service's traffic goes: `{"url"}` (MCP Streamable HTTP) or `{"command","args"?,"env"?}`
/// (a program the gateway runs and speaks MCP stdio with; only commands the operator allowed).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// An absolute `http://` or `https://` URL (https at a public address, unless the operator
    /// allows more: 403 otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        max_length = 2048,
        pattern = r"^https?://[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[!-~]*)?$"
    )]
    pub url: Option<String>,
    /// A command the server's operator listed in `stdio_commands`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServiceRequest {
    /// The URL name: `/mcp/{slug}`. 2–63 lowercase letters, digits and dashes.
    #[schema(pattern = r"^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$")]
    pub slug: String,
    /// What the App Store shows, 1–100 characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub name: String,
    /// At most 2000 characters.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    #[schema(value_type = UpstreamInput)]
    pub upstream: UpstreamSpec,
    /// Price per tool in the token's smallest unit, as decimal strings (`{"search":"250"}`).
    /// Tools without a price are free.
    #[serde(default)]
    #[schema(schema_with = price_list)]
    pub prices: BTreeMap<String, serde_json::Value>,
    /// Whether a paid call whose result has `isError: true` is charged. Defaults to `false`: such
    /// calls are not charged.
    #[serde(default)]
    pub charge_tool_errors: bool,
}

/// A partial update: fields left out stay as they are; `prices` replaces the whole price list.
/// The slug cannot change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateServiceRequest {
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<UpstreamInput>)]
    pub upstream: Option<UpstreamSpec>,
    #[serde(default)]
    #[schema(schema_with = price_list)]
    pub prices: Option<BTreeMap<String, serde_json::Value>>,
    /// Whether a paid call whose result has `isError: true` is charged.
    #[serde(default)]
    pub charge_tool_errors: Option<bool>,
}

/// A service as the App Store lists it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceView {
    pub slug: String,
    pub name: String,
    pub description: String,
    /// The slug of the tenant that published the service.
    pub publisher: String,
    /// Price per tool in the token's smallest unit, as decimal strings.
    #[schema(value_type = BTreeMap<String, String>)]
    pub prices: Prices,
    /// Whether a paid call whose result has `isError: true` is charged (`false`: only successful
    /// results are charged).
    #[serde(default)]
    pub charge_tool_errors: bool,
    /// Where agents connect: `/mcp/{slug}` on this server.
    pub mcp_path: String,
    pub created_at: String,
    pub updated_at: String,
    /// Shown only to signed-in owners and admins of the publishing tenant (not to its members,
    /// agents or other tenants), and masked even then: URLs and stdio environments may hold
    /// credentials, so userinfo, query values and environment values read `***`. A change of
    /// upstream sends it whole again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamSpec>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceListView {
    pub services: Vec<ServiceView>,
}

impl UpstreamSpec {
    /// `upstream` with its secrets masked (see [`crate::redact`]): what a view may show.
    pub fn masked(upstream: &Upstream) -> Self {
        match upstream {
            Upstream::Http { url } => Self { url: Some(redact::url_for_view(url)), ..Self::default() },
            Upstream::Stdio { command, args, env } => Self {
                url: None,
                command: Some(command.clone()),
                args: Some(args.clone()),
                env: Some(env.keys().map(|name| (name.clone(), redact::MASK.to_owned())).collect()),
            },
        }
    }
}

impl ServiceView {
    /// The view of `record` published by the tenant `publisher`; `with_upstream` (masked) only for
    /// that tenant's signed-in owners and admins.
    pub fn of(record: &ServiceRecord, publisher: &str, with_upstream: bool) -> Self {
        Self {
            slug: record.slug.to_string(),
            name: record.name.clone(),
            description: record.description.clone(),
            publisher: publisher.to_owned(),
            prices: record.prices.clone(),
            charge_tool_errors: record.charge_tool_errors,
            mcp_path: format!("/mcp/{}", record.slug),
            created_at: record.created_at.to_string(),
            updated_at: record.updated_at.to_string(),
            upstream: with_upstream.then(|| UpstreamSpec::masked(&record.upstream)),
        }
    }
}
