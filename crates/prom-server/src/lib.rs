//! The Prometheus HTTP server: the management API under `/v1`, the authentication extractor and
//! key verifier, and [`serve`]. The gateway (`/mcp`), OAuth and the dashboard mount beside `/v1`
//! in [`router`], sharing [`AppState`] and the [`auth::Principal`] extractor.

pub mod api;
pub mod auth;
pub mod billing;
pub mod catalog;
pub mod config;
pub mod dashboard;
pub mod directory;
pub mod egress;
pub mod error;
pub mod gateway;
mod listen;
mod logging;
pub mod metrics;
pub mod money;
pub mod oauth;
pub mod origin;
pub mod redact;
pub mod state;
pub mod usage;

use std::future::Future;

use axum::Router;
use axum::routing::{any, get};
use tokio::net::TcpListener;

pub use crate::config::ServerConfig;
pub use crate::state::{AppState, StartupError};

/// The whole application's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { axum::response::Redirect::to("/app") }))
        .route("/healthz", get(api::health::healthz))
        .nest("/app", dashboard::router())
        .route("/metrics", get(metrics::metrics))
        .route("/mcp/{service}", any(gateway::handle))
        .merge(oauth::routes())
        .nest(
            "/v1",
            api::router().layer(axum::middleware::from_fn_with_state(
                std::time::Duration::from_secs(state.config.request_timeout_secs.max(1)),
                listen::request_deadline,
            )),
        )
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            std::time::Duration::from_secs(state.config.request_body_timeout_secs.max(1)),
            listen::body_deadline,
        ))
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
    let housekeeping = oauth::spawn_housekeeping(&state);
    let limits = listen::Limits {
        header_read: std::time::Duration::from_secs(state.config.header_read_timeout_secs.max(1)),
        max_connections: state.config.max_connections,
        drain: std::time::Duration::from_secs(30),
    };
    let result = listen::serve(listener, router(state), limits, shutdown).await;
    gateway.stdio.shutdown();
    usage.flush().await;
    // Leave nothing captured behind that could be settled now (after the periodic round stops:
    // two rounds must never overlap).
    housekeeping.abort();
    settling.abort();
    let _ = settling.await;
    settler.settle_once().await;
    result
}

/// Fills `buf` from the OS CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) {
    prom_core::os_random(buf);
}
