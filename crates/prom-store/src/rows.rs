//! Database rows and their mapping to domain records. Rows hold only portable types (text,
//! 64-bit integers, bytes, booleans: SQLite's 0/1 integers decode as `bool` too) so one definition
//! decodes on SQLite and PostgreSQL alike.

use prom_core::access::{Role, Scope};
use prom_core::audit::{ActorView, AuditEvent, AuditTarget};
use prom_core::id::{KeyId, ServiceId, SessionId, TenantId, UserId};
use prom_core::key::Environment;
use prom_core::service::{ServiceRecord, ServiceSlug};
use prom_core::store::{KeyRecord, SessionRecord, StoreError, StoreResult, Tenant, UserRecord};
use prom_core::time::Timestamp;
use prom_core::user::{Email, Label, TenantSlug};

pub(crate) const KEY_COLUMNS: &str = "id, tenant_id, label, environment, last4, scopes, created_by, \
     created_at, last_used_at, revoked_at, expires_at, deleted_at, rotated_from";

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    id: String,
    tenant_id: String,
    label: String,
    environment: String,
    last4: String,
    scopes: String,
    created_by: Option<String>,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
    expires_at: Option<i64>,
    deleted_at: Option<i64>,
    rotated_from: Option<String>,
}

fn ts(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(Timestamp::from_millis)
}

impl TryFrom<KeyRow> for KeyRecord {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> StoreResult<Self> {
        let environment: Environment = row
            .environment
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("key {} has environment {:?}", row.id, row.environment)))?;
        Ok(KeyRecord {
            id: KeyId::from_trusted(row.id),
            tenant_id: TenantId::from_trusted(row.tenant_id),
            label: Label::from_trusted(row.label),
            environment,
            last4: row.last4,
            scopes: Scope::split(&row.scopes),
            created_by: row.created_by.map(UserId::from_trusted),
            created_at: Timestamp::from_millis(row.created_at),
            last_used_at: ts(row.last_used_at),
            revoked_at: ts(row.revoked_at),
            expires_at: ts(row.expires_at),
            deleted_at: ts(row.deleted_at),
            rotated_from: row.rotated_from.map(KeyId::from_trusted),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    id: String,
    slug: String,
    name: String,
    created_at: i64,
}

impl From<TenantRow> for Tenant {
    fn from(row: TenantRow) -> Self {
        Tenant {
            id: TenantId::from_trusted(row.id),
            slug: TenantSlug::from_trusted(row.slug),
            name: row.name,
            created_at: Timestamp::from_millis(row.created_at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: String,
    email: String,
    password_hash: String,
    created_at: i64,
}

impl From<UserRow> for UserRecord {
    fn from(row: UserRow) -> Self {
        UserRecord {
            id: UserId::from_trusted(row.id),
            email: Email::from_trusted(row.email),
            password_hash: row.password_hash,
            created_at: Timestamp::from_millis(row.created_at),
        }
    }
}

pub(crate) fn parse_role(raw: &str) -> StoreResult<Role> {
    raw.parse().map_err(|_| StoreError::Corrupt(format!("unknown role {raw:?}")))
}

#[derive(sqlx::FromRow)]
pub(crate) struct MembershipRow {
    #[sqlx(flatten)]
    tenant: TenantRow,
    role: String,
}

impl MembershipRow {
    pub(crate) fn into_parts(self) -> StoreResult<(Tenant, Role)> {
        Ok((self.tenant.into(), parse_role(&self.role)?))
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    session_id: String,
    user_id: String,
    email: String,
    #[sqlx(flatten)]
    tenant: TenantRow,
    role: String,
    expires_at: i64,
    revoked_at: Option<i64>,
    last_seen_at: i64,
}

impl TryFrom<SessionRow> for SessionRecord {
    type Error = StoreError;

    fn try_from(row: SessionRow) -> StoreResult<Self> {
        Ok(SessionRecord {
            id: SessionId::from_trusted(row.session_id),
            user_id: UserId::from_trusted(row.user_id),
            email: Email::from_trusted(row.email),
            tenant: row.tenant.into(),
            role: parse_role(&row.role)?,
            expires_at: Timestamp::from_millis(row.expires_at),
            revoked_at: ts(row.revoked_at),
            last_seen_at: Timestamp::from_millis(row.last_seen_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: i64,
    at: i64,
    tenant_id: Option<String>,
    action: String,
    actor_kind: String,
    actor_id: Option<String>,
    actor_name: Option<String>,
    target_kind: Option<String>,
    target_id: Option<String>,
    target_label: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    details: String,
}

impl From<AuditRow> for AuditEvent {
    fn from(row: AuditRow) -> Self {
        let target = match (row.target_kind, row.target_id) {
            (Some(kind), Some(id)) => Some(AuditTarget { kind, id, label: row.target_label }),
            _ => None,
        };
        AuditEvent {
            id: row.id,
            at: Timestamp::from_millis(row.at),
            tenant_id: row.tenant_id.map(TenantId::from_trusted),
            action: row.action,
            actor: ActorView { kind: row.actor_kind, id: row.actor_id, name: row.actor_name },
            target,
            ip: row.ip,
            user_agent: row.user_agent,
            // Details are written by this code as JSON; an unreadable value is shown as a string
            // rather than hiding the event.
            details: serde_json::from_str(&row.details).unwrap_or(serde_json::Value::String(row.details)),
        }
    }
}

pub(crate) const SERVICE_COLUMNS: &str =
    "id, tenant_id, slug, name, description, upstream, prices, charge_tool_errors, created_at, updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct ServiceRow {
    id: String,
    tenant_id: String,
    slug: String,
    name: String,
    description: String,
    upstream: String,
    prices: String,
    charge_tool_errors: bool,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ServiceRow> for ServiceRecord {
    type Error = StoreError;

    fn try_from(row: ServiceRow) -> StoreResult<Self> {
        // Both columns are written by this code from the same types; failing to read one back means
        // the data was changed outside it, and guessing would route traffic or charge wrongly. The
        // message gives a position only: serde's text may quote the value, and an upstream can hold
        // a secret.
        let corrupt = |what: &str, err: serde_json::Error| {
            StoreError::Corrupt(format!(
                "service {} has unreadable {what} (line {}, column {})",
                row.slug,
                err.line(),
                err.column()
            ))
        };
        let upstream = serde_json::from_str(&row.upstream).map_err(|err| corrupt("upstream", err))?;
        let prices = serde_json::from_str(&row.prices).map_err(|err| corrupt("prices", err))?;
        Ok(ServiceRecord {
            id: ServiceId::from_trusted(row.id),
            tenant_id: TenantId::from_trusted(row.tenant_id),
            slug: ServiceSlug::from_trusted(row.slug),
            name: row.name,
            description: row.description,
            upstream,
            prices,
            charge_tool_errors: row.charge_tool_errors,
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        })
    }
}
