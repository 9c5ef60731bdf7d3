//! Tenants, users and memberships (`prom admin create-user`, sign-in look-ups); first-run setup
//! lives in `setup.rs` and the members page's changes in `members.rs`.

use async_trait::async_trait;
use prom_core::access::Role;
use prom_core::audit::{AuditAction, AuditContext, AuditTarget, NewAuditEvent};
use prom_core::id::{TenantId, UserId};
use prom_core::store::{
    MemberRecord, Membership, NewPasswordLink, ProvisionMember, ProvisionOutcome, StoreError, StoreResult, Tenant,
    UserRecord, UserStore,
};
use prom_core::time::Timestamp;
use prom_core::user::{Email, TenantSlug};
use serde_json::json;

use crate::audit::insert_audit;
use crate::rows::{MembershipRow, TenantRow, UserRow};
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

    async fn has_users(&self) -> StoreResult<bool> {
        crate::setup::has_users(self).await
    }

    async fn create_first_owner(
        &self,
        request: ProvisionMember,
        tenant_name: &str,
        ctx: &AuditContext,
    ) -> StoreResult<ProvisionOutcome> {
        crate::setup::create_first_owner(self, request, tenant_name, ctx).await
    }

    async fn list_members(&self, tenant: &TenantId) -> StoreResult<Vec<MemberRecord>> {
        crate::members::list_members(self, tenant).await
    }

    async fn add_member(
        &self,
        tenant: &TenantId,
        email: &Email,
        role: Role,
        ctx: &AuditContext,
    ) -> StoreResult<(UserRecord, bool)> {
        crate::members::add_member(self, tenant, email, role, ctx).await
    }

    async fn set_member_role(
        &self,
        tenant: &TenantId,
        user: &UserId,
        role: Role,
        ctx: &AuditContext,
    ) -> StoreResult<()> {
        crate::members::set_member_role(self, tenant, user, role, ctx).await
    }

    async fn remove_member(&self, tenant: &TenantId, user: &UserId, ctx: &AuditContext) -> StoreResult<()> {
        crate::members::remove_member(self, tenant, user, ctx).await
    }

    async fn create_password_link(&self, link: NewPasswordLink) -> StoreResult<()> {
        crate::password_links::create_password_link(self, link).await
    }

    async fn redeem_password_link(
        &self,
        digest: &[u8],
        password_hash: &str,
        now: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<UserRecord> {
        crate::password_links::redeem_password_link(self, digest, password_hash, now, ctx).await
    }
}
