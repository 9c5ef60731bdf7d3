//! Dashboard pages with a lot of data: one tenant with 10,000 API keys and 1,000,000 audit rows
//! on the embedded SQLite database, each page fetched over HTTP on loopback with a session cookie
//! (the whole request: session check, paginated queries, rendering).
//!
//! Run: `cargo bench -p prom-server --bench pages` (seeding takes a minute or two).

// Tests and benchmarks fail by panicking; the library lints against it do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use prom_core::access::{Role, Scope};
use prom_core::audit::{Actor, AuditAction, AuditContext, AuditTarget, NewAuditEvent};
use prom_core::id::{KeyId, TenantId, UserId};
use prom_core::kdf::{KdfParams, KeyDigest};
use prom_core::key::Environment;
use prom_core::store::{KeyStore, NewKey, ProvisionMember, UsageStore, UserStore};
use prom_core::time::Timestamp;
use prom_core::user::{Email, Label, Password, TenantSlug};
use prom_server::{AppState, ServerConfig};
use prom_store::{Database, EmbeddedLedger, EmbeddedLedgerConfig, SqlStore};

const KEYS: usize = 10_000;
const AUDIT_ROWS: usize = 1_000_000;
const PASSWORD: &str = "bench password, long enough";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
    cookie: String,
    _dir: tempfile::TempDir,
}

async fn seed_keys(store: &SqlStore, tenant: &TenantId, user: &UserId) {
    let ctx = AuditContext::admin_cli();
    for n in 0..KEYS {
        let mut digest = [0u8; 32];
        digest[..8].copy_from_slice(&(n as u64).to_le_bytes());
        let new = NewKey {
            id: KeyId::new(),
            tenant_id: tenant.clone(),
            label: Label::parse(&format!("agent-{n}")).unwrap(),
            environment: Environment::Live,
            digest: KeyDigest::from_bytes(digest),
            last4: format!("{:04x}", n % 0xffff),
            scopes: vec![Scope::AgentConnect],
            created_by: Some(user.clone()),
            created_at: Timestamp::now(),
        };
        store.insert_key(new, &ctx).await.unwrap();
    }
}

async fn seed_audit(store: &SqlStore, tenant: &TenantId) {
    let actions =
        [AuditAction::ApiKeyUse, AuditAction::UserLogin, AuditAction::AllowanceApprove, AuditAction::ApiKeyRevoke];
    let start = Timestamp::now().minus_seconds(AUDIT_ROWS as u64);
    let mut batch = Vec::with_capacity(10_000);
    for n in 0..AUDIT_ROWS {
        let actor =
            Actor::User { id: UserId::new(), email: Email::parse(&format!("user{}@bench.example", n % 50)).unwrap() };
        batch.push(NewAuditEvent {
            at: start.plus_seconds(n as u64),
            tenant_id: Some(tenant.clone()),
            action: actions[n % actions.len()],
            context: AuditContext { actor, ip: Some("10.0.0.1".into()), user_agent: Some("bench".into()) },
            target: Some(AuditTarget { kind: "api_key".into(), id: format!("key-{}", n % 1000), label: None }),
            details: serde_json::json!({}),
        });
        if batch.len() == 10_000 {
            store.record_usage(&[], &batch).await.unwrap();
            batch.clear();
        }
    }
    store.record_usage(&[], &batch).await.unwrap();
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (base, cookie) = runtime.block_on(async {
        let store = SqlStore::open(&Database::in_data_dir(dir.path())).await.unwrap();
        let fast = KdfParams { m_cost_kib: 256, t_cost: 1, p_cost: 1 };
        let config = ServerConfig { password_kdf: fast, key_kdf: fast, ..ServerConfig::default() };
        let ledger = Arc::new(EmbeddedLedger::new(
            store.clone(),
            EmbeddedLedgerConfig::default(),
            Arc::new(prom_core::ledger::SystemClock),
        ));
        let state = AppState::build(Arc::new(store.clone()), ledger, config).await.unwrap();
        let hash = state.passwords.hash(&Password::new(PASSWORD.into()).unwrap()).unwrap();
        let outcome = store
            .provision_member(
                ProvisionMember {
                    email: Email::parse("owner@bench.example").unwrap(),
                    password_hash: Some(hash),
                    tenant: TenantSlug::parse("bench").unwrap(),
                    role: Role::Owner,
                },
                &AuditContext::admin_cli(),
            )
            .await
            .unwrap();
        eprintln!("seeding {KEYS} keys and {AUDIT_ROWS} audit rows…");
        seed_keys(&store, &outcome.tenant.id, &outcome.user.id).await;
        seed_audit(&store, &outcome.tenant.id).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(prom_server::serve(listener, state, std::future::pending()));
        let login: serde_json::Value = reqwest::Client::new()
            .post(format!("{base}/v1/auth/login"))
            .json(&serde_json::json!({ "email": "owner@bench.example", "password": PASSWORD }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["token"].as_str().expect("a session token").to_owned();
        (base, format!("prom_session={token}"))
    });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    Fixture { runtime, client, base, cookie, _dir: dir }
}

fn pages(c: &mut Criterion) {
    let fixture = fixture();
    let mut group = c.benchmark_group("dashboard pages (10,000 keys, 1,000,000 audit rows)");
    group.sample_size(30);
    let paths = [
        "/app/api-keys",
        "/app/api-keys?page=150",
        "/app/audit",
        "/app/audit?action=api_key.revoke",
        "/app/audit?actor=user7%40bench.example",
        "/app/audit?from=2020-01-01&to=2020-01-02",
        "/app/usage",
        "/app/wallet",
    ];
    for path in paths {
        let url = format!("{}{path}", fixture.base);
        // Once outside the timing: the page must render.
        let status = fixture.runtime.block_on(async {
            fixture.client.get(&url).header("cookie", &fixture.cookie).send().await.unwrap().status()
        });
        assert!(status.is_success(), "{path}: {status}");
        group.bench_function(path, |b| {
            b.iter(|| {
                fixture.runtime.block_on(async {
                    let response = fixture.client.get(&url).header("cookie", &fixture.cookie).send().await.unwrap();
                    response.bytes().await.unwrap()
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, pages);
criterion_main!(benches);
