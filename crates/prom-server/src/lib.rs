//! The Prometheus HTTP server: the management API under `/v1`, the authentication extractor and
//! key verifier, and [`serve`]. The gateway (`/mcp`), OAuth and the dashboard mount beside `/v1`
//! in [`router`], sharing [`AppState`] and the [`auth::Principal`] extractor.

pub mod api;
pub mod auth;
pub mod billing;
pub mod config;
pub mod directory;
pub mod egress;
pub mod error;
pub mod gateway;
mod logging;
pub mod metrics;
pub mod money;
pub mod redact;
pub mod state;
pub mod usage;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::{any, get};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

pub use crate::config::ServerConfig;
pub use crate::state::{AppState, StartupError};

/// The whole application's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(api::health::healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/mcp/{service}", any(gateway::handle))
        .nest("/v1", api::router())
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn(logging::log_request))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then drains in-flight requests and flushes pending usage.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let usage = state.usage.clone();
    let gateway = state.gateway.clone();
    let settler = state.settler.clone();
    let settling = settler.spawn(std::time::Duration::from_secs(state.config.settle_interval_secs));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    // SSE relays many small writes; without TCP_NODELAY, Nagle's algorithm and delayed ACKs add
    // ~40 ms stalls to every streamed response.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(error = %err, "cannot set TCP_NODELAY");
        }
    });
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    gateway.stdio.shutdown();
    usage.flush().await;
    // Leave nothing captured behind that could be settled now (after the periodic round stops:
    // two rounds must never overlap).
    settling.abort();
    let _ = settling.await;
    settler.settle_once().await;
    result
}

/// Fills `buf` from the OS CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) {
    prom_core::os_random(buf);
}
