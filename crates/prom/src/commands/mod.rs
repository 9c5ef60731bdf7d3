//! Subcommand implementations. Each returns `anyhow::Result`; [`run`] turns failures into a
//! message on standard error and a non-zero exit code.

mod admin;
mod client;
mod connect;
mod demo;
mod keys;
mod serve;
mod session;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Exit code for a usage or configuration mistake, and for a missing or rejected credential.
pub const EXIT_USAGE: u8 = 2;

pub fn run(cli: Cli) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Worker threads default to one per core; an operator sharing the machine may want fewer.
    if let Some(threads) = std::env::var("PROM_WORKER_THREADS").ok().and_then(|v| v.parse::<usize>().ok())
        && threads > 0
    {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Admin(command) => admin::run(command).await,
            Command::Login(args) => session::login(args).await,
            Command::Logout => session::logout().await,
            Command::Keys(command) => keys::run(command).await,
            Command::Audit(args) => keys::audit(args).await,
            Command::Whoami(args) => session::whoami(args).await,
            Command::Connect(args) => connect::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(api) = err.downcast_ref::<client::ApiFailure>() {
                eprintln!("error: {api}");
                return ExitCode::from(api.exit_code());
            }
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
pub async fn terminate_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
