//! What writing usage costs the embedded database: `record_usage` of 500 gateway requests (the
//! usage writer's batch at load), into `usage_events` as migration 0010 left it (rowid key, no
//! foreign keys, one index) and, in the same run, into the table as it was before (AUTOINCREMENT,
//! foreign keys to the tenant and the key, two indexes), rebuilt in a second database.
//!
//! Run: `cargo bench -p prom-store --bench usage_writes`

// Benchmarks fail by panicking; the library lints against it do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use prom_core::id::{KeyId, TenantId};
use prom_core::service::ServiceSlug;
use prom_core::store::UsageStore;
use prom_core::time::Timestamp;
use prom_core::usage::UsageEvent;
use prom_store::{Database, SqlStore};

const BATCH: usize = 500;
const TENANT: &str = "0194f1a2-0000-7000-8000-000000000001";
const KEY: &str = "0194f1a2-0000-7000-8000-000000000002";

/// `usage_events` before migration 0010 (migration 0003).
const BEFORE_0010: &str = "
DROP TABLE usage_events;
CREATE TABLE usage_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id), key_id TEXT NOT NULL REFERENCES api_keys (id),
    service TEXT NOT NULL, method TEXT NOT NULL, tool TEXT, outcome TEXT NOT NULL, latency_us INTEGER NOT NULL,
    request_bytes INTEGER NOT NULL, response_bytes INTEGER NOT NULL);
CREATE INDEX usage_events_tenant_at ON usage_events (tenant_id, at);
CREATE INDEX usage_events_key_at ON usage_events (key_id, at);";

async fn store(dir: &tempfile::TempDir, old_layout: bool) -> SqlStore {
    let path = dir.path().join("store.sqlite3");
    let store = SqlStore::open(&Database::Sqlite { path: path.clone() }).await.unwrap();
    let raw = sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&path)).await.unwrap();
    sqlx::raw_sql(&format!(
        "INSERT INTO tenants (id, slug, name, created_at) VALUES ('{TENANT}', 'bench', 'bench', 0);
         INSERT INTO api_keys (id, tenant_id, label, environment, digest, last4, scopes, created_at)
         VALUES ('{KEY}', '{TENANT}', 'bench', 'live', x'00', '0000', 'agent:connect', 0);"
    ))
    .execute(&raw)
    .await
    .unwrap();
    if old_layout {
        sqlx::raw_sql(BEFORE_0010).execute(&raw).await.unwrap();
    }
    raw.close().await;
    store
}

fn events() -> Vec<UsageEvent> {
    let at = Timestamp::now();
    (0..BATCH)
        .map(|n| UsageEvent {
            at: at.plus_millis(i64::try_from(n).unwrap()),
            tenant_id: TenantId::from_trusted(TENANT.into()),
            key_id: KeyId::from_trusted(KEY.into()),
            service: ServiceSlug::from_trusted("demo".into()),
            method: "tools/call".into(),
            tool: Some("echo".into()),
            outcome: "ok".into(),
            latency_us: 900,
            request_bytes: 180,
            response_bytes: 240,
        })
        .collect()
}

fn usage_writes(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut group = c.benchmark_group("record_usage of 500 requests");
    for (name, old_layout) in [("lean table (migration 0010)", false), ("table before 0010", true)] {
        let dir = tempfile::TempDir::new().unwrap();
        let store = runtime.block_on(store(&dir, old_layout));
        group.bench_function(name, |b| {
            b.iter_batched(
                events,
                |batch| runtime.block_on(store.record_usage(&batch, &[])).unwrap(),
                BatchSize::SmallInput,
            );
        });
        runtime.block_on(store.close());
    }
    group.finish();
}

criterion_group!(benches, usage_writes);
criterion_main!(benches);
