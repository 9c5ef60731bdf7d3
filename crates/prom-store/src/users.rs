//! Tenants, users, memberships and sign-in sessions.

use async_trait::async_trait;
use prom_core::audit::{AuditAction, AuditContext, AuditTarget, NewAuditEvent};
use prom_core::id::{TenantId, UserId};
use prom_core::session::SessionDigest;
use prom_core::store::{
    Membership, NewSession, ProvisionMember, ProvisionOutcome, SessionRecord, SessionStore, StoreError, StoreResult,
    Tenant, UserRecord, UserStore,
};
use prom_core::time::Timestamp;
use prom_core::user::{Email, TenantSlug};
use serde_json::json;

use crate::audit::insert_audit;
use crate::rows::{MembershipRow, SessionRow, TenantRow, UserRow};
use crate::{SqlStore, db_err, with_read, with_write};

const USER_COLUMNS: &str = "id, email, password_hash, created_at";

#[async_trait]
impl UserStore for SqlStore {
    async fn provision_member(&self, request: ProvisionMember, ctx: &AuditContext) -> StoreResult<ProvisionOutcome> {
        let now = Timestamp::now();
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;

            let inserted = sqlx::query(
                "INSERT INTO tenants (id, slug, name, created_at) VALUES ($1, $2, $2, $3) ON CONFLICT (slug) DO NOTHING",
            )
            .bind(TenantId::new().as_str())
            .bind(request.tenant.as_str())
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let tenant: Tenant = sqlx::query_as::<_, TenantRow>("SELECT id, slug, name, created_at FROM tenants WHERE slug = $1")
                .bind(request.tenant.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?
                .into();

            let existing: Option<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
                .bind(request.email.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            let user_created = existing.is_none();
            let user: UserRecord = match (existing, request.password_hash) {
                (None, None) => {
                    return Err(StoreError::Conflict(format!(
                        "{} has no account yet: a password is needed to create one",
                        request.email
                    )));
                }
                (None, Some(hash)) => {
                    let user = UserRecord { id: UserId::new(), email: request.email.clone(), password_hash: hash, created_at: now };
                    sqlx::query("INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)")
                        .bind(user.id.as_str())
                        .bind(user.email.as_str())
                        .bind(&user.password_hash)
                        .bind(now.as_millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    user
                }
                (Some(row), new_hash) => {
                    let mut user = UserRecord::from(row);
                    if let Some(hash) = new_hash {
                        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                            .bind(&hash)
                            .bind(user.id.as_str())
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err)?;
                        user.password_hash = hash;
                    }
                    user
                }
            };

            sqlx::query(
                "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role",
            )
            .bind(tenant.id.as_str())
            .bind(user.id.as_str())
            .bind(request.role.as_str())
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;

            let event = NewAuditEvent {
                at: now,
                tenant_id: Some(tenant.id.clone()),
                action: AuditAction::MemberAdd,
                context: ctx.clone(),
                target: Some(AuditTarget::user(&user.id, &user.email)),
                details: json!({ "role": request.role.as_str(), "user_created": user_created }),
            };
            insert_audit!(&mut *tx, &event)?;
            tx.commit().await.map_err(db_err)?;
            Ok(ProvisionOutcome { user, tenant, user_created, tenant_created: inserted.rows_affected() == 1 })
        })
    }

    async fn find_user_by_email(&self, email: &Email) -> StoreResult<Option<UserRecord>> {
        let row: Option<UserRow> = with_read!(self, pool => {
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
                .bind(email.as_str())
                .fetch_optional(pool)
                .await
                .map_err(db_err)?
        });
        Ok(row.map(UserRecord::from))
    }

    async fn memberships(&self, user_id: &UserId) -> StoreResult<Vec<Membership>> {
        let rows: Vec<MembershipRow> = with_read!(self, pool => {
            sqlx::query_as(
                "SELECT t.id, t.slug, t.name, t.created_at, m.role FROM memberships m \
                 JOIN tenants t ON t.id = m.tenant_id WHERE m.user_id = $1 ORDER BY t.slug",
            )
            .bind(user_id.as_str())
            .fetch_all(pool)
            .await
            .map_err(db_err)?
        });
        rows.into_iter().map(|row| row.into_parts().map(|(tenant, role)| Membership { tenant, role })).collect()
    }

    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        let row: Option<TenantRow> = with_read!(self, pool => {
            sqlx::query_as("SELECT id, slug, name, created_at FROM tenants WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(pool)
                .await
                .map_err(db_err)?
        });
        Ok(row.map(Tenant::from))
    }

    async fn find_tenant_by_slug(&self, slug: &TenantSlug) -> StoreResult<Option<Tenant>> {
        let row: Option<TenantRow> = with_read!(self, pool => {
            sqlx::query_as("SELECT id, slug, name, created_at FROM tenants WHERE slug = $1")
                .bind(slug.as_str())
                .fetch_optional(pool)
                .await
                .map_err(db_err)?
        });
        Ok(row.map(Tenant::from))
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn create_session(&self, session: NewSession, ctx: &AuditContext) -> StoreResult<()> {
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            sqlx::query(
                "INSERT INTO sessions (id, digest, user_id, tenant_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(session.id.as_str())
            .bind(&session.digest.as_bytes()[..])
            .bind(session.user_id.as_str())
            .bind(session.tenant_id.as_str())
            .bind(session.created_at.as_millis())
            .bind(session.expires_at.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let event = NewAuditEvent {
                at: session.created_at,
                tenant_id: Some(session.tenant_id.clone()),
                action: AuditAction::UserLogin,
                context: ctx.clone(),
                target: None,
                details: json!({ "session_id": session.id.as_str(), "expires_at": session.expires_at.to_string() }),
            };
            insert_audit!(&mut *tx, &event)?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn find_session(&self, digest: &SessionDigest) -> StoreResult<Option<SessionRecord>> {
        let row: Option<SessionRow> = with_read!(self, pool => {
            sqlx::query_as(
                "SELECT s.id AS session_id, s.user_id, u.email, t.id, t.slug, t.name, t.created_at, m.role, \
                        s.expires_at, s.revoked_at \
                 FROM sessions s \
                 JOIN users u ON u.id = s.user_id \
                 JOIN memberships m ON m.user_id = s.user_id AND m.tenant_id = s.tenant_id \
                 JOIN tenants t ON t.id = s.tenant_id \
                 WHERE s.digest = $1",
            )
            .bind(&digest.as_bytes()[..])
            .fetch_optional(pool)
            .await
            .map_err(db_err)?
        });
        row.map(SessionRecord::try_from).transpose()
    }

    async fn revoke_session(&self, session: &SessionRecord, at: Timestamp, ctx: &AuditContext) -> StoreResult<()> {
        with_write!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            let done = sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(at.as_millis())
                .bind(session.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            if done.rows_affected() == 1 {
                let event = NewAuditEvent {
                    at,
                    tenant_id: Some(session.tenant.id.clone()),
                    action: AuditAction::UserLogout,
                    context: ctx.clone(),
                    target: None,
                    details: json!({ "session_id": session.id.as_str() }),
                };
                insert_audit!(&mut *tx, &event)?;
            }
            tx.commit().await.map_err(db_err)
        })
    }
}
