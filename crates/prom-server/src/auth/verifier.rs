//! API key verification: the hot path of every agent request.
//!
//! Warm path (a key seen recently): check the format, hash the presented string with a keyed
//! BLAKE3 (a per-process secret, never persisted) and look the result up in an in-memory map of
//! verified keys — no database, no Argon2. The map is keyed by that hash, so its lookups reveal
//! nothing about key material through timing.
//!
//! Cold path (a key not in the map): take a token from the client's unknown-key budget (a client
//! is an IPv4 address or an IPv6 /64) and one from the budget all clients share, compute the
//! Argon2id digest on the key-lookup lane of the bounded hashing pool, find the key by digest, and cache it if it is
//! active. Refused keys (unknown, revoked, deleted, expired: none of these states can change back)
//! go into a small negative map with the reason, so that repeating a bad key costs no more Argon2.
//!
//! Revocation: revoke, delete and rotate call [`KeyVerifier::forget_key`] before they return, so
//! the next request on this node re-reads the key's state. Entries older than the revalidation
//! interval are re-read from the database by digest (an index lookup, no Argon2), which bounds how
//! long another node can trust a revoked key; an expiry set by rotation is checked per request.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use prom_core::access::Scope;
use prom_core::id::{GrantId, KeyId, TenantId};
use prom_core::kdf::{KeyDigest, KeyHasher};
use prom_core::key::{Environment, PlainKey};
use prom_core::money::Amount;
use prom_core::service::ServiceSlug;
use prom_core::store::{KeyRecord, KeyStatus, Store};
use prom_core::time::Timestamp;
use prom_core::user::Label;

use prom_core::oauth::TokenDigest;

use super::pool::{HashingPool, Lane, PoolError};
use super::throttle::{ClientThrottle, SharedBudget};
use crate::error::ApiError;
use crate::usage::UsageRecorder;

mod tokens;

/// How long a refused key is remembered as refused.
const NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// Most refused keys remembered.
const NEGATIVE_MAX: usize = 10_000;
/// Usage is noted at most this often per key (milliseconds).
const USAGE_NOTE_EVERY_MS: i64 = 1000;

/// The identity a verified API key carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentPrincipal {
    pub key_id: KeyId,
    pub tenant_id: TenantId,
    pub label: Label,
    pub environment: Environment,
    pub scopes: Vec<Scope>,
    pub display: String,
    /// Set for an OAuth access token: the grant it was issued under, bound to one service.
    pub grant: Option<GrantBinding>,
}

/// What an OAuth access token carries beyond a key: the one service it may call and the grant's
/// spend cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantBinding {
    pub id: GrantId,
    pub service: ServiceSlug,
    pub spend_cap: Amount,
    pub client_name: String,
}

impl AgentPrincipal {
    fn from_record(record: &KeyRecord) -> Self {
        Self {
            key_id: record.id.clone(),
            tenant_id: record.tenant_id.clone(),
            label: record.label.clone(),
            environment: record.environment,
            scopes: record.scopes.clone(),
            display: record.display(),
            grant: None,
        }
    }

    /// The spend cap that bounds this credential's calls beyond the allowance.
    pub fn spend_cap(&self) -> Option<Amount> {
        self.grant.as_ref().map(|grant| grant.spend_cap)
    }
}

type CacheKey = [u8; 32];

/// Why a key was refused, remembered for [`NEGATIVE_TTL`].
#[derive(Debug)]
struct Refusal {
    at: Instant,
    message: Arc<str>,
}

/// How a cached credential is read again: a key by its Argon2 digest, an OAuth access token by
/// its SHA-256 digest.
#[derive(Clone, Debug)]
enum Source {
    Key(KeyDigest),
    Token(TokenDigest),
}

#[derive(Debug)]
struct CachedKey {
    principal: Arc<AgentPrincipal>,
    source: Source,
    expires_at: Option<Timestamp>,
    checked_at: Instant,
    last_noted_ms: AtomicI64,
}

/// Counters for `/metrics` and benchmarks.
#[derive(Debug, Default)]
pub struct VerifierStats {
    pub warm_hits: AtomicU64,
    pub cold_lookups: AtomicU64,
    pub revalidations: AtomicU64,
    pub unknown: AtomicU64,
    pub throttled: AtomicU64,
    /// Refused by the budget all clients share, not by their own.
    pub throttled_globally: AtomicU64,
}

#[derive(Debug)]
pub struct VerifierSettings {
    pub environment: Environment,
    pub revalidate_after: Duration,
    pub max_entries: usize,
    pub unknown_key_burst: u32,
    pub unknown_key_per_sec: f64,
    pub unknown_key_global_burst: u32,
    pub unknown_key_global_per_sec: f64,
}

#[derive(Debug)]
pub struct KeyVerifier {
    store: Arc<dyn Store>,
    hasher: Arc<KeyHasher>,
    pool: HashingPool,
    usage: UsageRecorder,
    settings: VerifierSettings,
    cache_secret: [u8; 32],
    cache: DashMap<CacheKey, CachedKey>,
    refused: DashMap<CacheKey, Refusal>,
    /// When each key last changed (revoked, deleted, rotated): a lookup whose database read
    /// started before that instant must not put what it read into the cache.
    tombstones: DashMap<KeyId, Instant>,
    throttle: ClientThrottle,
    /// What all clients together may spend on keys that turn out unknown: a flood spread over
    /// many networks gets no more Argon2 than this.
    global: SharedBudget,
    /// One cold lookup per presented key at a time: concurrent requests with the same key (an
    /// agent's burst after a restart) wait for the first one's answer instead of each queueing
    /// an Argon2 job.
    inflight: DashMap<CacheKey, Arc<tokio::sync::Mutex<()>>>,
    pub stats: VerifierStats,
}

impl KeyVerifier {
    pub fn new(
        store: Arc<dyn Store>,
        hasher: Arc<KeyHasher>,
        pool: HashingPool,
        usage: UsageRecorder,
        settings: VerifierSettings,
    ) -> Self {
        let mut cache_secret = [0u8; 32];
        crate::fill_random(&mut cache_secret);
        let throttle = ClientThrottle::new(settings.unknown_key_burst, settings.unknown_key_per_sec);
        let global = SharedBudget::new(settings.unknown_key_global_burst, settings.unknown_key_global_per_sec);
        Self {
            store,
            hasher,
            pool,
            usage,
            settings,
            cache_secret,
            cache: DashMap::new(),
            refused: DashMap::new(),
            tombstones: DashMap::new(),
            throttle,
            global,
            inflight: DashMap::new(),
            stats: VerifierStats::default(),
        }
    }

    fn cache_key(&self, raw: &str) -> CacheKey {
        *blake3::keyed_hash(&self.cache_secret, raw.as_bytes()).as_bytes()
    }

    /// Verifies a presented key for a request from `client`.
    pub async fn verify(&self, raw: &str, client: IpAddr) -> Result<Arc<AgentPrincipal>, ApiError> {
        let key = PlainKey::parse(raw).map_err(|err| ApiError::TokenInvalid(err.to_string()))?;
        if key.environment() != self.settings.environment {
            return Err(ApiError::TokenInvalid(format!(
                "this is a {} key ({}…) but this server runs in the {} environment and accepts only {}… keys; \
                 use a key created on this server",
                key.environment(),
                key.environment().prefix(),
                self.settings.environment,
                self.settings.environment.prefix(),
            )));
        }
        let cache_key = self.cache_key(key.expose());
        let now = Timestamp::now();
        if let Some(principal) = self.check_cached(&cache_key, now).await? {
            return Ok(principal);
        }
        let gate = self.inflight.entry(cache_key).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(()))).clone();
        let result = {
            let _turn = gate.lock().await;
            // Whoever held the gate before may have answered for this key already.
            match self.check_cached(&cache_key, now).await? {
                Some(principal) => Ok(principal),
                None => self.verify_cold(key, cache_key, client, now).await,
            }
        };
        drop(gate);
        self.inflight.remove_if(&cache_key, |_, gate| Arc::strong_count(gate) == 1);
        result
    }

    /// The warm path. `Ok(None)` means "not cached, go cold".
    async fn check_cached(
        &self,
        cache_key: &CacheKey,
        now: Timestamp,
    ) -> Result<Option<Arc<AgentPrincipal>>, ApiError> {
        let (principal, stale_digest) = match self.cache.get(cache_key) {
            None => return Ok(None),
            Some(entry) => {
                if let Some(at) = entry.expires_at.filter(|at| *at <= now) {
                    let token = matches!(entry.source, Source::Token(_));
                    drop(entry);
                    self.cache.remove(cache_key);
                    let err = if token { tokens::expired_token() } else { expired(at) };
                    return Err(self.refuse(*cache_key, err));
                }
                if entry.checked_at.elapsed() < self.settings.revalidate_after {
                    let last = entry.last_noted_ms.load(Ordering::Relaxed);
                    if now.as_millis() - last >= USAGE_NOTE_EVERY_MS {
                        entry.last_noted_ms.store(now.as_millis(), Ordering::Relaxed);
                        self.usage.record(entry.principal.key_id.clone(), now);
                    }
                    self.stats.warm_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(entry.principal.clone()));
                }
                (entry.principal.clone(), entry.source.clone())
            }
        };
        // Stale: re-read the key's state by digest (no Argon2 needed). The entry stays in place
        // meanwhile, so concurrent requests with the same key revalidate the same cheap way
        // instead of falling through to the cold path and queueing on the Argon2 pool.
        self.stats.revalidations.fetch_add(1, Ordering::Relaxed);
        let read_started = Instant::now();
        let stale_digest = match stale_digest {
            Source::Key(digest) => digest,
            Source::Token(digest) => return self.revalidate_token(digest, cache_key, now, read_started).await,
        };
        let record = self.store.find_key_by_digest(&stale_digest).await?;
        match record {
            Some(record) if record.id == principal.key_id => {
                let admitted = self.admit(&record, stale_digest, *cache_key, now, read_started);
                if admitted.is_err() {
                    self.cache.remove(cache_key);
                }
                admitted.map(Some).map_err(|err| self.refuse(*cache_key, err))
            }
            _ => {
                self.cache.remove(cache_key);
                Err(self.refuse(*cache_key, unknown()))
            }
        }
    }

    async fn verify_cold(
        &self,
        key: PlainKey,
        cache_key: CacheKey,
        client: IpAddr,
        now: Timestamp,
    ) -> Result<Arc<AgentPrincipal>, ApiError> {
        let known_refusal = self
            .refused
            .get(&cache_key)
            .filter(|refusal| refusal.at.elapsed() < NEGATIVE_TTL)
            .map(|refusal| refusal.message.clone());
        if let Err(retry_after_secs) = self.throttle.take(client) {
            self.stats.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::RateLimited {
                message: "too many requests with unknown API keys from this address; check the key and retry later"
                    .into(),
                retry_after_secs,
            });
        }
        if let Some(message) = known_refusal {
            self.stats.unknown.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::TokenInvalid(message.to_string()));
        }
        // Only Argon2 costs the shared budget: a refusal remembered above costs nothing.
        if let Err(retry_after_secs) = self.global.take() {
            self.stats.throttled_globally.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::RateLimited {
                message: "too many requests with unknown API keys reach this server right now; keys already in \
                          use are unaffected, retry later"
                    .into(),
                retry_after_secs,
            });
        }
        self.stats.cold_lookups.fetch_add(1, Ordering::Relaxed);
        let hasher = self.hasher.clone();
        let digest = self.pool.run(Lane::KeyLookup, move || hasher.digest(&key)).await.map_err(|err| match err {
            PoolError::Busy => ApiError::RateLimited {
                message: "the server is busy checking API keys; retry in a moment".into(),
                retry_after_secs: 1,
            },
            PoolError::Crashed(err) => ApiError::internal(err),
        })?;
        // A key that cannot be hashed is refused (500), never looked up: there is no digest of it.
        let digest = digest.map_err(ApiError::internal)?;
        let read_started = Instant::now();
        let Some(record) = self.store.find_key_by_digest(&digest).await? else {
            self.stats.unknown.fetch_add(1, Ordering::Relaxed);
            return Err(self.refuse(cache_key, unknown()));
        };
        let principal =
            self.admit(&record, digest, cache_key, now, read_started).map_err(|err| self.refuse(cache_key, err))?;
        self.throttle.refund(client);
        self.global.refund();
        Ok(principal)
    }

    /// Turns a freshly read key record into a principal, caching it if it is active and no
    /// change to the key was announced after `read_started` (the read may predate that change).
    fn admit(
        &self,
        record: &KeyRecord,
        digest: KeyDigest,
        cache_key: CacheKey,
        now: Timestamp,
        read_started: Instant,
    ) -> Result<Arc<AgentPrincipal>, ApiError> {
        match record.status(now) {
            KeyStatus::Active => {}
            KeyStatus::Revoked => {
                return Err(ApiError::TokenInvalid(format!(
                    "this API key ({}, \"{}\") was revoked{}; ask an owner or admin of the account for a new key",
                    record.display(),
                    record.label,
                    record.revoked_at.map(|at| format!(" at {at}")).unwrap_or_default(),
                )));
            }
            KeyStatus::Deleted => {
                return Err(ApiError::TokenInvalid(format!(
                    "this API key ({}) was deleted; ask an owner or admin of the account for a new key",
                    record.display()
                )));
            }
            KeyStatus::Expired => return Err(expired(record.expires_at.unwrap_or(now))),
        }
        let principal = Arc::new(AgentPrincipal::from_record(record));
        self.remember(principal.clone(), Source::Key(digest), record.expires_at, cache_key, now, read_started);
        Ok(principal)
    }

    /// Notes the use of a just-read credential and caches it, unless a change to it was announced
    /// after `read_started` (the read may predate that change).
    fn remember(
        &self,
        principal: Arc<AgentPrincipal>,
        source: Source,
        expires_at: Option<Timestamp>,
        cache_key: CacheKey,
        now: Timestamp,
        read_started: Instant,
    ) {
        self.usage.record(principal.key_id.clone(), now);
        let changed_since_read = self.tombstones.get(&principal.key_id).is_some_and(|at| *at >= read_started);
        if changed_since_read {
            return;
        }
        if self.cache.len() >= self.settings.max_entries {
            self.evict_some();
        }
        self.cache.insert(
            cache_key,
            CachedKey {
                principal,
                source,
                expires_at,
                checked_at: Instant::now(),
                last_noted_ms: AtomicI64::new(now.as_millis()),
            },
        );
    }

    /// Remembers a refusal (unknown, revoked, deleted, expired: states that never change back).
    fn refuse(&self, cache_key: CacheKey, err: ApiError) -> ApiError {
        if let ApiError::TokenInvalid(message) = &err {
            if self.refused.len() >= NEGATIVE_MAX {
                self.refused.retain(|_, refusal| refusal.at.elapsed() < NEGATIVE_TTL);
                if self.refused.len() >= NEGATIVE_MAX {
                    self.refused.clear();
                }
            }
            self.refused.insert(cache_key, Refusal { at: Instant::now(), message: Arc::from(message.as_str()) });
        }
        err
    }

    /// Makes room: drops entries due for revalidation, then, if still full, everything (the next
    /// requests re-verify; correctness never depends on the cache).
    fn evict_some(&self) {
        let revalidate_after = self.settings.revalidate_after;
        self.cache.retain(|_, entry| entry.checked_at.elapsed() < revalidate_after);
        if self.cache.len() >= self.settings.max_entries {
            self.cache.clear();
        }
    }

    /// Drops a key from the cache so the next request re-reads its state. Called by revoke,
    /// delete and rotate before they return.
    pub fn forget_key(&self, id: &KeyId) {
        // A lookup reads the database within seconds; older marks can no longer matter.
        self.tombstones.retain(|_, at| at.elapsed() < Duration::from_secs(300));
        self.tombstones.insert(id.clone(), Instant::now());
        self.cache.retain(|_, entry| entry.principal.key_id != *id);
    }

    /// Forgets that a just-minted key was ever looked up as unknown.
    pub fn forget_unknown(&self, key: &PlainKey) {
        self.refused.remove(&self.cache_key(key.expose()));
    }

    pub fn cached_keys(&self) -> usize {
        self.cache.len()
    }

    pub fn pool(&self) -> &HashingPool {
        &self.pool
    }
}

fn unknown() -> ApiError {
    ApiError::TokenInvalid(
        "this API key is not known to this server: check that it was copied whole and from this \
         server's account, or create a new one"
            .into(),
    )
}

fn expired(at: Timestamp) -> ApiError {
    ApiError::TokenInvalid(format!(
        "this API key expired at {at} because it was rotated; switch the agent to the key that replaced it"
    ))
}
