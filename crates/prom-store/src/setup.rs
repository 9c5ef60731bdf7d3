//! First-run setup: the deployment's first user, who owns its first tenant.

use prom_core::audit::{AuditAction, AuditContext, AuditTarget, NewAuditEvent};
use prom_core::id::{TenantId, UserId};
use prom_core::store::{ProvisionMember, ProvisionOutcome, StoreError, StoreResult, Tenant, UserRecord};
use prom_core::time::Timestamp;
use serde_json::json;

use crate::audit::insert_audit;
use crate::{Backend, SqlStore, db_err, with_read, with_write};

pub(crate) async fn has_users(store: &SqlStore) -> StoreResult<bool> {
    with_read!(store, pool => {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users)").fetch_one(pool).await.map_err(db_err)
    })
}

pub(crate) async fn create_first_owner(
    store: &SqlStore,
    request: ProvisionMember,
    tenant_name: &str,
    ctx: &AuditContext,
) -> StoreResult<ProvisionOutcome> {
    let Some(password_hash) = request.password_hash.filter(|hash| !hash.is_empty()) else {
        return Err(StoreError::Conflict(format!("{} needs a password to own the first tenant", request.email)));
    };
    let now = Timestamp::now();
    with_write!(store, pool => {
        let mut tx = pool.begin().await.map_err(db_err)?;
        // Two setups at once must not both find no user. SQLite's one writer runs them one after
        // the other; on PostgreSQL this lock (which every insert into `users` also waits for)
        // does, until the transaction ends.
        if matches!(store.backend, Backend::Postgres(_)) {
            sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await.map_err(db_err)?;
        }
        let done: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users)").fetch_one(&mut *tx).await.map_err(db_err)?;
        if done {
            return Err(StoreError::Conflict(
                "setup is done: the first owner exists; sign in, or ask an owner to add you".into(),
            ));
        }
        let tenant = Tenant { id: TenantId::new(), slug: request.tenant, name: tenant_name.to_owned(), created_at: now };
        sqlx::query("INSERT INTO tenants (id, slug, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(tenant.id.as_str())
            .bind(tenant.slug.as_str())
            .bind(&tenant.name)
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let user = UserRecord { id: UserId::new(), email: request.email, password_hash, created_at: now };
        sqlx::query("INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(user.id.as_str())
            .bind(user.email.as_str())
            .bind(&user.password_hash)
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
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
            details: json!({ "role": request.role.as_str(), "user_created": true }),
        };
        insert_audit!(&mut *tx, &event)?;
        tx.commit().await.map_err(db_err)?;
        Ok(ProvisionOutcome { user, tenant, user_created: true, tenant_created: true })
    })
}
