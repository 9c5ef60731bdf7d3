//! Server settings that shape behaviour (as opposed to where to listen or store data, which the
//! binary owns). Every field has a default that suits a single machine.

use prom_core::kdf::KdfParams;
use prom_core::key::Environment;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Which keys this server accepts: `live` (prom_live_…) or `test` (prom_test_…).
    pub environment: Environment,
    /// Argon2id parameters of API key digests. Fixed at the deployment's first start.
    pub key_kdf: KdfParams,
    /// Argon2id parameters for new password hashes (existing hashes carry their own).
    pub password_kdf: KdfParams,
    /// Threads that may run Argon2 at once; 0 picks one less than the number of cores (at least 1),
    /// so key hashing can never take every core away from requests with known keys.
    pub hashing_workers: usize,
    /// Key lookups allowed to wait for an Argon2 worker before new ones are refused with
    /// `RATE_LIMITED`.
    pub hashing_queue: usize,
    /// Sign-ins (and key creations) allowed to wait for an Argon2 worker: a queue of their own,
    /// which key lookups cannot fill, and served first.
    pub sign_in_hashing_queue: usize,
    /// How long a verified key is trusted from the cache before its state is re-read (seconds).
    /// Revocation on this node takes effect at once regardless; this bounds staleness elsewhere.
    pub key_cache_revalidate_secs: u64,
    /// Most keys kept in the verified-key cache.
    pub key_cache_max_entries: usize,
    /// Unknown-key lookups a single client (an IPv4 address, or an IPv6 /64) may burst before
    /// being throttled.
    pub unknown_key_burst: u32,
    /// Unknown-key lookups per second a single client regains.
    pub unknown_key_per_sec: f64,
    /// Unknown-key lookups all clients together may burst before every further one is throttled
    /// (keys in the verified-key cache are unaffected).
    pub unknown_key_global_burst: u32,
    /// Unknown-key lookups per second all clients together regain.
    pub unknown_key_global_per_sec: f64,
    /// Failed sign-ins a single client (an IPv4 address, or an IPv6 /64) may burst before being
    /// throttled.
    pub login_burst: u32,
    /// Failed sign-ins per second a single client regains.
    pub login_per_sec: f64,
    /// Lifetime of a sign-in session (seconds).
    pub session_ttl_secs: u64,
    /// A dashboard session ends after this long without a page view (seconds).
    pub session_idle_secs: u64,
    /// Lets the dashboard's wallet page add test funds to the tenant's wallet on the embedded
    /// ledger (on with `--demo`; never on for a real ledger).
    pub test_funds: bool,
    /// Longest grace period a rotated key may keep working (seconds).
    pub max_rotation_grace_secs: u64,
    /// How often key usage (`last_used_at`, usage events, `api_key.use` rows) is written out
    /// (milliseconds); also sooner, every 500 requests.
    pub usage_flush_ms: u64,
    /// Commands a service may run as its stdio upstream, each a whole command the operator
    /// defines (see `gateway/launch.rs`). A stdio upstream is a program the gateway runs on this
    /// host, so by default there are none.
    pub stdio_commands: Vec<crate::gateway::StdioCommand>,
    /// Resource limits of every stdio upstream process.
    pub stdio_limits: crate::gateway::StdioLimits,
    /// Most stdio upstream processes one tenant's keys may run at once.
    pub max_stdio_sessions_per_tenant: usize,
    /// Most stdio upstream processes one key may run at once.
    pub max_stdio_sessions_per_key: usize,
    /// Web origins allowed to call `/mcp/…` from a browser (`*` for any). Requests without an
    /// `Origin` header (every non-browser MCP client) are unaffected.
    pub allowed_origins: Vec<String>,
    /// Largest MCP message accepted by the gateway (bytes).
    pub max_mcp_request_bytes: usize,
    /// How long the gateway waits for an upstream to start answering (seconds).
    pub upstream_timeout_secs: u64,
    /// The URL agents and people reach this server at (for links in errors, e.g.
    /// `https://prometheus.example.com`); by default taken from the request's `Host`.
    pub public_url: Option<String>,
    /// At start, holds older than this many seconds are released as abandoned; 0 (the default, for
    /// a single process) releases every hold placed before the start. Several nodes sharing a
    /// database must set it above the longest call they serve.
    pub stale_hold_secs: u64,
    /// How long a paid call's hold waits for its result (seconds), resumed streams included: a
    /// result delivered later is withheld, the hold released, and the upstream sent
    /// `notifications/cancelled`. Paid tools must answer within it.
    pub paid_result_secs: u64,
    /// How often captured charges are settled to the ledger (seconds).
    pub settle_interval_secs: u64,
    /// A stdio upstream's process ends after this long without a request (seconds).
    pub stdio_idle_secs: u64,
    /// Most stdio upstream processes running at once.
    pub max_stdio_sessions: usize,
    /// When set, `/metrics` answers only `Authorization: Bearer <this>`.
    pub metrics_token: Option<String>,
    /// A request's head must arrive within this many seconds (a half-sent request is cut).
    pub header_read_timeout_secs: u64,
    /// A management API (`/v1`) request is answered within this many seconds, or 503.
    pub request_timeout_secs: u64,
    /// A request's body must arrive within this many seconds of its head.
    pub request_body_timeout_secs: u64,
    /// Most client connections open at once; past it, new ones wait to be accepted.
    pub max_connections: usize,
    /// How long an upstream may send nothing while answering a POST before the call ends as an
    /// upstream failure (a paid call's hold is released). Streams opened by GET are exempt.
    pub upstream_idle_secs: u64,
    /// Where upstreams may be: `https` to public addresses only, unless allowed here (see
    /// `egress.rs` and the README's configuration reference).
    pub egress: crate::egress::EgressConfig,
    /// The OAuth authorization server (docs/OAUTH.md).
    pub oauth: crate::oauth::OAuthConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            environment: Environment::Live,
            key_kdf: KdfParams::default(),
            password_kdf: KdfParams::default(),
            hashing_workers: 0,
            hashing_queue: 64,
            sign_in_hashing_queue: 16,
            key_cache_revalidate_secs: 30,
            key_cache_max_entries: 100_000,
            unknown_key_burst: 20,
            unknown_key_per_sec: 2.0,
            unknown_key_global_burst: 100,
            unknown_key_global_per_sec: 20.0,
            login_burst: 10,
            login_per_sec: 0.5,
            session_ttl_secs: 12 * 3600,
            session_idle_secs: 3600,
            test_funds: false,
            max_rotation_grace_secs: 30 * 24 * 3600,
            usage_flush_ms: 250,
            allowed_origins: Vec::new(),
            max_mcp_request_bytes: 4 * 1024 * 1024,
            upstream_timeout_secs: 60,
            public_url: None,
            settle_interval_secs: 10,
            paid_result_secs: 300,
            stale_hold_secs: 0,
            stdio_idle_secs: 600,
            max_stdio_sessions: 64,
            stdio_commands: Vec::new(),
            stdio_limits: crate::gateway::StdioLimits::default(),
            max_stdio_sessions_per_tenant: 8,
            max_stdio_sessions_per_key: 4,
            metrics_token: None,
            header_read_timeout_secs: 10,
            request_body_timeout_secs: 30,
            request_timeout_secs: 60,
            max_connections: 4096,
            upstream_idle_secs: 120,
            egress: crate::egress::EgressConfig::default(),
            oauth: crate::oauth::OAuthConfig::default(),
        }
    }
}

impl ServerConfig {
    pub fn effective_hashing_workers(&self) -> usize {
        if self.hashing_workers > 0 {
            return self.hashing_workers;
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        cores.saturating_sub(1).max(1)
    }
}
