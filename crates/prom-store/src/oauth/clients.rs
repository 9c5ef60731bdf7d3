//! OAuth clients: saved as they register, are fetched or are configured; registrations no grant
//! ever used are purged.

use prom_core::oauth::OAuthClient;
use prom_core::store::StoreResult;
use prom_core::time::Timestamp;

use super::rows::{CLIENT_COLUMNS, ClientRow, to_json};
use crate::{SqlStore, db_err, with_read, with_write};

pub(super) async fn save_client(store: &SqlStore, client: &OAuthClient) -> StoreResult<()> {
    let redirect_uris = to_json(&client.redirect_uris)?;
    // A replaced client keeps when it was first seen and last used: a metadata document fetched
    // again is the same client, and its registration must not look unused.
    with_write!(store, pool => {
        sqlx::query(
            "INSERT INTO oauth_clients (id, name, redirect_uris, client_uri, source, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, redirect_uris = excluded.redirect_uris, \
                 client_uri = excluded.client_uri, source = excluded.source",
        )
        .bind(&client.id)
        .bind(&client.name)
        .bind(&redirect_uris)
        .bind(client.client_uri.as_deref())
        .bind(client.source.as_str())
        .bind(client.created_at.as_millis())
        .bind(client.last_used_at.map(Timestamp::as_millis))
        .execute(pool)
        .await
        .map_err(db_err)?;
    });
    Ok(())
}

pub(super) async fn get_client(store: &SqlStore, id: &str) -> StoreResult<Option<OAuthClient>> {
    let row: Option<ClientRow> = with_read!(store, pool => {
        sqlx::query_as(&format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(db_err)?
    });
    row.map(OAuthClient::try_from).transpose()
}

pub(super) async fn purge_unused_clients(store: &SqlStore, before: Timestamp) -> StoreResult<u64> {
    // The source (`ClientSource::Registered`) is spelled out, not bound, so that the partial index
    // of unused registrations (migration 0021) matches the query.
    let purged = with_write!(store, pool => {
        sqlx::query(
            "DELETE FROM oauth_clients WHERE source = 'registered' AND last_used_at IS NULL AND created_at < $1",
        )
        .bind(before.as_millis())
        .execute(pool)
        .await
        .map_err(db_err)?
        .rows_affected()
    });
    Ok(purged)
}
