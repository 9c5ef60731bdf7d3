//! The only part of an MCP message the gateway reads: the JSON-RPC envelope (`method`, `id`,
//! `params.name`/`params.uri`, `params._meta.progressToken`). Everything else passes untouched.

use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::ids::{PAID_ID_PREFIX, RpcId, is_paid_id};

/// Header mirroring the JSON-RPC method (MCP 2026-07-28, SEP-2243).
pub const MCP_METHOD: &str = "mcp-method";
/// Header mirroring the target name (`params.name`, or `params.uri` for resources).
pub const MCP_NAME: &str = "mcp-name";

#[derive(Debug, Deserialize)]
struct RawEnvelope {
    /// `Some(Value::Null)` for `"id": null`, which is not the same as no id at all.
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<RawParams>,
    #[serde(default)]
    result: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

/// Reads a member that is present, `null` included (serde reads a present `null` as `None`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize)]
struct RawParams {
    #[serde(default)]
    name: Option<Value>,
    #[serde(default)]
    uri: Option<Value>,
}

/// What a client sent in one POST.
#[derive(Clone, Debug, PartialEq)]
pub enum Envelope {
    /// A request: the gateway waits for the response with the same id.
    Request { id: Value, method: String, target: Option<String> },
    /// A notification (no id): upstream answers 202.
    Notification { method: String },
    /// The client's answer to a server-to-client request (sampling, elicitation, roots).
    Response { id: Value },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the body is not a JSON-RPC message: {0}")]
    NotJson(String),
    #[error("JSON-RPC batches are not part of MCP (removed in 2025-06-18); send one message per request")]
    Batch,
    #[error("the message has neither a method nor a result or error")]
    Shapeless,
    #[error("a request's id must be a string or a number (MCP does not allow null ids)")]
    BadId,
    #[error("ids that start with {PAID_ID_PREFIX:?} are reserved for the gateway; use another id")]
    ReservedId,
}

impl Envelope {
    pub fn parse(body: &[u8]) -> Result<Self, EnvelopeError> {
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(EnvelopeError::Batch);
        }
        let raw: RawEnvelope = serde_json::from_slice(body).map_err(|err| EnvelopeError::NotJson(err.to_string()))?;
        match (raw.method, raw.id) {
            (Some(_), Some(id)) if RpcId::of(&id).is_none() => Err(EnvelopeError::BadId),
            (Some(_), Some(id)) if is_paid_id(&id) => Err(EnvelopeError::ReservedId),
            (Some(method), Some(id)) => {
                let target = raw.params.and_then(|p| p.name.or(p.uri)).and_then(|v| v.as_str().map(str::to_owned));
                Ok(Self::Request { id, method, target })
            }
            (Some(method), None) => Ok(Self::Notification { method }),
            (None, Some(id)) if raw.result.is_some() || raw.error.is_some() => Ok(Self::Response { id }),
            _ => Err(EnvelopeError::Shapeless),
        }
    }

    pub fn method(&self) -> Option<&str> {
        match self {
            Self::Request { method, .. } | Self::Notification { method } => Some(method),
            Self::Response { .. } => None,
        }
    }

    /// The tool of a `tools/call`.
    pub fn tool(&self) -> Option<&str> {
        match self {
            Self::Request { method, target, .. } if method == "tools/call" => target.as_deref(),
            _ => None,
        }
    }

    pub fn request_id(&self) -> Option<&Value> {
        match self {
            Self::Request { id, .. } => Some(id),
            _ => None,
        }
    }

    /// Checks `Mcp-Method`/`Mcp-Name` against the body. Intermediaries (rate limiters, this
    /// gateway's own metering) may act on the headers while the upstream executes the body, so a
    /// disagreement is refused rather than forwarded. `modern` (protocol 2026-07-28 or later)
    /// makes the headers mandatory as the specification does.
    pub fn check_headers(&self, headers: &HeaderMap, modern: bool) -> Result<(), String> {
        let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
        let Some(method) = self.method() else { return Ok(()) };
        match header(MCP_METHOD) {
            Some(value) if value != method => {
                return Err(format!("the Mcp-Method header ({value:?}) does not match the body's method ({method:?})"));
            }
            None if modern => return Err("the Mcp-Method header is required at protocol 2026-07-28".into()),
            _ => {}
        }
        let target = match self {
            Self::Request { target, method, .. }
                if matches!(method.as_str(), "tools/call" | "resources/read" | "prompts/get") =>
            {
                target.as_deref()
            }
            _ => None,
        };
        match (header(MCP_NAME), target) {
            (Some(value), Some(target)) if value != target => {
                Err(format!("the Mcp-Name header ({value:?}) does not match the body's target ({target:?})"))
            }
            (None, Some(_)) if modern => Err(format!("the Mcp-Name header is required for {method}")),
            _ => Ok(()),
        }
    }
}

/// How a JSON-RPC request ended, as seen in the upstream's response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A result (for `tools/call`, without `isError`).
    Ok,
    /// A `tools/call` result with `isError: true`.
    ToolError,
    /// A JSON-RPC error response.
    RpcError,
    /// The upstream answered with an HTTP error, failed, or timed out.
    UpstreamError,
    /// The response never came (the stream ended or the client went away first).
    Incomplete,
    /// A paid call the allowance could not cover: refused before reaching the upstream.
    AllowanceExceeded,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ToolError => "tool_error",
            Self::RpcError => "rpc_error",
            Self::UpstreamError => "upstream_error",
            Self::Incomplete => "incomplete",
            Self::AllowanceExceeded => "allowance_exceeded",
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawMessage {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    result: Option<RawResult>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct RawResult {
    #[serde(default, rename = "isError")]
    is_error: Option<bool>,
}

/// One message of an upstream's answer, as far as the gateway reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A response (anything with a `result` or an `error`, as MCP SDKs read it), and how its
    /// request ended.
    Response { id: Option<Value>, outcome: Outcome },
    /// A request or notification from the server.
    Other,
    /// Not a JSON-RPC message the gateway can read (not JSON, a batch, duplicate members, a
    /// malformed `result`): it cannot be matched to a call, so paid streams never pass it.
    Unreadable,
}

impl Message {
    pub fn read(message: &[u8]) -> Self {
        // serde reads a struct from an array too; a JSON-RPC message is an object.
        if !super::ids::is_object(message) {
            return Self::Unreadable;
        }
        let Ok(raw) = serde_json::from_slice::<RawMessage>(message) else { return Self::Unreadable };
        let outcome = match (raw.result, raw.error) {
            (Some(result), _) if result.is_error == Some(true) => Outcome::ToolError,
            (Some(_), _) => Outcome::Ok,
            (None, Some(_)) => Outcome::RpcError,
            (None, None) if raw.method.is_some() => return Self::Other,
            (None, None) => return Self::Unreadable,
        };
        Self::Response { id: raw.id, outcome }
    }
}

/// If `message` is the response to request `id` (compared as JSON-RPC peers compare ids), how it
/// ended.
#[cfg(test)]
fn response_outcome(message: &[u8], id: &Value) -> Option<Outcome> {
    use super::ids::same_id;
    match Message::read(message) {
        Message::Response { id: Some(answered), outcome } if same_id(&answered, id) => Some(outcome),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    proptest::proptest! {
        /// Untrusted bodies never panic the envelope parser or the response reader.
        #[test]
        fn any_body_parses_or_is_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = Envelope::parse(&bytes);
            let _ = Message::read(&bytes);
        }

        /// A well-formed request parses to its method, id and tool.
        #[test]
        fn requests_parse_exactly(id in proptest::num::i64::ANY, method in "[a-z/]{1,30}", tool in "[a-zA-Z0-9_]{1,30}") {
            let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {"name": tool}});
            let envelope = Envelope::parse(&serde_json::to_vec(&body).unwrap()).unwrap();
            proptest::prop_assert_eq!(envelope.method(), Some(method.as_str()));
            proptest::prop_assert_eq!(envelope.request_id(), Some(&serde_json::json!(id)));
        }
    }

    #[test]
    fn classifies_messages() {
        let call = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fortune","arguments":{}}}"#;
        let env = Envelope::parse(call).unwrap();
        assert_eq!(env.tool(), Some("fortune"));
        assert_eq!(env.request_id(), Some(&json!(7)));
        assert_eq!(
            Envelope::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap(),
            Envelope::Notification { method: "notifications/initialized".into() }
        );
        assert_eq!(
            Envelope::parse(br#"{"jsonrpc":"2.0","id":"s1","result":{}}"#).unwrap(),
            Envelope::Response { id: json!("s1") }
        );
        assert_eq!(Envelope::parse(b"[{}]"), Err(EnvelopeError::Batch));
        assert!(matches!(Envelope::parse(b"nope"), Err(EnvelopeError::NotJson(_))));
        assert_eq!(Envelope::parse(br#"{"jsonrpc":"2.0","id":1}"#), Err(EnvelopeError::Shapeless));
    }

    #[test]
    fn checks_mirrored_headers() {
        let env =
            Envelope::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#).unwrap();
        let mut headers = HeaderMap::new();
        assert!(env.check_headers(&headers, false).is_ok());
        assert!(env.check_headers(&headers, true).is_err());
        headers.insert(MCP_METHOD, HeaderValue::from_static("tools/call"));
        headers.insert(MCP_NAME, HeaderValue::from_static("echo"));
        assert!(env.check_headers(&headers, true).is_ok());
        headers.insert(MCP_NAME, HeaderValue::from_static("fortune"));
        assert!(env.check_headers(&headers, false).unwrap_err().contains("Mcp-Name"));
        headers.insert(MCP_METHOD, HeaderValue::from_static("tools/list"));
        assert!(env.check_headers(&headers, false).unwrap_err().contains("Mcp-Method"));
    }

    #[test]
    fn reads_outcomes() {
        let id = json!(3);
        assert_eq!(response_outcome(br#"{"jsonrpc":"2.0","id":3,"result":{"content":[]}}"#, &id), Some(Outcome::Ok));
        assert_eq!(
            response_outcome(br#"{"jsonrpc":"2.0","id":3,"result":{"isError":true}}"#, &id),
            Some(Outcome::ToolError)
        );
        assert_eq!(
            response_outcome(br#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"x"}}"#, &id),
            Some(Outcome::RpcError)
        );
        assert_eq!(response_outcome(br#"{"jsonrpc":"2.0","id":4,"result":{}}"#, &id), None);
        assert_eq!(response_outcome(br#"{"jsonrpc":"2.0","method":"notifications/progress"}"#, &id), None);
        assert_eq!(response_outcome(br#"{"jsonrpc":"2.0","id":3.0,"result":{}}"#, &id), Some(Outcome::Ok));
        assert_eq!(response_outcome(br#"{"jsonrpc":"2.0","id":"3","result":{}}"#, &id), None);
    }

    #[test]
    fn reads_answers_strictly() {
        assert_eq!(Message::read(br#"{"jsonrpc":"2.0","method":"notifications/progress"}"#), Message::Other);
        assert_eq!(Message::read(br#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage"}"#), Message::Other);
        assert_eq!(
            Message::read(br#"{"jsonrpc":"2.0","id":1,"method":"x","result":{}}"#),
            Message::Response { id: Some(json!(1)), outcome: Outcome::Ok },
            "a result makes it a response, as SDKs read it"
        );
        for unreadable in [
            &b"not json"[..],
            br#"[{"jsonrpc":"2.0","id":1,"result":{}}]"#,
            br#"{"jsonrpc":"2.0","id":2,"id":1,"result":{}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"isError":"yes"}}"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#"[5, null, {"isError": false}]"#,
        ] {
            assert_eq!(Message::read(unreadable), Message::Unreadable, "{}", String::from_utf8_lossy(unreadable));
        }
    }

    #[test]
    fn refuses_ids_no_call_can_be_matched_by() {
        for body in [
            &br#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"fortune"}}"#[..],
            br#"{"jsonrpc":"2.0","id":true,"method":"tools/call"}"#,
            br#"{"jsonrpc":"2.0","id":{"a":1},"method":"tools/call"}"#,
            br#"{"jsonrpc":"2.0","id":[1],"method":"tools/call"}"#,
        ] {
            assert_eq!(Envelope::parse(body), Err(EnvelopeError::BadId), "{}", String::from_utf8_lossy(body));
        }
        let reserved = br#"{"jsonrpc":"2.0","id":"prom-call-0123","method":"tools/call"}"#;
        assert_eq!(Envelope::parse(reserved), Err(EnvelopeError::ReservedId));
        let float = Envelope::parse(br#"{"jsonrpc":"2.0","id":1.0,"method":"tools/call"}"#).unwrap();
        assert!(matches!(float, Envelope::Request { .. }));
    }
}
