//! `prom serve`: open the database, build the state, listen, and shut down gracefully.

use std::sync::Arc;

use anyhow::Context;
use prom_server::AppState;
use prom_store::SqlStore;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::cli::ServeArgs;
use crate::config::Config;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.storage, |mut figment| {
        if let Some(listen) = args.listen {
            figment = figment.merge(("listen", listen));
        }
        if let Some(environment) = &args.environment {
            figment = figment.merge(("environment", environment));
        }
        figment
    })?;
    init_logging(&config.log_format);

    let database = config.database()?;
    // The embedded database has one server: it keeps budgets' holds in memory.
    let _only_server = match &database {
        prom_store::Database::Sqlite { path } => Some(lock_exclusively(path)?),
        prom_store::Database::Postgres { .. } => None,
    };
    let store = SqlStore::open(&database).await.with_context(|| format!("cannot open {}", database.describe()))?;
    // The demo's upstream runs on loopback, which the egress policy refuses: allow exactly it.
    let mut server_config = config.server.clone();
    let demo_upstream = match args.demo {
        true => {
            let listener = super::demo::bind().await?;
            let address = listener.local_addr()?;
            server_config.egress.allow_hosts.push(address.to_string());
            // The demo's wallet can be topped up from the dashboard (embedded ledger only).
            server_config.test_funds = true;
            eprintln!("  --demo: the demo's own upstream http://{address} is allowed past the egress policy");
            Some(listener)
        }
        false => None,
    };
    let state = AppState::build(Arc::new(store.clone()), super::admin::embedded_ledger(&store), server_config).await?;
    let listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!("cannot listen on {}: is another server using it? pick another with --listen", config.listen)
    })?;
    let address = listener.local_addr()?;
    tracing::info!(
        %address,
        database = %database.describe(),
        environment = %config.server.environment,
        hashing_workers = state.pool.workers(),
        "Prometheus is serving"
    );
    eprintln!(
        "Prometheus is serving on http://{address} ({}, {} keys)",
        database.describe(),
        config.server.environment
    );
    // Links people open: the public URL when one is configured, else where we listen.
    let base = match &config.server.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("http://{address}"),
    };
    match state.setup_link.token() {
        Some(token) if !args.demo => {
            eprintln!("  first start: create the first owner in your browser (this link works once):");
            eprintln!("    {base}/app/setup?token={token}");
        }
        _ => eprintln!("  dashboard: {base}/app"),
    }
    eprintln!("  or from the shell: prom admin create-user --email you@example.com --tenant acme --role owner");

    let demo = match demo_upstream {
        Some(listener) => Some(super::demo::start(&state, listener, address).await?),
        None => None,
    };
    prom_server::serve(listener, state, shutdown_signal()).await?;
    drop(demo);
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Takes an exclusive lock beside the embedded database for as long as the server runs (the OS
/// drops it when the process dies, even by SIGKILL), so a second server cannot open the same data.
fn lock_exclusively(database: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = database.with_extension("lock");
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `prom serve` is already using {}: stop it first, or give this one its own --data-dir",
            database.display()
        ),
        Err(std::fs::TryLockError::Error(err)) => Err(err).with_context(|| format!("cannot lock {}", path.display())),
    }
}

fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_env("PROM_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    super::terminate_signal().await;
    tracing::info!("shutting down: finishing requests in flight");
}
