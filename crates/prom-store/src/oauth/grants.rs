//! Grants: made with their credential row and first code, listed with what they spent, revoked
//! with every token of theirs. Each change writes its audit row in its transaction.

use std::collections::HashMap;

use prom_core::access::Scope;
use prom_core::audit::{AuditAction, AuditContext, AuditTarget, NewAuditEvent};
use prom_core::id::{GrantId, KeyId, TenantId};
use prom_core::key::Environment;
use prom_core::money::Amount;
use prom_core::oauth::{GrantRecord, GrantView, NewCode, NewGrant, RevokeReason};
use prom_core::store::{StoreError, StoreResult};
use prom_core::time::Timestamp;
use prom_core::user::{Label, MAX_LABEL_CHARS};
use serde_json::json;

use super::rows::{GRANT_COLUMNS, GRANT_FROM, GrantRow, GrantViewRow, amount, to_json};
use crate::audit::insert_audit;
use crate::{SqlStore, db_err, with_read, with_write};

/// The label of a grant's credential row when its client's name makes no label.
const FALLBACK_LABEL: &str = "OAuth client";

/// Revokes grant `$id` if it is not revoked yet — the grant, its credential row and its tokens —
/// within transaction `$tx` of either backend. Evaluates to whether this call revoked it: the
/// conditional update makes racing revocations land once.
macro_rules! revoke_grant_rows {
    ($tx:ident, $id:expr, $at:expr) => {{
        let (id, at): (&str, i64) = ($id, $at);
        let revoked = sqlx::query("UPDATE oauth_grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(at)
            .execute(&mut *$tx)
            .await
            .map_err($crate::db_err)?
            .rows_affected()
            == 1;
        if revoked {
            sqlx::query(
                "UPDATE api_keys SET revoked_at = $2 \
                 WHERE id = (SELECT key_id FROM oauth_grants WHERE id = $1) AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *$tx)
            .await
            .map_err($crate::db_err)?;
            sqlx::query("UPDATE oauth_tokens SET revoked_at = $2 WHERE grant_id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(at)
                .execute(&mut *$tx)
                .await
                .map_err($crate::db_err)?;
        }
        revoked
    }};
}

/// Revokes every live grant `$user` made in `$tenant`, with an `oauth.revoke` row each, within
/// transaction `$tx` of either backend (run by `remove_member`). A grant is a person's consent,
/// like a sign-in session: it goes with the person, whereas API keys belong to the tenant and stay.
macro_rules! revoke_member_grants {
    ($tx:ident, $user:expr, $tenant:expr, $at:expr, $ctx:expr) => {{
        let (user, tenant, at, ctx): (
            &prom_core::id::UserId,
            &prom_core::id::TenantId,
            prom_core::time::Timestamp,
            &prom_core::audit::AuditContext,
        ) = ($user, $tenant, $at, $ctx);
        let grants: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT id, client_id, client_name, service FROM oauth_grants \
             WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL ORDER BY created_at, id",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_all(&mut *$tx)
        .await
        .map_err($crate::db_err)?;
        for (id, client_id, client_name, service) in grants {
            if $crate::oauth::grants::revoke_grant_rows!($tx, &id, at.as_millis()) {
                let details =
                    serde_json::json!({ "client_id": client_id, "service": service, "reason": "member_removed" });
                let id = prom_core::id::GrantId::from_trusted(id);
                let event = $crate::oauth::grants::grant_event(
                    prom_core::audit::AuditAction::OAuthRevoke, tenant, &id, &client_name, at, ctx, details,
                );
                $crate::audit::insert_audit!(&mut *$tx, &event)?;
            }
        }
    }};
}
pub(crate) use {revoke_grant_rows, revoke_member_grants};

pub(crate) fn grant_event(
    action: AuditAction,
    tenant: &TenantId,
    grant: &GrantId,
    client_name: &str,
    at: Timestamp,
    ctx: &AuditContext,
    details: serde_json::Value,
) -> NewAuditEvent {
    NewAuditEvent {
        at,
        tenant_id: Some(tenant.clone()),
        action,
        context: ctx.clone(),
        target: Some(AuditTarget::grant(grant, client_name)),
        details,
    }
}

/// The label of a grant's credential row: its client's name, without control characters and
/// cut to the longest label.
fn key_label(client_name: &str) -> Label {
    let name: String = client_name.trim().chars().filter(|c| !c.is_control()).take(MAX_LABEL_CHARS).collect();
    Label::parse(&name).unwrap_or_else(|_| Label::from_trusted(FALLBACK_LABEL.to_owned()))
}

/// The credential row's `last4`: the last four hex digits of the grant's id.
fn key_last4(grant: &GrantId) -> String {
    let mut last4: Vec<char> = grant.as_str().chars().rev().filter(char::is_ascii_hexdigit).take(4).collect();
    last4.reverse();
    last4.into_iter().collect()
}

/// The credential row's digest: a placeholder, `grant:` and the grant's id. At 42 bytes it equals
/// no key's 32-byte digest, so no presented API key ever finds a grant's row.
fn key_digest(grant: &GrantId) -> Vec<u8> {
    format!("grant:{grant}").into_bytes()
}

pub(super) async fn create_grant(
    store: &SqlStore,
    grant: &NewGrant,
    code: &NewCode,
    ctx: &AuditContext,
) -> StoreResult<GrantRecord> {
    if code.grant_id != grant.id {
        return Err(StoreError::Conflict("the authorization code is not for the grant being made".into()));
    }
    let scopes = to_json(&grant.scopes)?;
    let record = GrantRecord {
        id: grant.id.clone(),
        key_id: grant.key_id.clone(),
        tenant_id: grant.tenant_id.clone(),
        user_id: grant.user_id.clone(),
        client_id: grant.client_id.clone(),
        client_name: grant.client_name.clone(),
        service: grant.service.clone(),
        resource: grant.resource.clone(),
        scopes: grant.scopes.clone(),
        spend_cap: grant.spend_cap,
        expires_at: grant.expires_at,
        created_at: grant.created_at,
        revoked_at: None,
        last_used_at: None,
    };
    let details = json!({
        "client_id": grant.client_id,
        "service": grant.service.as_str(),
        "resource": grant.resource,
        "spend_cap": grant.spend_cap.to_string(),
        "expires_at": grant.expires_at.as_millis(),
        "scopes": grant.scopes,
    });
    let event = grant_event(
        AuditAction::OAuthConsent,
        &grant.tenant_id,
        &grant.id,
        &grant.client_name,
        grant.created_at,
        ctx,
        details,
    );
    with_write!(store, pool => {
        let mut tx = pool.begin().await.map_err(db_err)?;
        // The environment of a grant's row is never used to verify anything; it is `live`
        // because the grant spends real allowances.
        sqlx::query(
            "INSERT INTO api_keys \
                 (id, tenant_id, label, environment, digest, last4, scopes, created_by, created_at, kind) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'grant')",
        )
        .bind(grant.key_id.as_str())
        .bind(grant.tenant_id.as_str())
        .bind(key_label(&grant.client_name).as_str())
        .bind(Environment::Live.as_str())
        .bind(key_digest(&grant.id))
        .bind(key_last4(&grant.id))
        .bind(Scope::join(&[Scope::AgentConnect]))
        .bind(grant.user_id.as_str())
        .bind(grant.created_at.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO oauth_grants (id, key_id, tenant_id, user_id, client_id, client_name, service, resource, \
                 scopes, spend_cap, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(grant.id.as_str())
        .bind(grant.key_id.as_str())
        .bind(grant.tenant_id.as_str())
        .bind(grant.user_id.as_str())
        .bind(&grant.client_id)
        .bind(&grant.client_name)
        .bind(grant.service.as_str())
        .bind(&grant.resource)
        .bind(&scopes)
        .bind(grant.spend_cap.to_string())
        .bind(grant.expires_at.as_millis())
        .bind(grant.created_at.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO oauth_codes \
                 (digest, grant_id, client_id, redirect_uri, code_challenge, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&code.digest.0[..])
        .bind(code.grant_id.as_str())
        .bind(&code.client_id)
        .bind(&code.redirect_uri)
        .bind(&code.code_challenge)
        .bind(code.created_at.as_millis())
        .bind(code.expires_at.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        // Only forward: a registration some grant used is never purged.
        sqlx::query(
            "UPDATE oauth_clients SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
        )
        .bind(&grant.client_id)
        .bind(grant.created_at.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        insert_audit!(&mut *tx, &event)?;
        tx.commit().await.map_err(db_err)?;
    });
    Ok(record)
}

pub(super) async fn get_grant(store: &SqlStore, tenant: &TenantId, id: &GrantId) -> StoreResult<Option<GrantRecord>> {
    let row: Option<GrantRow> = with_read!(store, pool => {
        sqlx::query_as(&format!("SELECT {GRANT_COLUMNS} FROM {GRANT_FROM} WHERE g.tenant_id = $1 AND g.id = $2"))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(pool)
            .await
            .map_err(db_err)?
    });
    row.map(GrantRecord::try_from).transpose()
}

/// How many charges of one amount a credential row has (captured or settled). Amounts are
/// decimal text that no SQL integer holds, so the database counts and Rust sums, exactly; a
/// tool's price rarely changes, so that is a handful of rows per grant.
#[derive(sqlx::FromRow)]
struct SpentRow {
    key_id: String,
    amount: String,
    n: i64,
}

/// Sums [`SpentRow`]s by key, refusing to overflow (a corrupt store, never a user error).
fn spent_by(rows: Vec<SpentRow>) -> StoreResult<HashMap<String, Amount>> {
    let overflow = || StoreError::Corrupt("the sum of a grant's charges overflowed".into());
    let mut spent: HashMap<String, Amount> = HashMap::new();
    for row in rows {
        let n = u128::try_from(row.n).map_err(|_| StoreError::Corrupt(format!("a negative count ({})", row.n)))?;
        let sum = amount(&row.amount)?.units().checked_mul(n).map(Amount::new).ok_or_else(overflow)?;
        let total = spent.entry(row.key_id).or_insert(Amount::ZERO);
        *total = total.checked_add(sum).ok_or_else(overflow)?;
    }
    Ok(spent)
}

pub(super) async fn list_grants(store: &SqlStore, tenant: &TenantId) -> StoreResult<Vec<GrantView>> {
    // Charges still in the embedded database's journal count too.
    store.fold_journal().await?;
    let (rows, spent): (Vec<GrantViewRow>, Vec<SpentRow>) = with_read!(store, pool => {
        let rows = sqlx::query_as(&format!(
            "SELECT {GRANT_COLUMNS}, c.source AS client_source FROM {GRANT_FROM} \
             LEFT JOIN oauth_clients c ON c.id = g.client_id \
             WHERE g.tenant_id = $1 ORDER BY g.created_at DESC, g.id DESC"
        ))
        .bind(tenant.as_str())
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
        let spent = sqlx::query_as(
            "SELECT ch.key_id, ch.amount, COUNT(*) AS n FROM charges ch JOIN oauth_grants g ON g.key_id = ch.key_id \
             WHERE g.tenant_id = $1 AND ch.state IN ('captured', 'settled') GROUP BY ch.key_id, ch.amount",
        )
        .bind(tenant.as_str())
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
        (rows, spent)
    });
    let spent = spent_by(spent)?;
    rows.into_iter()
        .map(|row| {
            let (grant, client_source) = row.into_parts()?;
            let spent = spent.get(grant.key_id.as_str()).copied().unwrap_or(Amount::ZERO);
            Ok(GrantView { grant, client_source, spent })
        })
        .collect()
}

pub(super) async fn spent_by_key(store: &SqlStore, key: &KeyId) -> StoreResult<Amount> {
    store.fold_journal().await?;
    let rows: Vec<SpentRow> = with_read!(store, pool => {
        sqlx::query_as(
            "SELECT key_id, amount, COUNT(*) AS n FROM charges \
             WHERE key_id = $1 AND state IN ('captured', 'settled') GROUP BY key_id, amount",
        )
        .bind(key.as_str())
        .fetch_all(pool)
        .await
        .map_err(db_err)?
    });
    Ok(spent_by(rows)?.remove(key.as_str()).unwrap_or(Amount::ZERO))
}

pub(super) async fn revoke_grant(
    store: &SqlStore,
    id: &GrantId,
    at: Timestamp,
    reason: RevokeReason,
    ctx: &AuditContext,
) -> StoreResult<Option<GrantRecord>> {
    with_write!(store, pool => {
        let mut tx = pool.begin().await.map_err(db_err)?;
        // The conditional update first: it takes the grant's row lock (PostgreSQL; SQLite's single
        // writer already serialises), so the read that follows sees the revocation that won.
        let revoked = revoke_grant_rows!(tx, id.as_str(), at.as_millis());
        let row: Option<GrantRow> = sqlx::query_as(&format!("SELECT {GRANT_COLUMNS} FROM {GRANT_FROM} WHERE g.id = $1"))
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(grant) = row.map(GrantRecord::try_from).transpose()? else {
            return Ok(None);
        };
        if revoked {
            let action = match reason {
                RevokeReason::Revoked => AuditAction::OAuthRevoke,
                RevokeReason::ReuseDetected => AuditAction::OAuthReuseDetected,
            };
            let details = json!({ "client_id": grant.client_id, "service": grant.service.as_str() });
            let event = grant_event(action, &grant.tenant_id, &grant.id, &grant.client_name, at, ctx, details);
            insert_audit!(&mut *tx, &event)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(Some(grant))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_rows_are_labelled_with_the_client_name() {
        assert_eq!(key_label("  Claude Desktop ").as_str(), "Claude Desktop");
        assert_eq!(key_label("Bad\u{7}name").as_str(), "Badname");
        assert_eq!(key_label(&"x".repeat(300)).as_str().chars().count(), MAX_LABEL_CHARS);
        assert_eq!(key_label(" \n ").as_str(), FALLBACK_LABEL);
    }

    #[test]
    fn credential_rows_get_the_last_hex_digits_of_the_grant_and_no_key_digest() {
        let grant = GrantId::from_trusted("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into());
        assert_eq!(key_last4(&grant), "4a5b");
        assert_ne!(key_digest(&grant).len(), 32);
    }
}
