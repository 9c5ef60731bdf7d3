//! The JSON-RPC errors the gateway itself answers with, and their codes, in one place.

use serde_json::{Value, json};

use crate::money::ChargeError;

/// The body is not JSON (JSON-RPC "parse error").
pub const PARSE_ERROR: i64 = -32700;
/// Not a request the gateway can pass on (JSON-RPC "invalid request"): a batch, a null id, a
/// reserved id, an id still pending in the session.
pub const INVALID_REQUEST: i64 = -32600;
/// The gateway could not complete the call (JSON-RPC "internal error").
pub const INTERNAL_ERROR: i64 = -32603;
/// A header that disagrees with the body (MCP 2026-07-28).
pub const HEADER_MISMATCH: i64 = -32020;
/// A paid call the allowance cannot cover.
pub const ALLOWANCE_EXCEEDED: i64 = -32402;

/// A JSON-RPC error message.
pub fn error(id: Option<&Value>, code: i64, message: impl Into<String>) -> Value {
    json!({ "jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": { "code": code, "message": message.into() } })
}

/// What the agent is told, under its own id, when a paid call's result is withheld because its
/// charge could not be captured (nothing was charged).
pub fn charge_failure(id: &Value, err: &ChargeError) -> Value {
    match err {
        ChargeError::Expired => json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {
                "code": ALLOWANCE_EXCEEDED,
                "message": "ALLOWANCE_EXCEEDED: your allowance expires too soon for this call to be settled, so its \
                            result was withheld and nothing was charged; approve it again with a later expires_at",
                "data": { "code": "ALLOWANCE_EXCEEDED", "expiring": true }
            }
        }),
        ChargeError::NotHeld => error(
            Some(id),
            INTERNAL_ERROR,
            "this paid call's hold had ended (its time ran out, or another gateway node released it), so its \
             result was withheld; nothing was charged, call it again",
        ),
        ChargeError::Unavailable | ChargeError::Store(_) => error(
            Some(id),
            INTERNAL_ERROR,
            "this paid call could not be charged, so its result was withheld; nothing was charged, retry shortly",
        ),
    }
}
