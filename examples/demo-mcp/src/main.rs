//! The `demo-mcp` binary: serves the demo over Streamable HTTP (`--http ADDR`) or stdio (`--stdio`).

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// A small paid MCP server (echo, fortune, countdown) for the Prometheus demo and tests.
#[derive(Debug, Parser)]
#[command(version)]
#[command(group = clap::ArgGroup::new("transport").required(true).args(["http", "stdio"]))]
struct Args {
    /// Serve Streamable HTTP at http://ADDR/mcp (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Serve one session on stdin/stdout.
    #[arg(long)]
    stdio: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Stdout is the MCP channel in stdio mode, so logs always go to stderr.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();

    match args.http {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
            let bound = listener.local_addr()?;
            // Scripts and tests wait for this exact line to learn the port.
            eprintln!("demo-mcp listening on http://{bound}{}", demo_mcp::MCP_PATH);
            demo_mcp::serve_http(listener, shutdown_signal()).await?;
        }
        None => demo_mcp::serve_stdio().await?,
    }
    Ok(())
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what process supervisors send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
