//! The shared store suite: every test runs once on SQLite (a temp file) and once on PostgreSQL (a
//! fresh schema in the database named by `PROM_TEST_DATABASE_URL`), so the two backends can't drift.
//!
//! A test is an `async fn name(store: SqlStore)` in one of the modules below; `store_tests!` turns
//! it into `<module>::sqlite::<name>` and `<module>::postgres::<name>`. Without
//! `PROM_TEST_DATABASE_URL` the PostgreSQL variants say so loudly on stderr and pass, except when
//! `CI` is set: there they fail, so a misconfigured pipeline can never skip PostgreSQL silently.

// A test fails by panicking; clippy's `allow-*-in-tests` only covers `#[test]` functions, not the
// shared test bodies and fixtures of an integration test binary.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

/// Generates a SQLite and a PostgreSQL test for each `async fn name(store: SqlStore)` listed.
macro_rules! store_tests {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::support::on_sqlite(super::$name).await;
                }
            )+
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::support::on_postgres(super::$name).await;
                }
            )+
        }
    };
}

#[path = "store/support.rs"]
mod support;

#[path = "store/audit.rs"]
mod audit;
#[path = "store/charges.rs"]
mod charges;
#[path = "store/checkpoint.rs"]
mod checkpoint;
#[path = "store/concurrency.rs"]
mod concurrency;
#[path = "store/history.rs"]
mod history;
#[path = "store/isolation.rs"]
mod isolation;
#[path = "store/keys.rs"]
mod keys;
#[path = "store/ledger.rs"]
mod ledger;
#[path = "store/members.rs"]
mod members;
#[path = "store/oauth.rs"]
mod oauth;
#[path = "store/oauth_tokens.rs"]
mod oauth_tokens;
#[path = "store/password_links.rs"]
mod password_links;
#[path = "store/rotation.rs"]
mod rotation;
#[path = "store/scale.rs"]
mod scale;
#[path = "store/services.rs"]
mod services;
#[path = "store/sessions.rs"]
mod sessions;
#[path = "store/settings.rs"]
mod settings;
#[path = "store/touch.rs"]
mod touch;
#[path = "store/usage.rs"]
mod usage;
#[path = "store/users.rs"]
mod users;
#[path = "store/wallet.rs"]
mod wallet;
