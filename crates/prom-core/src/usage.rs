//! Usage: one event per JSON-RPC request that went through the gateway. The raw material of
//! `api_key.use` audit rows, usage reports and (with prices) charges.

use crate::id::{KeyId, TenantId};
use crate::service::ServiceSlug;
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageEvent {
    pub at: Timestamp,
    pub tenant_id: TenantId,
    pub key_id: KeyId,
    pub service: ServiceSlug,
    /// The JSON-RPC method, such as `tools/call`.
    pub method: String,
    /// The tool of a `tools/call`.
    pub tool: Option<String>,
    /// `ok`, `tool_error`, `rpc_error`, `upstream_error` or `incomplete`.
    pub outcome: String,
    pub latency_us: i64,
    pub request_bytes: i64,
    pub response_bytes: i64,
}
