//! Serving the demo over Streamable HTTP at [`MCP_PATH`], with rmcp's stateful sessions and SSE.

use std::{future::Future, io, sync::Arc};

use axum::Router;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::DemoServer;

/// Where the MCP endpoint is mounted.
pub const MCP_PATH: &str = "/mcp";

/// The demo's router, for a caller that wants to wrap it in its own layers before serving it.
///
/// Its sessions are never ended from the server side, so an `axum::serve` graceful shutdown may
/// wait for a client's open SSE stream; use [`router_with_sessions`] to be able to end them.
/// Only loopback `Host` headers are accepted (rmcp's DNS-rebinding guard).
pub fn router() -> Router {
    router_with_sessions(CancellationToken::new())
}

/// Like [`router`], but cancelling `sessions` ends every open MCP session and its SSE stream,
/// which lets a graceful shutdown finish.
pub fn router_with_sessions(sessions: CancellationToken) -> Router {
    mcp_router(sessions, HostCheck::LoopbackOnly)
}

/// Serves the demo on `listener` until `shutdown` resolves, then ends open sessions and waits for
/// in-flight requests.
///
/// On a loopback listener only loopback `Host` headers are accepted, which stops DNS-rebinding
/// attacks on a developer's machine. A listener bound elsewhere was opened to be reached by other
/// names (a container's service name, say), so the `Host` check is off there.
pub async fn serve_http(listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
    let host_check =
        if listener.local_addr()?.ip().is_loopback() { HostCheck::LoopbackOnly } else { HostCheck::AnyHost };
    let sessions = CancellationToken::new();
    let router = mcp_router(sessions.clone(), host_check);
    // Responses are SSE streams of small writes: without TCP_NODELAY every one waits ~40 ms on
    // Nagle's algorithm and the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Open SSE streams would otherwise hold the graceful shutdown open forever.
            sessions.cancel();
        })
        .await
}

#[derive(Debug, Clone, Copy)]
enum HostCheck {
    LoopbackOnly,
    AnyHost,
}

fn mcp_router(sessions: CancellationToken, host_check: HostCheck) -> Router {
    let config = StreamableHttpServerConfig::default().with_cancellation_token(sessions);
    let config = match host_check {
        // rmcp's default allow-list is exactly the loopback names.
        HostCheck::LoopbackOnly => config,
        HostCheck::AnyHost => config.disable_allowed_hosts(),
    };
    let service =
        StreamableHttpService::new(|| Ok(DemoServer::new()), Arc::new(LocalSessionManager::default()), config);
    Router::new().nest_service(MCP_PATH, service)
}
