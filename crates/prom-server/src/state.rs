//! The application state, built once at start-up and passed to every handler.

use std::sync::Arc;
use std::time::Duration;

use prom_core::kdf::{KdfError, KdfParams, KeyHasher};
use prom_core::ledger::Ledger;
use prom_core::store::{Store, StoreError};
use prom_core::time::Timestamp;
use prom_core::user::{PasswordHashError, PasswordHasherArgon2};
use secrecy::SecretSlice;

use crate::auth::pool::HashingPool;
use crate::auth::throttle::ClientThrottle;
use crate::auth::verifier::{KeyVerifier, VerifierSettings};
use crate::config::ServerConfig;
use crate::directory::ServiceDirectory;
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::money::Settler;
use crate::money::{Allowances, ChargeBook};
use crate::usage::UsageRecorder;

/// Settings names. Never rename: they hold the deployment's key salt and digest parameters.
const SALT_SETTING: &str = "api_key_digest_salt";
const KDF_SETTING: &str = "api_key_digest_params";
/// The key the dashboard's CSRF tokens are derived with. Never rename: a new key signs everyone's
/// open forms out.
const CSRF_SETTING: &str = "dashboard_csrf_key";

/// Everything a request handler shares, behind one `Arc`: axum clones the state for every
/// request (and extractor), so a clone is one reference count, not one per part.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Debug)]
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub config: Arc<ServerConfig>,
    pub hasher: Arc<KeyHasher>,
    pub verifier: Arc<KeyVerifier>,
    pub passwords: Arc<PasswordHasherArgon2>,
    pub pool: HashingPool,
    pub login_throttle: Arc<ClientThrottle>,
    /// Dynamic client registrations per client address (anyone may register).
    pub oauth_clients_throttle: ClientThrottle,
    /// Client ID metadata documents fetched recently.
    pub oauth_documents: crate::oauth::ClientCache,
    pub usage: UsageRecorder,
    pub services: Arc<ServiceDirectory>,
    pub gateway: Arc<Gateway>,
    /// The tools each service's upstream lists (for the App Store's pages).
    pub catalog: crate::catalog::ToolCatalog,
    pub charges: ChargeBook,
    /// Approvals and the wallets' slices (the money module's writers beside the book).
    pub allowances: Allowances,
    pub ledger: Arc<dyn Ledger>,
    pub settler: Settler,
    /// Derives the dashboard's CSRF tokens.
    pub csrf_key: crate::dashboard::viewer::CsrfKey,
    /// The first start's setup link (empty once any user exists).
    pub setup_link: crate::dashboard::SetupLink,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot read or create the deployment's key settings")]
    Store(#[from] StoreError),
    #[error("the deployment's key digest settings are unusable")]
    Kdf(#[from] KdfError),
    #[error(
        "key_kdf is set to {configured}, but this deployment's keys were hashed with {stored}; \
         changing it would invalidate every key. Remove the setting or set it back to {stored}"
    )]
    KdfChanged { configured: KdfParams, stored: KdfParams },
    #[error("password hashing settings are unusable")]
    Password(#[from] PasswordHashError),
    #[error("cannot set up the gateway")]
    Gateway(#[from] crate::gateway::GatewayError),
}

impl AppState {
    /// Loads (or, on first start, creates) the deployment's key salt and digest parameters, and
    /// starts the background usage writer. Must run inside a tokio runtime.
    pub async fn build(
        store: Arc<dyn Store>,
        ledger: Arc<dyn Ledger>,
        config: ServerConfig,
    ) -> Result<Self, StartupError> {
        let salt = store.init_setting(SALT_SETTING, &fresh_salt()).await?;
        let stored = store.init_setting(KDF_SETTING, config.key_kdf.to_string().as_bytes()).await?;
        let stored: KdfParams = String::from_utf8_lossy(&stored).parse()?;
        if stored != config.key_kdf {
            return Err(StartupError::KdfChanged { configured: config.key_kdf, stored });
        }
        let hasher = Arc::new(KeyHasher::new(stored, SecretSlice::from(salt))?);
        let csrf_key =
            crate::dashboard::viewer::CsrfKey::from_setting(&store.init_setting(CSRF_SETTING, &fresh_salt()).await?);
        let setup_link = match store.has_users().await? {
            true => crate::dashboard::SetupLink::default(),
            false => crate::dashboard::SetupLink::fresh(),
        };
        let passwords = Arc::new(PasswordHasherArgon2::new(config.password_kdf)?);
        let pool =
            HashingPool::new(config.effective_hashing_workers(), config.hashing_queue, config.sign_in_hashing_queue);
        let usage = UsageRecorder::spawn(store.clone(), Duration::from_millis(config.usage_flush_ms));
        let verifier = Arc::new(KeyVerifier::new(
            store.clone(),
            hasher.clone(),
            pool.clone(),
            usage.clone(),
            VerifierSettings {
                environment: config.environment,
                revalidate_after: Duration::from_secs(config.key_cache_revalidate_secs),
                max_entries: config.key_cache_max_entries,
                unknown_key_burst: config.unknown_key_burst,
                unknown_key_per_sec: config.unknown_key_per_sec,
                unknown_key_global_burst: config.unknown_key_global_burst,
                unknown_key_global_per_sec: config.unknown_key_global_per_sec,
            },
        ));
        let login_throttle = Arc::new(ClientThrottle::new(config.login_burst, config.login_per_sec));
        let services = Arc::new(ServiceDirectory::new(store.clone()));
        let metrics = Arc::new(Metrics::new(verifier.clone(), usage.clone()));
        let gateway = Arc::new(Gateway::new(&config, metrics)?);
        let catalog = crate::catalog::ToolCatalog::new(&gateway)?;
        let margins = prom_core::charge::ExpiryMargins::for_settlement(std::time::Duration::from_secs(
            config.settle_interval_secs,
        ));
        let charges = ChargeBook::spawn(store.clone(), margins);
        let allowances = Allowances::new(store.clone(), ledger.clone(), charges.clone());
        let settler = Settler::new(allowances.clone());
        // Holds left by requests that died with a previous process are given back. With one
        // process (the default) that is every hold placed before this start; with several nodes
        // on one database, only holds older than any request can live.
        let stale_before = match config.stale_hold_secs {
            0 => Timestamp::now(),
            secs => Timestamp::now().minus_seconds(secs),
        };
        let released = store.release_stale_holds(stale_before).await?;
        if released > 0 {
            tracing::warn!(released, "released holds of calls that never completed before the restart");
        }
        Ok(Self(Arc::new(Shared {
            store,
            config: Arc::new(config),
            hasher,
            verifier,
            passwords,
            pool,
            login_throttle,
            oauth_clients_throttle: ClientThrottle::new(20, 0.1),
            oauth_documents: crate::oauth::ClientCache::default(),
            usage,
            services: services.clone(),
            gateway,
            catalog,
            charges,
            allowances,
            settler,
            ledger,
            csrf_key,
            setup_link,
        })))
    }
}

fn fresh_salt() -> Vec<u8> {
    use secrecy::ExposeSecret;
    KeyHasher::generate_salt().expose_secret().to_vec()
}
