//! Listings at dashboard scale, timed: a million audit events and ten thousand keys in one
//! tenant. Ignored by default (writing the rows takes a while); run them with
//! `cargo nextest run -p prom-store --release --run-ignored only scale --no-capture`
//! (with `PROM_TEST_DATABASE_URL` set for PostgreSQL). Each prints the median time of a first
//! page per listing, and fails if one takes 50 ms or more.
//!
//! The rows are generated inside the database (a recursive CTE, `generate_series`), not sent one
//! by one. On PostgreSQL the test runs `ANALYZE` after writing them, as autovacuum would; the
//! embedded database gets no statistics, as in production.

use std::time::{Duration, Instant};

use prom_core::audit::{AuditAction, AuditFilter};
use prom_core::id::TenantId;
use prom_core::store::{AuditStore, KeyStore};
use prom_core::time::Timestamp;
use prom_store::{Database, SqlStore};

use crate::support::owner_of;

const EVENTS: i64 = 1_000_000;
const KEYS: i64 = 10_000;
/// The events span 30 days from here, one every 2.592 s.
const START_MS: i64 = 1_790_000_000_000;
const STEP_MS: i64 = 2_592;
const DAY_MS: i64 = 86_400_000;
const BUDGET: Duration = Duration::from_millis(50);

/// The columns of a generated event, as SQL over `i` (0, 1, …): 80% `api_key.use` by one of 50
/// keys, the rest by one of 20 users (1% are `member.role_change`). Times run forward with up to
/// 6 s of disorder, as batched rows have.
const EVENT_COLUMNS: &str = "\
    $2 + i * 2592 - (i % 7) * 1000, \
    $1, \
    CASE WHEN i % 100 < 80 THEN 'api_key.use' WHEN i % 100 < 90 THEN 'api_key.create' \
         WHEN i % 100 < 95 THEN 'user.login' WHEN i % 100 < 99 THEN 'service.update' \
         ELSE 'member.role_change' END, \
    CASE WHEN i % 100 < 80 THEN 'api_key' ELSE 'user' END, \
    CASE WHEN i % 100 < 80 THEN 'key-' || (i % 50) ELSE 'user-' || (i % 20) END, \
    CASE WHEN i % 100 < 80 THEN 'prom_live_...k' || (i % 50) ELSE 'user' || (i % 20) || '@example.com' END, \
    'api_key', 'key-' || (i % 50), 'agent', '198.51.100.4', 'agent/1.0', '{\"tool\":\"search\"}'";

const EVENT_INSERT: &str = "INSERT INTO audit_events (at, tenant_id, action, actor_kind, actor_id, actor_name, \
     target_kind, target_id, target_label, ip, user_agent, details) ";

const KEY_INSERT: &str =
    "INSERT INTO api_keys (id, tenant_id, label, environment, digest, last4, scopes, created_at, deleted_at) ";

/// The listings timed, by name.
fn listings() -> Vec<(&'static str, AuditFilter)> {
    let page = AuditFilter { limit: 50, ..AuditFilter::default() };
    let end = START_MS + EVENTS * STEP_MS;
    let at = Timestamp::from_millis;
    vec![
        ("no filter", page.clone()),
        ("action api_key.use (80%)", AuditFilter { action: Some(AuditAction::ApiKeyUse), ..page.clone() }),
        ("action member.role_change (1%)", AuditFilter { action: Some(AuditAction::MemberRoleChange), ..page.clone() }),
        ("actor by e-mail (1%)", AuditFilter { actor: Some("user7@example.com".into()), ..page.clone() }),
        ("actor by key id (2%)", AuditFilter { actor: Some("key-7".into()), ..page.clone() }),
        ("the last 7 days", AuditFilter { from: Some(at(end - 7 * DAY_MS)), ..page.clone() }),
        (
            "one day, 20 days ago",
            AuditFilter { from: Some(at(end - 20 * DAY_MS)), to: Some(at(end - 19 * DAY_MS)), ..page.clone() },
        ),
        (
            "one day, 20 days ago, one action (1%)",
            AuditFilter {
                action: Some(AuditAction::MemberRoleChange),
                from: Some(at(end - 20 * DAY_MS)),
                to: Some(at(end - 19 * DAY_MS)),
                ..page.clone()
            },
        ),
    ]
}

/// The median of eleven runs of `run` (enough for PostgreSQL to try its generic plan of a
/// prepared statement, after five).
async fn median<F, Fut>(mut run: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::new();
    for _ in 0..11 {
        let started = Instant::now();
        run().await;
        times.push(started.elapsed());
    }
    times.sort();
    times[5]
}

/// Times every listing (and the page after the first, through its cursor) and the keys pages.
async fn time_listings(store: &SqlStore, tenant: &TenantId, database: &str) {
    let mut slow = Vec::new();
    for (name, filter) in listings() {
        let first = store.list_audit(tenant, &filter).await.unwrap();
        assert_eq!(first.len(), 50, "{name}: a full page");
        let took = median(|| async { store.list_audit(tenant, &filter).await.map(drop).unwrap() }).await;
        let next = AuditFilter { before: first.last().map(|event| event.id), ..filter.clone() };
        let second = store.list_audit(tenant, &next).await.unwrap();
        assert!(second.first().is_some_and(|event| (event.at, event.id) < (first[49].at, first[49].id)), "{name}");
        let paged = median(|| async { store.list_audit(tenant, &next).await.map(drop).unwrap() }).await;
        eprintln!("{database}: audit, {name}: first page {took:?}, second page {paged:?}");
        if took.max(paged) >= BUDGET {
            slow.push(name);
        }
    }
    for offset in [0, 4_950] {
        let (page, total) = store.list_keys_page(tenant, offset, 50).await.unwrap();
        assert_eq!((page.len(), total), (50, KEYS as u64 / 2));
        let took = median(|| async { store.list_keys_page(tenant, offset, 50).await.map(drop).unwrap() }).await;
        eprintln!("{database}: keys page at offset {offset} of {total} live keys (of {KEYS}): {took:?}");
        if took >= BUDGET {
            slow.push("keys page");
        }
    }
    assert!(slow.is_empty(), "{database}: {slow:?} took {BUDGET:?} or more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes a million rows; run with --run-ignored"]
async fn sqlite_listings_stay_fast_with_a_million_events() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("store.sqlite3");
    let store = SqlStore::open(&Database::Sqlite { path: path.clone() }).await.unwrap();
    let owner = owner_of(&store, "acme").await;
    let tenant = owner.tenant.id.clone();
    let started = Instant::now();
    let rows = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let numbers =
        |n: i64| format!("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {}) ", n - 1);
    sqlx::query(&format!("{}{EVENT_INSERT}SELECT {EVENT_COLUMNS} FROM n", numbers(EVENTS)))
        .bind(tenant.as_str())
        .bind(START_MS)
        .execute(&rows)
        .await
        .unwrap();
    sqlx::query(&format!(
        "{}{KEY_INSERT}SELECT 'key-' || i, $1, 'key ' || i, 'live', randomblob(32), 'abcd', 'agent:connect', \
         $2 + i * 1000, CASE WHEN i % 2 = 1 THEN $2 END FROM n",
        numbers(KEYS)
    ))
    .bind(tenant.as_str())
    .bind(START_MS)
    .execute(&rows)
    .await
    .unwrap();
    rows.close().await;
    eprintln!("sqlite: wrote {EVENTS} events and {KEYS} keys in {:?}", started.elapsed());
    time_listings(&store, &tenant, "sqlite").await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes a million rows; run with --run-ignored"]
async fn postgres_listings_stay_fast_with_a_million_events() {
    let Ok(url) = std::env::var("PROM_TEST_DATABASE_URL") else {
        eprintln!("SKIPPED: PROM_TEST_DATABASE_URL is not set");
        return;
    };
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let store = SqlStore::open(&Database::Postgres { url: url.clone(), schema: Some(schema.clone()) }).await.unwrap();
    let owner = owner_of(&store, "acme").await;
    let tenant = owner.tenant.id.clone();
    let started = Instant::now();
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let rows = sqlx::PgPool::connect_with(options.options([("search_path", schema.as_str())])).await.unwrap();
    sqlx::query(&format!(
        "{EVENT_INSERT}SELECT {EVENT_COLUMNS} FROM generate_series(0::bigint, {}) AS n(i)",
        EVENTS - 1
    ))
    .bind(tenant.as_str())
    .bind(START_MS)
    .execute(&rows)
    .await
    .unwrap();
    sqlx::query(&format!(
        "{KEY_INSERT}SELECT 'key-' || i, $1, 'key ' || i, 'live', decode(md5(i::text), 'hex'), 'abcd', \
         'agent:connect', $2 + i * 1000, CASE WHEN i % 2 = 1 THEN $2 END FROM generate_series(0::bigint, {}) AS n(i)",
        KEYS - 1
    ))
    .bind(tenant.as_str())
    .bind(START_MS)
    .execute(&rows)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(&rows).await.unwrap();
    rows.close().await;
    eprintln!("postgres: wrote {EVENTS} events and {KEYS} keys in {:?}", started.elapsed());
    time_listings(&store, &tenant, "postgres").await;
    store.close().await;
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&admin).await.unwrap();
    admin.close().await;
}
