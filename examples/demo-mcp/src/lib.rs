//! `demo-mcp`: a small MCP server that stands in for a paid upstream tool service.
//!
//! `prom serve --demo` runs it next to the gateway, and the gateway's tests use it as the upstream
//! they proxy to. It offers three tools whose behaviour is easy to assert on:
//!
//! - `echo` returns its `text` argument unchanged (free in the demo);
//! - `fortune` returns a fortune that always starts with [`FORTUNE_PREFIX`] (paid in the demo —
//!   the price lives in the gateway's catalogue, never here);
//! - `countdown` sends `n` progress notifications before it answers, to exercise streaming.
//!
//! The server speaks Streamable HTTP ([`serve_http`], [`router`]) and stdio ([`serve_stdio`]).

mod countdown;
mod fortune;
mod http;
mod server;
mod stdio;

pub use countdown::{Countdown, CountdownError, DEFAULT_INTERVAL_MS, MAX_INTERVAL_MS, MAX_STEPS};
pub use fortune::{FORTUNE_PREFIX, FORTUNES};
pub use http::{MCP_PATH, router, router_with_sessions, serve_http};
pub use server::{CountdownParams, DemoServer, EchoParams, SERVER_NAME};
pub use stdio::serve_stdio;
