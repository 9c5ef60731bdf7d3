//! The suite's one helper: a fresh store per test on either backend, and fixture builders for the
//! things most tests start from (a tenant with its owner, a minted key, an audit listing).

use std::collections::BTreeMap;
use std::future::Future;

use prom_core::access::{Role, Scope};
use prom_core::audit::{Actor, AuditAction, AuditContext, AuditEvent, AuditFilter, MAX_AUDIT_PAGE};
use prom_core::id::{KeyId, ServiceId, TenantId};
use prom_core::kdf::{KdfParams, KeyHasher};
use prom_core::key::{Environment, PlainKey};
use prom_core::money::Amount;
use prom_core::service::{Prices, ServiceSlug, Upstream};
use prom_core::store::{KeyRecord, KeyStore, NewKey, NewService, ProvisionMember, Tenant, UserRecord, UserStore};
use prom_core::time::Timestamp;
use prom_core::user::{Email, Label, TenantSlug};
use prom_store::{Database, SqlStore};

/// The variable that points the suite at a PostgreSQL database (each test makes its own schema).
const DATABASE_URL_VAR: &str = "PROM_TEST_DATABASE_URL";

/// Runs `test` against a store in a fresh SQLite file, removed afterwards.
pub async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(SqlStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::TempDir::new().expect("create a temp dir for the SQLite file");
    let database = Database::Sqlite { path: dir.path().join("store.sqlite3") };
    let store = SqlStore::open(&database).await.expect("open the SQLite store");
    test(store.clone()).await;
    store.close().await;
}

/// Runs `test` against a store in a fresh PostgreSQL schema. The schema is dropped when the test
/// passes and kept when it fails, for a look at what the test left behind.
pub async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(SqlStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(url) = postgres_url() else { return };
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    eprintln!("PostgreSQL schema for this test: {schema}");
    let database = Database::Postgres { url: url.clone(), schema: Some(schema.clone()) };
    let store = SqlStore::open(&database).await.expect("open the PostgreSQL store");
    test(store.clone()).await;
    store.close().await;
    let admin = sqlx::PgPool::connect(&url).await.expect("connect to PostgreSQL to drop the test schema");
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&admin).await.expect("drop the test schema");
    admin.close().await;
}

/// The PostgreSQL URL, or `None` after saying loudly that PostgreSQL is skipped. In CI a missing
/// URL is a failure: a pipeline that forgot the database must not look green.
/// An embedded database at `options` with the migrations before `version` applied: what an
/// earlier version of the server left, for tests of the migrations that follow.
pub async fn sqlite_before_migration(options: &sqlx::sqlite::SqliteConnectOptions, version: i64) -> sqlx::SqlitePool {
    let all = sqlx::migrate!("./migrations/sqlite");
    let before = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(all.migrations.iter().filter(|m| m.version < version).cloned().collect()),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    };
    let pool = sqlx::SqlitePool::connect_with(options.clone()).await.unwrap();
    before.run(&pool).await.unwrap();
    pool
}

fn postgres_url() -> Option<String> {
    if let Some(url) = std::env::var(DATABASE_URL_VAR).ok().filter(|url| !url.trim().is_empty()) {
        return Some(url);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{DATABASE_URL_VAR} is not set but CI is: the PostgreSQL store tests must run in CI \
         (set {DATABASE_URL_VAR}=postgres://USER@HOST/DB)"
    );
    eprintln!();
    eprintln!("**********************************************************************************");
    eprintln!("SKIPPED: {DATABASE_URL_VAR} is not set; PostgreSQL store tests did not run");
    eprintln!("**********************************************************************************");
    eprintln!();
    None
}

/// A stand-in PHC string: the store keeps password hashes, it never checks them.
pub const PASSWORD_HASH: &str = "$argon2id$v=19$m=64,t=1,p=1$dGVzdHNhbHQ$dGVzdGhhc2g";

pub fn email(raw: &str) -> Email {
    Email::parse(raw).expect("a valid e-mail address")
}

pub fn slug(raw: &str) -> TenantSlug {
    TenantSlug::parse(raw).expect("a valid tenant slug")
}

pub fn provision(email_address: &str, tenant: &str, role: Role, password_hash: Option<&str>) -> ProvisionMember {
    ProvisionMember {
        email: email(email_address),
        password_hash: password_hash.map(str::to_owned),
        tenant: slug(tenant),
        role,
    }
}

/// A tenant and its owner: where most tests start.
#[derive(Debug)]
pub struct Owner {
    pub tenant: Tenant,
    pub user: UserRecord,
}

impl Owner {
    pub fn tenant_id(&self) -> &TenantId {
        &self.tenant.id
    }

    /// The audit context of this owner acting through the API.
    pub fn ctx(&self) -> AuditContext {
        AuditContext {
            actor: Actor::User { id: self.user.id.clone(), email: self.user.email.clone() },
            ip: Some("203.0.113.7".into()),
            user_agent: Some("prom-store-tests".into()),
        }
    }
}

/// Creates tenant `tenant` with `owner@<tenant>.example` as its owner.
pub async fn owner_of(store: &SqlStore, tenant: &str) -> Owner {
    let request = provision(&format!("owner@{tenant}.example"), tenant, Role::Owner, Some(PASSWORD_HASH));
    let outcome =
        store.provision_member(request, &AuditContext::admin_cli()).await.expect("provision the tenant owner");
    Owner { tenant: outcome.tenant, user: outcome.user }
}

/// A key hasher with a fresh salt and parameters cheap enough for tests.
pub fn hasher() -> KeyHasher {
    KeyHasher::new(KdfParams { m_cost_kib: 64, t_cost: 1, p_cost: 1 }, KeyHasher::generate_salt())
        .expect("valid test KDF parameters")
}

/// A freshly minted live key of `owner`'s tenant, ready to insert.
pub fn new_key(hasher: &KeyHasher, owner: &Owner, label: &str, created_at: Timestamp) -> (PlainKey, NewKey) {
    let plain = PlainKey::mint(Environment::Live);
    let key = NewKey {
        id: KeyId::new(),
        tenant_id: owner.tenant.id.clone(),
        label: Label::parse(label).expect("a valid label"),
        environment: plain.environment(),
        digest: hasher.digest(&plain).unwrap(),
        last4: plain.last4(),
        scopes: vec![Scope::AgentConnect],
        created_by: Some(owner.user.id.clone()),
        created_at,
    };
    (plain, key)
}

/// Mints and stores a key of `owner`'s tenant.
pub async fn insert_key(
    store: &SqlStore,
    hasher: &KeyHasher,
    owner: &Owner,
    label: &str,
    created_at: Timestamp,
) -> (PlainKey, KeyRecord) {
    let (plain, key) = new_key(hasher, owner, label, created_at);
    let record = store.insert_key(key, &owner.ctx()).await.expect("insert the key");
    (plain, record)
}

/// A service of `owner`'s tenant, ready to register: an HTTP upstream and one priced tool.
pub fn new_service(owner: &Owner, slug: &str, created_at: Timestamp) -> NewService {
    NewService {
        id: ServiceId::new(),
        tenant_id: owner.tenant.id.clone(),
        slug: service_slug(slug),
        name: format!("{slug} service"),
        description: format!("What {slug} does."),
        upstream: Upstream::Http { url: format!("https://{slug}.example/mcp") },
        prices: prices(&[("search", 250)]),
        charge_tool_errors: false,
        created_at,
    }
}

pub fn service_slug(raw: &str) -> ServiceSlug {
    ServiceSlug::parse(raw).expect("a valid service slug")
}

pub fn prices(entries: &[(&str, u128)]) -> Prices {
    entries.iter().map(|(tool, units)| ((*tool).to_owned(), Amount::new(*units))).collect::<BTreeMap<_, _>>()
}

/// `at` moved by `ms` milliseconds (either way).
pub fn shift(at: Timestamp, ms: i64) -> Timestamp {
    Timestamp::from_millis(at.as_millis() + ms)
}

/// Everything (up to one page) in a tenant's audit log.
pub fn everything() -> AuditFilter {
    AuditFilter { limit: MAX_AUDIT_PAGE, ..AuditFilter::default() }
}

pub fn by_action(action: AuditAction) -> AuditFilter {
    AuditFilter { action: Some(action), ..everything() }
}

pub fn by_key(key_id: &KeyId) -> AuditFilter {
    AuditFilter { key_id: Some(key_id.clone()), ..everything() }
}

pub fn by_key_and_action(key_id: &KeyId, action: AuditAction) -> AuditFilter {
    AuditFilter { action: Some(action), ..by_key(key_id) }
}

/// The actions of `events`, in order.
pub fn actions(events: &[AuditEvent]) -> Vec<&str> {
    events.iter().map(|event| event.action.as_str()).collect()
}

/// The ids of the things `events` are about, in order.
pub fn target_ids(events: &[AuditEvent]) -> Vec<&str> {
    events.iter().filter_map(|event| event.target.as_ref()).map(|target| target.id.as_str()).collect()
}
