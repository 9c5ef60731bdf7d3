//! Password links: one-time links with which a user sets a password (a member added by e-mail,
//! or a reset). Only the digest of a link's secret is stored; using one is a conditional update,
//! so a link works once however many requests race with it.

use prom_core::audit::{AuditAction, AuditContext, AuditTarget, NewAuditEvent};
use prom_core::store::{NewPasswordLink, StoreError, StoreResult, UserRecord};
use prom_core::time::Timestamp;
use serde_json::json;

use crate::audit::insert_audit;
use crate::rows::UserRow;
use crate::{SqlStore, db_err, with_write};

pub(crate) async fn create_password_link(store: &SqlStore, link: NewPasswordLink) -> StoreResult<()> {
    let inserted = with_write!(store, pool => {
        sqlx::query(
            "INSERT INTO password_links (digest, user_id, created_at, expires_at) \
             SELECT $1, id, $3, $4 FROM users WHERE id = $2",
        )
        .bind(&link.digest[..])
        .bind(link.user_id.as_str())
        .bind(link.created_at.as_millis())
        .bind(link.expires_at.as_millis())
        .execute(pool)
        .await
        .map_err(db_err)?
        .rows_affected()
    });
    if inserted == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(crate) async fn redeem_password_link(
    store: &SqlStore,
    digest: &[u8],
    password_hash: &str,
    now: Timestamp,
    ctx: &AuditContext,
) -> StoreResult<UserRecord> {
    with_write!(store, pool => {
        let mut tx = pool.begin().await.map_err(db_err)?;
        let user_id: Option<String> = sqlx::query_scalar(
            "UPDATE password_links SET used_at = $2 \
             WHERE digest = $1 AND used_at IS NULL AND expires_at > $2 RETURNING user_id",
        )
        .bind(digest)
        .bind(now.as_millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let user_id = user_id.ok_or(StoreError::NotFound)?;
        let user: UserRecord = sqlx::query_as::<_, UserRow>(
            "UPDATE users SET password_hash = $2 WHERE id = $1 RETURNING id, email, password_hash, created_at",
        )
        .bind(&user_id)
        .bind(password_hash)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?
        .into();
        // The password is set: any other link sent to this user (an older invitation or reset)
        // must not change it again.
        sqlx::query("UPDATE password_links SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL")
            .bind(&user_id)
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let tenants: Vec<String> =
            sqlx::query_scalar("SELECT tenant_id FROM memberships WHERE user_id = $1 ORDER BY tenant_id")
                .bind(&user_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        for tenant in tenants {
            let event = NewAuditEvent {
                at: now,
                tenant_id: Some(prom_core::id::TenantId::from_trusted(tenant)),
                action: AuditAction::UserPasswordSet,
                context: ctx.clone(),
                target: Some(AuditTarget::user(&user.id, &user.email)),
                details: json!({}),
            };
            insert_audit!(&mut *tx, &event)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(user)
    })
}
