//! Deployment settings: values every node must agree on, written once.

use async_trait::async_trait;
use prom_core::store::{SettingsStore, StoreResult};

use crate::{SqlStore, db_err, with_read, with_write};

#[async_trait]
impl SettingsStore for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        with_read!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop).map_err(db_err))
    }

    async fn init_setting(&self, name: &str, value: &[u8]) -> StoreResult<Vec<u8>> {
        with_write!(self, pool => {
            sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(value)
                .execute(pool)
                .await
                .map_err(db_err)?;
            sqlx::query_scalar::<_, Vec<u8>>("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await
                .map_err(db_err)
        })
    }
}
