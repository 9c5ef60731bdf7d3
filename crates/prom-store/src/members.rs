//! The members of a tenant: listing them, adding one by e-mail, changing a role, removing one.
//!
//! Role changes and removals lock the tenant's row first (a no-op `UPDATE`: PostgreSQL's row lock;
//! SQLite's single writer already serialises), so two owners demoting each other at once cannot
//! both see the other still there: a tenant always keeps an owner.

use prom_core::access::Role;
use prom_core::audit::{AuditAction, AuditContext, AuditTarget, NewAuditEvent};
use prom_core::id::{TenantId, UserId};
use prom_core::store::{MemberRecord, StoreError, StoreResult, UserRecord};
use prom_core::time::Timestamp;
use prom_core::user::Email;
use serde_json::json;

use crate::audit::insert_audit;
use crate::oauth::grants::revoke_member_grants;
use crate::rows::{UserRow, parse_role};
use crate::sessions::REVOKE_USER_SESSIONS;
use crate::{SqlStore, db_err, with_read, with_write};

#[derive(sqlx::FromRow)]
struct MemberRow {
    user_id: String,
    email: String,
    role: String,
    added_at: i64,
    has_password: bool,
}

impl TryFrom<MemberRow> for MemberRecord {
    type Error = StoreError;

    fn try_from(row: MemberRow) -> StoreResult<Self> {
        Ok(MemberRecord {
            user_id: UserId::from_trusted(row.user_id),
            email: Email::from_trusted(row.email),
            role: parse_role(&row.role)?,
            added_at: Timestamp::from_millis(row.added_at),
            has_password: row.has_password,
        })
    }
}

/// Locks a tenant's row for the rest of the transaction; `NotFound` if there is no such tenant.
macro_rules! lock_tenant {
    ($tx:expr, $tenant:expr) => {{
        let locked = sqlx::query("UPDATE tenants SET name = name WHERE id = $1")
            .bind($tenant.as_str())
            .execute(&mut *$tx)
            .await
            .map_err(db_err)?;
        if locked.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
    }};
}

/// Evaluates to the member's (role, e-mail address), or returns `NotFound`.
macro_rules! read_member {
    ($tx:expr, $tenant:expr, $user:expr) => {{
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT m.role, u.email FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.tenant_id = $1 AND m.user_id = $2",
        )
        .bind($tenant.as_str())
        .bind($user.as_str())
        .fetch_optional(&mut *$tx)
        .await
        .map_err(db_err)?;
        let (role, email) = row.ok_or(StoreError::NotFound)?;
        (parse_role(&role)?, Email::from_trusted(email))
    }};
}

/// Returns `Conflict` when the tenant has one owner (or none) left: the member about to stop
/// being one must not be the last.
macro_rules! keep_an_owner {
    ($tx:expr, $tenant:expr, $email:expr) => {{
        let owners: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE tenant_id = $1 AND role = 'owner'")
                .bind($tenant.as_str())
                .fetch_one(&mut *$tx)
                .await
                .map_err(db_err)?;
        if owners <= 1 {
            return Err(StoreError::Conflict(format!(
                "{} is the last owner of the tenant: make another member an owner first",
                $email
            )));
        }
    }};
}

pub(crate) async fn list_members(store: &SqlStore, tenant: &TenantId) -> StoreResult<Vec<MemberRecord>> {
    let rows: Vec<MemberRow> = with_read!(store, pool => {
        sqlx::query_as(
            "SELECT m.user_id, u.email, m.role, m.created_at AS added_at, u.password_hash <> '' AS has_password \
             FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.tenant_id = $1 ORDER BY u.email",
        )
        .bind(tenant.as_str())
        .fetch_all(pool)
        .await
        .map_err(db_err)?
    });
    rows.into_iter().map(MemberRecord::try_from).collect()
}

pub(crate) async fn add_member(
    store: &SqlStore,
    tenant: &TenantId,
    email: &Email,
    role: Role,
    ctx: &AuditContext,
) -> StoreResult<(UserRecord, bool)> {
    let now = Timestamp::now();
    with_write!(store, pool => {
        let mut tx = pool.begin().await.map_err(db_err)?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        // An empty hash matches no password (`PasswordHasherArgon2::verify`): the new user signs in
        // only after setting one with a password link.
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, '', $3) \
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(UserId::new().as_str())
        .bind(email.as_str())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let user_created = inserted.rows_affected() == 1;
        let user: UserRecord =
            sqlx::query_as::<_, UserRow>("SELECT id, email, password_hash, created_at FROM users WHERE email = $1")
                .bind(email.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?
                .into();
        let added = sqlx::query(
            "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, user_id) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(user.id.as_str())
        .bind(role.as_str())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if added.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("{email} is already a member of the tenant")));
        }
        let event = NewAuditEvent {
            at: now,
            tenant_id: Some(tenant.clone()),
            action: AuditAction::MemberAdd,
            context: ctx.clone(),
            target: Some(AuditTarget::user(&user.id, &user.email)),
            details: json!({ "role": role.as_str(), "user_created": user_created }),
        };
        insert_audit!(&mut *tx, &event)?;
        tx.commit().await.map_err(db_err)?;
        Ok((user, user_created))
    })
}

pub(crate) async fn set_member_role(
    store: &SqlStore,
    tenant: &TenantId,
    user: &UserId,
    role: Role,
    ctx: &AuditContext,
) -> StoreResult<()> {
    let now = Timestamp::now();
    with_write!(store, pool => {
        let mut tx = pool.begin().await.map_err(db_err)?;
        lock_tenant!(tx, tenant);
        let (from, email) = read_member!(tx, tenant, user);
        if from == role {
            return tx.commit().await.map_err(db_err);
        }
        if from == Role::Owner {
            keep_an_owner!(tx, tenant, email);
        }
        sqlx::query("UPDATE memberships SET role = $3 WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.as_str())
            .bind(user.as_str())
            .bind(role.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let event = NewAuditEvent {
            at: now,
            tenant_id: Some(tenant.clone()),
            action: AuditAction::MemberRoleChange,
            context: ctx.clone(),
            target: Some(AuditTarget::user(user, &email)),
            details: json!({ "from": from.as_str(), "to": role.as_str() }),
        };
        insert_audit!(&mut *tx, &event)?;
        tx.commit().await.map_err(db_err)
    })
}

pub(crate) async fn remove_member(
    store: &SqlStore,
    tenant: &TenantId,
    user: &UserId,
    ctx: &AuditContext,
) -> StoreResult<()> {
    let now = Timestamp::now();
    with_write!(store, pool => {
        let mut tx = pool.begin().await.map_err(db_err)?;
        lock_tenant!(tx, tenant);
        let (role, email) = read_member!(tx, tenant, user);
        if role == Role::Owner {
            keep_an_owner!(tx, tenant, email);
        }
        sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.as_str())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let sessions = sqlx::query(REVOKE_USER_SESSIONS)
            .bind(user.as_str())
            .bind(tenant.as_str())
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        let event = NewAuditEvent {
            at: now,
            tenant_id: Some(tenant.clone()),
            action: AuditAction::MemberRemove,
            context: ctx.clone(),
            target: Some(AuditTarget::user(user, &email)),
            details: json!({ "role": role.as_str(), "sessions_revoked": sessions }),
        };
        insert_audit!(&mut *tx, &event)?;
        // The OAuth grants the member consented to go with them, like their sessions (each with
        // its `oauth.revoke` row); the API keys they created belong to the tenant and stay.
        revoke_member_grants!(tx, user, tenant, now, ctx);
        tx.commit().await.map_err(db_err)
    })
}
