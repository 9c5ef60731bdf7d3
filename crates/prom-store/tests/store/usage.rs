//! Usage reports: requests counted from usage events by outcome, money summed exactly from the
//! captured charges (held and released ones cost nothing), grouped by key, tool, service or UTC day,
//! filtered by key, service and a half-open time range, and never another tenant's.

use prom_core::charge::{ChargeOp, ChargeOpResult, ExpiryMargins, NewCharge};
use prom_core::id::{ChargeId, KeyId, TenantId};
use prom_core::money::Amount;
use prom_core::store::{BudgetStore, ChargeStore, KeyRecord, UsageStore};
use prom_core::time::Timestamp;
use prom_core::usage::{UsageEvent, UsageGroup, UsageGrouping, UsageQuery, UsageReport, UsageTotals};
use prom_store::{Database, SqlStore};

use crate::support::{hasher, insert_key, owner_of, service_slug, shift};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2^100: charges this large prove the sum is exact (no floating point, no 64-bit SQL integer).
const BIG: u128 = 1 << 100;

fn t0() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-23T10:00:00Z").unwrap()
}

fn event(key: &KeyRecord, service: &str, tool: Option<&str>, outcome: &str, at: Timestamp) -> UsageEvent {
    UsageEvent {
        at,
        tenant_id: key.tenant_id.clone(),
        key_id: key.id.clone(),
        service: service_slug(service),
        method: if tool.is_some() { "tools/call" } else { "initialize" }.to_owned(),
        tool: tool.map(str::to_owned),
        outcome: outcome.to_owned(),
        latency_us: 1_000,
        request_bytes: 100,
        response_bytes: 200,
    }
}

/// How a charge ends up.
#[derive(Clone, Copy)]
enum End {
    Captured,
    Released,
    StillHeld,
}

async fn charge(store: &SqlStore, key: &KeyRecord, service: &str, tool: &str, amount: u128, at: Timestamp, end: End) {
    let id = ChargeId::new();
    let hold = NewCharge {
        id: id.clone(),
        tenant_id: key.tenant_id.clone(),
        service: service_slug(service),
        key_id: key.id.clone(),
        tool: tool.to_owned(),
        amount: Amount::new(amount),
        at,
        cap: None,
    };
    let held = store.apply_charges(&[ChargeOp::Reserve(hold)], at, ExpiryMargins::NONE).await.unwrap();
    assert_eq!(held, [ChargeOpResult::Held]);
    let resolve = match end {
        End::Captured => ChargeOp::Capture(id),
        End::Released => ChargeOp::Release(id),
        End::StillHeld => return,
    };
    assert_eq!(
        store.apply_charges(&[resolve], shift(at, 10), ExpiryMargins::NONE).await.unwrap(),
        [ChargeOpResult::Done]
    );
}

fn query(tenant: &TenantId, group_by: UsageGrouping) -> UsageQuery {
    UsageQuery {
        tenant_id: tenant.clone(),
        key_id: None,
        service: None,
        from: t0(),
        to: shift(t0(), 2 * DAY),
        group_by,
    }
}

/// (calls, ok, errors, charged) of some totals.
fn sums(totals: &UsageTotals) -> (u64, u64, u64, Amount) {
    (totals.calls, totals.ok(), totals.errors(), totals.charged)
}

fn row<'a>(report: &'a UsageReport, group: &UsageGroup) -> &'a UsageTotals {
    let found = report.rows.iter().find(|row| row.group == *group);
    assert!(found.is_some(), "no row {group:?} in {report:?}");
    &found.unwrap().totals
}

fn key_group(key: &KeyRecord) -> UsageGroup {
    UsageGroup::Key { id: key.id.clone(), label: key.label.clone(), display: key.display() }
}

/// Tenant acme: two keys, two services, two days; tenant rival uses the same service meanwhile.
async fn traffic(store: &SqlStore) -> (KeyRecord, KeyRecord, KeyRecord) {
    let acme = owner_of(store, "acme").await;
    let rival = owner_of(store, "rival").await;
    let hasher = hasher();
    let (_, k1) = insert_key(store, &hasher, &acme, "laptop agent", t0()).await;
    let (_, k2) = insert_key(store, &hasher, &acme, "ci runner", t0()).await;
    let (_, kr) = insert_key(store, &hasher, &rival, "rival agent", t0()).await;
    let t = t0();
    let events = [
        event(&k1, "alpha", Some("search"), "ok", t),
        event(&k1, "alpha", Some("search"), "ok", shift(t, HOUR)),
        event(&k1, "alpha", Some("search"), "allowance_exceeded", shift(t, 2 * HOUR)),
        event(&k2, "alpha", Some("fetch"), "tool_error", shift(t, 3 * HOUR)),
        event(&k2, "beta", None, "ok", shift(t, DAY)),
        event(&k2, "beta", Some("search"), "ok", shift(t, DAY + HOUR)),
        event(&kr, "alpha", Some("search"), "ok", t),
    ];
    store.record_usage(&events, &[]).await.unwrap();
    for (tenant, service) in [(&acme.tenant.id, "alpha"), (&acme.tenant.id, "beta"), (&rival.tenant.id, "alpha")] {
        store
            .set_approved(tenant, &service_slug(service), Amount::new(u128::MAX), None, None, None, None)
            .await
            .unwrap();
    }
    charge(store, &k1, "alpha", "search", BIG, t, End::Captured).await;
    charge(store, &k1, "alpha", "search", BIG, shift(t, HOUR), End::Captured).await;
    charge(store, &k1, "alpha", "search", BIG, shift(t, 2 * HOUR), End::StillHeld).await;
    charge(store, &k2, "alpha", "fetch", 7, shift(t, 3 * HOUR), End::Released).await;
    charge(store, &k2, "beta", "search", 5, shift(t, DAY + HOUR), End::Captured).await;
    charge(store, &kr, "alpha", "search", 1_000, t, End::Captured).await;
    (k1, k2, kr)
}

async fn usage_is_grouped_by_key_tool_and_day(store: SqlStore) {
    let (k1, k2, _) = traffic(&store).await;
    let tenant = k1.tenant_id.clone();

    let by_key = store.usage_report(&query(&tenant, UsageGrouping::Key)).await.unwrap();
    assert_eq!(sums(&by_key.totals), (6, 4, 2, Amount::new(2 * BIG + 5)));
    assert_eq!(by_key.totals.outcomes.get("allowance_exceeded"), Some(&1));
    assert_eq!(by_key.rows.len(), 2);
    assert_eq!(sums(row(&by_key, &key_group(&k1))), (3, 2, 1, Amount::new(2 * BIG)));
    assert_eq!(sums(row(&by_key, &key_group(&k2))), (3, 2, 1, Amount::new(5)));
    assert!(matches!(&by_key.rows[0].group, UsageGroup::Key { display, .. } if display.starts_with("prom_live_...")));

    let by_tool = store.usage_report(&query(&tenant, UsageGrouping::Tool)).await.unwrap();
    assert_eq!(by_tool.totals, by_key.totals, "the totals do not depend on the grouping");
    assert_eq!(by_tool.rows.len(), 3);
    assert_eq!(by_tool.rows[0].group, UsageGroup::Tool(Some("search".into())), "busiest first");
    assert_eq!(sums(&by_tool.rows[0].totals), (4, 3, 1, Amount::new(2 * BIG + 5)));
    assert_eq!(sums(row(&by_tool, &UsageGroup::Tool(Some("fetch".into())))), (1, 0, 1, Amount::ZERO));
    assert_eq!(sums(row(&by_tool, &UsageGroup::Tool(None))), (1, 1, 0, Amount::ZERO));

    let by_day = store.usage_report(&query(&tenant, UsageGrouping::Day)).await.unwrap();
    assert_eq!(by_day.totals, by_key.totals);
    let days: Vec<_> = by_day.rows.iter().map(|row| (row.group.clone(), sums(&row.totals))).collect();
    assert_eq!(
        days,
        [
            (UsageGroup::Day("2026-11-23".into()), (4, 2, 2, Amount::new(2 * BIG))),
            (UsageGroup::Day("2026-11-24".into()), (2, 2, 0, Amount::new(5))),
        ]
    );
}

async fn usage_is_grouped_by_service(store: SqlStore) {
    let (k1, _, _) = traffic(&store).await;
    let by_service = store.usage_report(&query(&k1.tenant_id, UsageGrouping::Service)).await.unwrap();
    assert_eq!(sums(&by_service.totals), (6, 4, 2, Amount::new(2 * BIG + 5)));
    let services: Vec<_> = by_service.rows.iter().map(|row| (row.group.clone(), sums(&row.totals))).collect();
    assert_eq!(
        services,
        [
            (UsageGroup::Service(service_slug("alpha")), (4, 2, 2, Amount::new(2 * BIG))),
            (UsageGroup::Service(service_slug("beta")), (2, 2, 0, Amount::new(5))),
        ],
        "busiest first, the rival tenant's use of alpha not counted"
    );
    let only_beta = UsageQuery { service: Some(service_slug("beta")), ..query(&k1.tenant_id, UsageGrouping::Service) };
    let only_beta = store.usage_report(&only_beta).await.unwrap();
    assert_eq!(only_beta.rows.len(), 1);
    assert_eq!(only_beta.rows[0].group, UsageGroup::Service(service_slug("beta")));
}

async fn usage_filters_by_key_service_and_half_open_range(store: SqlStore) {
    let (k1, k2, kr) = traffic(&store).await;
    let tenant = k1.tenant_id.clone();
    let report = |query: UsageQuery| {
        let store = store.clone();
        async move { store.usage_report(&query).await.unwrap() }
    };

    let only_k2 = report(UsageQuery { key_id: Some(k2.id.clone()), ..query(&tenant, UsageGrouping::Tool) }).await;
    assert_eq!(sums(&only_k2.totals), (3, 2, 1, Amount::new(5)));
    let only_beta =
        report(UsageQuery { service: Some(service_slug("beta")), ..query(&tenant, UsageGrouping::Key) }).await;
    assert_eq!(sums(&only_beta.totals), (2, 2, 0, Amount::new(5)));
    assert_eq!(only_beta.rows.len(), 1);
    let both = UsageQuery {
        key_id: Some(k1.id.clone()),
        service: Some(service_slug("beta")),
        ..query(&tenant, UsageGrouping::Day)
    };
    assert_eq!(report(both).await, UsageReport::default(), "k1 never used beta");

    // from is inclusive, to exclusive: [t0 + 1h, t0 + 3h) holds the second and third calls only,
    // and of their charges only the captured one counts.
    let window =
        UsageQuery { from: shift(t0(), HOUR), to: shift(t0(), 3 * HOUR), ..query(&tenant, UsageGrouping::Day) };
    assert_eq!(sums(&report(window).await.totals), (2, 1, 1, Amount::new(BIG)));
    let before = UsageQuery { from: shift(t0(), -DAY), to: t0(), ..query(&tenant, UsageGrouping::Day) };
    assert_eq!(report(before).await, UsageReport::default());

    // Another tenant's key, asked for under this tenant, matches nothing; its own report is its own.
    let foreign = UsageQuery { key_id: Some(kr.id.clone()), ..query(&tenant, UsageGrouping::Key) };
    assert_eq!(report(foreign).await, UsageReport::default());
    let rival = report(query(&kr.tenant_id, UsageGrouping::Key)).await;
    assert_eq!(sums(&rival.totals), (1, 1, 0, Amount::new(1_000)));
    assert_eq!(rival.rows.len(), 1);
    assert_eq!(rival.rows[0].group, key_group(&kr));
    let unknown = UsageQuery { key_id: Some(KeyId::new()), ..query(&tenant, UsageGrouping::Key) };
    assert_eq!(report(unknown).await, UsageReport::default());
}

store_tests!(
    usage_is_grouped_by_service,
    usage_is_grouped_by_key_tool_and_day,
    usage_filters_by_key_service_and_half_open_range,
);

/// Migration 0010 rebuilds `usage_events` on the embedded database (no AUTOINCREMENT, no foreign
/// keys, one index): the rows written before it are all still there, with their ids, and new rows
/// are numbered after them.
#[tokio::test]
async fn usage_written_before_the_lean_usage_table_survives_its_migration() {
    use sqlx::Row;
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("store.sqlite3");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
    let old = crate::support::sqlite_before_migration(&options.clone().foreign_keys(false), 10).await;
    // The old table's foreign keys want a tenant and a key; this connection does not check them.
    for (id, at) in [(7_i64, 1_000_i64), (8, 2_000)] {
        sqlx::query(
            "INSERT INTO usage_events (id, at, tenant_id, key_id, service, method, tool, outcome, latency_us, \
             request_bytes, response_bytes) VALUES ($1, $2, 'tenant', 'key', 'demo', 'tools/call', 'echo', 'ok', 5, 6, 7)",
        )
        .bind(id)
        .bind(at)
        .execute(&old)
        .await
        .unwrap();
    }
    old.close().await;

    let store = SqlStore::open(&Database::Sqlite { path: path.clone() }).await.unwrap();
    let owner = owner_of(&store, "acme").await;
    let (_, key) = insert_key(&store, &hasher(), &owner, "agent", t0()).await;
    store.record_usage(&[event(&key, "demo", Some("echo"), "ok", t0())], &[]).await.unwrap();
    store.close().await;

    let db = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let rows = sqlx::query("SELECT id, at, tenant_id, latency_us, response_bytes FROM usage_events ORDER BY id")
        .fetch_all(&db)
        .await
        .unwrap();
    let ids: Vec<i64> = rows.iter().map(|row| row.get("id")).collect();
    assert_eq!(ids, [7, 8, 9], "the old rows kept their ids; the new one comes after them");
    assert_eq!((rows[1].get::<i64, _>("at"), rows[1].get::<i64, _>("response_bytes")), (2_000, 7));
    assert_eq!(rows[2].get::<String, _>("tenant_id"), key.tenant_id.as_str());
    let foreign_keys =
        sqlx::query("SELECT * FROM pragma_foreign_key_list('usage_events')").fetch_all(&db).await.unwrap();
    assert!(foreign_keys.is_empty(), "no foreign keys left");
    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_index_list('usage_events')").fetch_all(&db).await.unwrap();
    assert_eq!(indexes, ["usage_events_tenant_at"]);
    db.close().await;
}
