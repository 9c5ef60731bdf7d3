//! The `prom-core` store traits on SQLite (the embedded default) and PostgreSQL, with sqlx.
//!
//! One [`SqlStore`] type serves both databases. Each query is written once, in SQL that both
//! dialects accept (`$1` placeholders, `ON CONFLICT`, `RETURNING`, integer timestamps), and the
//! [`with_read!`]/[`with_write!`] macros expand it for each backend's pool. Schema differences live
//! only in `migrations/sqlite` and `migrations/postgres`; the shared test suite in `tests/` runs every
//! query against both.
//!
//! On SQLite, writes go through a pool of one connection: SQLite allows one writer at a time, and
//! queueing writers in the pool (instead of in SQLite's busy handler) means a write transaction
//! never fails with `SQLITE_BUSY`, while readers proceed in parallel under WAL.

mod audit;
mod budgets;
mod charges;
mod history;
mod journal;
mod keys;
mod ledger;
mod limits;
mod members;
mod oauth;
mod password_links;
mod rows;
mod services;
mod sessions;
mod settings;
mod settlement;
mod setup;
mod usage;
mod users;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use prom_core::store::{StoreError, StoreResult};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use thiserror::Error;

pub use ledger::{EmbeddedLedger, EmbeddedLedgerConfig};

/// Where the data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// An embedded SQLite file (created if missing).
    Sqlite { path: PathBuf },
    /// A PostgreSQL server; `schema`, when set, is created if missing and used as the search path
    /// (tests use one fresh schema each).
    Postgres { url: String, schema: Option<String> },
}

impl Database {
    /// The embedded database inside a data directory.
    pub fn in_data_dir(dir: &Path) -> Self {
        Self::Sqlite { path: dir.join("prometheus.sqlite3") }
    }

    /// Reads a `postgres://…` / `postgresql://…` or `sqlite://PATH` URL.
    pub fn from_url(url: &str) -> Result<Self, OpenError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres { url: url.to_owned(), schema: None })
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            Ok(Self::Sqlite { path: PathBuf::from(path) })
        } else {
            Err(OpenError::UnsupportedUrl)
        }
    }

    /// A description safe to log (no password).
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite { path } => format!("sqlite {}", path.display()),
            Self::Postgres { url, schema } => {
                let host = url.rsplit_once('@').map_or(url.as_str(), |(_, host)| host);
                let host = host.trim_start_matches("postgres://").trim_start_matches("postgresql://");
                match schema {
                    Some(schema) => format!("postgresql {host} (schema {schema})"),
                    None => format!("postgresql {host}"),
                }
            }
        }
    }
}

#[derive(Debug, Error)]
pub enum OpenError {
    #[error("unsupported database URL: use postgres://USER@HOST/DB or sqlite://PATH")]
    UnsupportedUrl,
    #[error("invalid schema name {0:?}: use letters, digits and underscores")]
    BadSchema(String),
    #[error("cannot create the data directory {path}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot connect to the database ({target})")]
    Connect { target: String, source: sqlx::Error },
    #[error("cannot migrate the database schema ({target})")]
    Migrate { target: String, source: sqlx::migrate::MigrateError },
    #[error("cannot fold the charges journaled by the previous run into the database; it needs repair")]
    Repair(#[source] StoreError),
}

#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Sqlite { read: SqlitePool, write: SqlitePool, housekeeper: Arc<Housekeeper>, journal: Arc<journal::Journal> },
    Postgres(PgPool),
}

/// The store on either database.
#[derive(Clone, Debug)]
pub struct SqlStore {
    pub(crate) backend: Backend,
}

/// How often the embedded database's charge journal is folded. Paid calls do not wait for a fold
/// (their charges are journaled), but reads of budgets do, and a fold holds the one write
/// connection, so it runs often and short.
const FOLD_EVERY: Duration = Duration::from_millis(50);
/// How often the write-ahead log is copied into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL pages after which a commit checkpoints by itself: a fallback, should the background
/// checkpoints fall behind (SQLite's default is 1000 pages).
const WAL_AUTOCHECKPOINT_PAGES: &str = "16384";

/// The embedded database's background work: every 50 ms it folds the charge journal into the
/// charges and budgets (hundreds of paid calls in one transaction, see `journal.rs`), and every 250 ms it copies the write-ahead log into the database file on a
/// connection of its own. A passive checkpoint never waits for the writer, so commits no longer pay for checkpoints
/// (and their fsyncs) themselves, which were the slowest commits of paid calls. Stopped by
/// `close`, or when the last clone of the store goes.
#[derive(Debug)]
pub(crate) struct Housekeeper {
    task: tokio::task::JoinHandle<()>,
    checkpoints: SqlitePool,
}

impl Housekeeper {
    fn spawn(journal: Arc<journal::Journal>, write: SqlitePool, checkpoints: SqlitePool) -> Self {
        let connection = checkpoints.clone();
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(FOLD_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut checkpointed = tokio::time::Instant::now();
            loop {
                every.tick().await;
                if let Err(err) = journal.fold(&write).await {
                    tracing::error!(error = %err, "the charge journal could not be folded into the charges; retrying");
                }
                if checkpointed.elapsed() < CHECKPOINT_EVERY {
                    continue;
                }
                checkpointed = tokio::time::Instant::now();
                if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&connection).await {
                    tracing::warn!(error = %err, "checkpoint of the embedded database failed; commits will checkpoint");
                }
            }
        });
        Self { task, checkpoints }
    }
}

impl Drop for Housekeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `$body` with `$pool` bound to a pool fit for reading.
macro_rules! with_read {
    ($self:expr, $pool:ident => $body:expr) => {
        match &$self.backend {
            $crate::Backend::Sqlite { read: $pool, .. } => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with `$pool` bound to a pool fit for writing.
macro_rules! with_write {
    ($self:expr, $pool:ident => $body:expr) => {
        match &$self.backend {
            $crate::Backend::Sqlite { write: $pool, .. } => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use {with_read, with_write};

impl SqlStore {
    /// Opens (creating if needed) and migrates the database.
    pub async fn open(database: &Database) -> Result<Self, OpenError> {
        let target = database.describe();
        let connect = |source| OpenError::Connect { target: target.clone(), source };
        let store = match database {
            Database::Sqlite { path } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|source| OpenError::DataDir { path: dir.to_owned(), source })?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
                    .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES);
                // A connection to a local file cannot go stale the way a network one can, so the
                // pools skip sqlx's ping before each use: one round trip to the connection's worker
                // thread less per transaction (measurable on paid calls, see docs/BENCHMARKS.md).
                let one_connection = |options| {
                    SqlitePoolOptions::new().max_connections(1).test_before_acquire(false).connect_with(options)
                };
                let write = one_connection(options.clone()).await.map_err(connect)?;
                sqlx::migrate!("./migrations/sqlite")
                    .run(&write)
                    .await
                    .map_err(|source| OpenError::Migrate { target: target.clone(), source })?;
                let checkpoints = one_connection(options.clone()).await.map_err(connect)?;
                let read = SqlitePoolOptions::new()
                    .max_connections(8)
                    .test_before_acquire(false)
                    .connect_with(options.read_only(true))
                    .await
                    .map_err(connect)?;
                // Charges a process that stopped (or was killed) left unfolded: in the charge log of
                // an earlier version, and in the journal (when no running process owns it).
                charges::fold_charge_log(&read, &write).await.map_err(OpenError::Repair)?;
                let journal = Arc::new(journal::Journal::new(path));
                journal.recover(&write).await.map_err(OpenError::Repair)?;
                let housekeeper = Arc::new(Housekeeper::spawn(journal.clone(), write.clone(), checkpoints));
                Self { backend: Backend::Sqlite { read, write, housekeeper, journal } }
            }
            Database::Postgres { url, schema } => {
                let mut options = PgConnectOptions::from_str(url).map_err(connect)?;
                if let Some(schema) = schema {
                    if !schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        return Err(OpenError::BadSchema(schema.clone()));
                    }
                    let admin =
                        PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await.map_err(connect)?;
                    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                        .execute(&admin)
                        .await
                        .map_err(connect)?;
                    admin.close().await;
                    options = options.options([("search_path", schema.as_str())]);
                }
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .map_err(connect)?;
                sqlx::migrate!("./migrations/postgres")
                    .run(&pool)
                    .await
                    .map_err(|source| OpenError::Migrate { target: target.clone(), source })?;
                Self { backend: Backend::Postgres(pool) }
            }
        };
        Ok(store)
    }

    /// Folds the embedded database's charge journal into the charges and budgets (nothing to do on
    /// PostgreSQL, whose charges are written in place). Everything that reads budgets or charges
    /// to act on them does this first.
    pub(crate) async fn fold_journal(&self) -> StoreResult<usize> {
        match &self.backend {
            Backend::Sqlite { write, journal, .. } => journal.fold(write).await,
            Backend::Postgres(_) => Ok(0),
        }
    }

    /// Rotates the embedded database's charge journal once it holds `bytes` (tests; the default
    /// is 8 MiB). Nothing on PostgreSQL.
    #[doc(hidden)]
    pub fn rotate_journal_at(&self, bytes: u64) {
        if let Backend::Sqlite { journal, .. } = &self.backend {
            journal.rotate_at(bytes);
        }
    }

    /// Which database this is, for logs.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgresql",
        }
    }

    /// Closes every connection (checkpointing SQLite's WAL into the main file).
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { read, write, housekeeper, journal } => {
                housekeeper.task.abort();
                if let Err(err) = journal.fold(write).await {
                    tracing::error!(error = %err, "the charge journal could not be folded; the next start folds it");
                }
                journal.release();
                housekeeper.checkpoints.close().await;
                read.close().await;
                write.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}

/// Maps a database error into the store's error, keeping the cause.
pub(crate) fn db_err(err: sqlx::Error) -> StoreError {
    if let Some(db) = err.as_database_error()
        && db.is_unique_violation()
    {
        return StoreError::Conflict(db.message().to_owned());
    }
    StoreError::Backend(Box::new(err))
}
