//! API key verification cost: cold (Argon2id at the default OWASP parameters plus the digest
//! lookup) against warm (the verified-key cache), and warm verification while a flood of unknown
//! keys is thrown at the same verifier — from one address (throttled per client) and from many
//! addresses (throttling cannot help; the bounded Argon2 pool must). And an OAuth access token
//! on the same verifier, cold (a SHA-256 and the token's lookup) and warm (the same cache).
//!
//! Run: `cargo bench -p prom-server --bench verify`

// Tests and benchmarks fail by panicking; the library lints against it do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use prom_core::access::{Role, Scope};
use prom_core::audit::AuditContext;
use prom_core::id::KeyId;
use prom_core::key::{Environment, PlainKey};
use prom_core::store::{KeyStore, NewKey, ProvisionMember, UserStore};
use prom_core::time::Timestamp;
use prom_core::user::{Email, Label, TenantSlug};
use prom_server::{AppState, ServerConfig};
use prom_store::{Database, EmbeddedLedger, EmbeddedLedgerConfig, SqlStore};

fn embedded_ledger(store: &SqlStore) -> Arc<EmbeddedLedger> {
    Arc::new(EmbeddedLedger::new(
        store.clone(),
        EmbeddedLedgerConfig::default(),
        Arc::new(prom_core::ledger::SystemClock),
    ))
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    state: AppState,
    key: String,
    key_id: KeyId,
    /// An OAuth access token and its grant's credential.
    token: String,
    grant_key: KeyId,
    _dir: tempfile::TempDir,
}

/// A grant for `tenant` and one access token of it (as the consent page and `/oauth/token` make them).
async fn grant_token(
    store: &SqlStore,
    tenant: &prom_core::id::TenantId,
    user: &prom_core::id::UserId,
) -> (String, KeyId) {
    use prom_core::oauth::{
        ACCESS_PREFIX, CODE_PREFIX, NewCode, NewGrant, NewToken, OAuthSecret, OAuthStore, TokenKind,
    };
    let now = Timestamp::now();
    let grant = NewGrant {
        id: prom_core::id::GrantId::new(),
        key_id: KeyId::new(),
        tenant_id: tenant.clone(),
        user_id: user.clone(),
        client_id: "prc_bench".into(),
        client_name: "bench client".into(),
        service: prom_core::service::ServiceSlug::parse("bench").expect("slug"),
        resource: "http://127.0.0.1/mcp/bench".into(),
        scopes: vec!["agent:connect".into()],
        spend_cap: prom_core::money::Amount::new(1000),
        expires_at: now.plus_seconds(86_400),
        created_at: now,
    };
    let code = OAuthSecret::mint(CODE_PREFIX);
    let stored = NewCode {
        digest: code.digest(),
        grant_id: grant.id.clone(),
        client_id: "prc_bench".into(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        code_challenge: "x".repeat(43),
        created_at: now,
        expires_at: now.plus_seconds(60),
    };
    store.create_grant(&grant, &stored, &AuditContext::admin_cli()).await.expect("grant");
    let access = OAuthSecret::mint(ACCESS_PREFIX);
    let row = NewToken {
        digest: access.digest(),
        grant_id: grant.id.clone(),
        kind: TokenKind::Access,
        created_at: now,
        expires_at: now.plus_seconds(86_400),
    };
    assert!(store.redeem_code(&code.digest(), now, &[row], &AuditContext::admin_cli()).await.expect("redeem"));
    (access.expose().to_owned(), grant.key_id)
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = runtime.block_on(async {
        let store = SqlStore::open(&Database::in_data_dir(dir.path())).await.expect("store");
        let outcome = store
            .provision_member(
                ProvisionMember {
                    email: Email::parse("bench@example.com").expect("email"),
                    password_hash: Some("unused".into()),
                    tenant: TenantSlug::parse("bench").expect("slug"),
                    role: Role::Owner,
                },
                &AuditContext::admin_cli(),
            )
            .await
            .expect("provision");
        // Default (OWASP) Argon2id parameters: the cold path is measured as deployed.
        let state = AppState::build(Arc::new(store.clone()), embedded_ledger(&store), ServerConfig::default())
            .await
            .expect("state");
        let key = PlainKey::mint(Environment::Live);
        let new = NewKey {
            id: KeyId::new(),
            tenant_id: outcome.tenant.id.clone(),
            label: Label::parse("bench").expect("label"),
            environment: Environment::Live,
            digest: state.hasher.digest(&key).expect("digest"),
            last4: key.last4(),
            scopes: vec![Scope::AgentConnect],
            created_by: None,
            created_at: Timestamp::now(),
        };
        let record = store.insert_key(new, &AuditContext::admin_cli()).await.expect("insert");
        let (token, grant_key) = grant_token(&store, &outcome.tenant.id, &outcome.user.id).await;
        (state, key.expose().to_owned(), record.id, token, grant_key)
    });
    let (state, key, key_id, token, grant_key) = (state.0, state.1, state.2, state.3, state.4);
    Fixture { runtime, state, key, key_id, token, grant_key, _dir: dir }
}

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

/// Runs `iters` warm verifications inside one `block_on` so the timing is the verifier's alone.
fn warm_loop(fx: &Fixture, iters: u64) -> Duration {
    let verifier = fx.state.verifier.clone();
    let key = fx.key.clone();
    fx.runtime.block_on(async move {
        let start = Instant::now();
        for _ in 0..iters {
            let principal = verifier.verify(&key, CLIENT).await.expect("known key verifies");
            std::hint::black_box(principal);
        }
        start.elapsed()
    })
}

/// Throws unknown keys at the verifier from a second runtime until stopped. `many_clients` gives
/// every request its own address, defeating the per-client throttle.
fn start_flood(fx: &Fixture, many_clients: bool) -> (Arc<AtomicBool>, Arc<AtomicU64>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let verifier = fx.state.verifier.clone();
    let (stop2, sent2) = (stop.clone(), sent.clone());
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("flood runtime");
        runtime.block_on(async move {
            let mut n: u32 = 0;
            let mut tasks = tokio::task::JoinSet::new();
            while !stop2.load(Ordering::Relaxed) {
                n = n.wrapping_add(1);
                let ip = if many_clients {
                    IpAddr::V4(Ipv4Addr::from(0x0b00_0000 | n))
                } else {
                    IpAddr::V4(Ipv4Addr::new(11, 0, 0, 1))
                };
                let verifier = verifier.clone();
                tasks.spawn(async move {
                    let bogus = PlainKey::mint(Environment::Live);
                    let _ = verifier.verify(bogus.expose(), ip).await;
                });
                sent2.fetch_add(1, Ordering::Relaxed);
                if tasks.len() >= 256 {
                    let _ = tasks.join_next().await;
                }
            }
            tasks.abort_all();
        });
    });
    (stop, sent, handle)
}

fn bench_verify(c: &mut Criterion) {
    let fx = fixture();
    let mut group = c.benchmark_group("verify");
    group.sample_size(20).measurement_time(Duration::from_secs(5));

    group.bench_function("cold_argon2id_default_params", |b| {
        b.iter_custom(|iters| {
            let verifier = fx.state.verifier.clone();
            let (key, id) = (fx.key.clone(), fx.key_id.clone());
            fx.runtime.block_on(async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    verifier.forget_key(&id);
                    let start = Instant::now();
                    std::hint::black_box(verifier.verify(&key, CLIENT).await.expect("verifies"));
                    total += start.elapsed();
                }
                total
            })
        });
    });
    group.sample_size(50).measurement_time(Duration::from_secs(5));
    // Warm the cache once.
    let _ = warm_loop(&fx, 1);
    group.bench_function("warm_cache", |b| b.iter_custom(|iters| warm_loop(&fx, iters)));

    group.bench_function("oauth_token_cold", |b| {
        b.iter_custom(|iters| {
            let verifier = fx.state.verifier.clone();
            let (token, id) = (fx.token.clone(), fx.grant_key.clone());
            fx.runtime.block_on(async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    verifier.forget_key(&id);
                    let start = Instant::now();
                    std::hint::black_box(verifier.verify_token(&token, CLIENT).await.expect("verifies"));
                    total += start.elapsed();
                }
                total
            })
        });
    });
    group.bench_function("oauth_token_warm", |b| {
        b.iter_custom(|iters| {
            let verifier = fx.state.verifier.clone();
            let token = fx.token.clone();
            fx.runtime.block_on(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(verifier.verify_token(&token, CLIENT).await.expect("verifies"));
                }
                start.elapsed()
            })
        });
    });

    for (name, many) in
        [("warm_during_unknown_key_flood_one_client", false), ("warm_during_unknown_key_flood_many_clients", true)]
    {
        let (stop, sent, handle) = start_flood(&fx, many);
        std::thread::sleep(Duration::from_millis(300));
        let before = sent.load(Ordering::Relaxed);
        let started = Instant::now();
        group.bench_function(name, |b| b.iter_custom(|iters| warm_loop(&fx, iters)));
        let rate = (sent.load(Ordering::Relaxed) - before) as f64 / started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let _ = handle.join();
        let stats = &fx.state.verifier.stats;
        eprintln!(
            "{name}: flood of {rate:.0} unknown keys/s; totals so far: cold lookups {}, unknown {}, throttled {}",
            stats.cold_lookups.load(Ordering::Relaxed),
            stats.unknown.load(Ordering::Relaxed),
            stats.throttled.load(Ordering::Relaxed),
        );
    }
    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
