//! Serving the demo over stdin/stdout, the way desktop MCP clients launch local servers.

use rmcp::ServiceExt;

use crate::DemoServer;

/// Serves one MCP session on stdin/stdout until the client closes stdin.
///
/// Stdout carries the protocol, so nothing else may write to it while this runs; log to stderr.
pub async fn serve_stdio() -> anyhow::Result<()> {
    let service = DemoServer::new().serve(rmcp::transport::stdio_pipes()).await?;
    service.waiting().await?;
    Ok(())
}
