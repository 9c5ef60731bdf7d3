//! Reading `tools/list` from an MCP Streamable HTTP upstream, as a well-behaved client: an
//! `initialize` (keeping the `Mcp-Session-Id` the server gives, and sending the negotiated
//! `MCP-Protocol-Version` after it), `notifications/initialized`, `tools/list` page by page
//! following `nextCursor`, then `DELETE` of the session. Answers may be JSON or an event stream;
//! on a stream, the server's own requests and notifications are passed over until the answer.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, Url};
use serde_json::{Value, json};

use super::{CatalogError, Listing, READ_DEADLINE, Tool};
use crate::egress::Refusal;

/// The protocol version this client asks for.
const PROTOCOL_VERSION: &str = "2025-11-25";
/// Largest answer read (per request).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most `tools/list` pages read.
const MAX_PAGES: usize = 20;
/// Most tools kept.
const MAX_TOOLS: usize = 1000;
/// Longest name, title and description kept (characters).
const MAX_NAME_CHARS: usize = 128;
const MAX_TITLE_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 2000;
/// How long the closing `DELETE` may take (it is a courtesy, after the deadline if need be).
const END_DEADLINE: Duration = Duration::from_secs(2);

const SESSION_HEADER: &str = "mcp-session-id";
const PROTOCOL_HEADER: &str = "mcp-protocol-version";
/// The method header of MCP 2026-07-28, which stateless servers route by; others ignore it.
const METHOD_HEADER: &str = "mcp-method";

/// Reads the tools at `url` within [`READ_DEADLINE`], then ends the session the upstream opened.
pub async fn list_tools(http: &reqwest::Client, url: Url, service: &str) -> Result<Listing, CatalogError> {
    let mut conversation = Conversation { http, url, service, session: None, protocol: None, next_id: 0 };
    let listing = match tokio::time::timeout(READ_DEADLINE, conversation.list()).await {
        Ok(listing) => listing,
        Err(_) => Err(CatalogError::Timeout),
    };
    conversation.end().await;
    listing
}

/// One client session with an upstream.
struct Conversation<'a> {
    http: &'a reqwest::Client,
    url: Url,
    service: &'a str,
    session: Option<HeaderValue>,
    protocol: Option<HeaderValue>,
    next_id: u64,
}

impl Conversation<'_> {
    async fn list(&mut self) -> Result<Listing, CatalogError> {
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "prometheus-catalog", "version": env!("CARGO_PKG_VERSION") },
        });
        let initialized = self.request("initialize", params).await?;
        self.protocol = initialized
            .get("protocolVersion")
            .and_then(Value::as_str)
            .and_then(|version| HeaderValue::from_str(version).ok());
        self.notify("notifications/initialized").await?;
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        let mut truncated = false;
        for page in 0.. {
            if page == MAX_PAGES {
                truncated = true;
                break;
            }
            let params = match &cursor {
                Some(cursor) => json!({ "cursor": cursor }),
                None => json!({}),
            };
            let result = self.request("tools/list", params).await?;
            let listed = result.get("tools").and_then(Value::as_array).ok_or_else(|| CatalogError::Malformed {
                method: "tools/list",
                detail: "its result has no tools array".into(),
            })?;
            for tool in listed {
                match read_tool(tool) {
                    // A name listed twice is one tool (the first listing wins).
                    Some(tool) if tools.iter().any(|known: &Tool| known.name == tool.name) => {}
                    Some(_) if tools.len() == MAX_TOOLS => truncated = true,
                    Some(tool) => tools.push(tool),
                    None => tracing::debug!(service = self.service, "a listed tool without a name was left out"),
                }
            }
            cursor = result.get("nextCursor").and_then(Value::as_str).map(str::to_owned);
            if cursor.is_none() || truncated {
                break;
            }
        }
        Ok(Listing { tools, read_at: prom_core::time::Timestamp::now(), truncated })
    }

    /// A POST of `message` with the session's headers.
    fn post(&self, method: &'static str, message: &Value) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .header(METHOD_HEADER, method)
            .header("x-prometheus-service", self.service)
            .body(message.to_string());
        if let Some(session) = &self.session {
            request = request.header(SESSION_HEADER, session.clone());
        }
        if let Some(protocol) = &self.protocol {
            request = request.header(PROTOCOL_HEADER, protocol.clone());
        }
        request
    }

    /// Sends a request and returns its result.
    async fn request(&mut self, method: &'static str, params: Value) -> Result<Value, CatalogError> {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let response = self.post(method, &message).send().await.map_err(unreachable)?;
        check_status(method, response.status())?;
        if method == "initialize"
            && let Some(session) = response.headers().get(SESSION_HEADER)
        {
            self.session = Some(session.clone());
        }
        let answer = answer_of(method, id, response).await?;
        if let Some(error) = answer.get("error") {
            return Err(CatalogError::Rpc {
                method,
                code: error.get("code").and_then(Value::as_i64).unwrap_or_default(),
                message: shorten(error.get("message").and_then(Value::as_str).unwrap_or("no message"), 300),
            });
        }
        answer
            .get("result")
            .cloned()
            .ok_or_else(|| CatalogError::Malformed { method, detail: "its answer has neither result nor error".into() })
    }

    /// Sends a notification (answered `202 Accepted`).
    async fn notify(&self, method: &'static str) -> Result<(), CatalogError> {
        let message = json!({ "jsonrpc": "2.0", "method": method });
        let response = self.post(method, &message).send().await.map_err(unreachable)?;
        check_status(method, response.status())
    }

    /// Ends the session the upstream opened, if it did (a server may refuse with 405; either way
    /// the catalogue is done with it).
    async fn end(&self) {
        let Some(session) = &self.session else { return };
        let mut request = self.http.request(Method::DELETE, self.url.clone()).header(SESSION_HEADER, session.clone());
        if let Some(protocol) = &self.protocol {
            request = request.header(PROTOCOL_HEADER, protocol.clone());
        }
        if let Err(err) = tokio::time::timeout(END_DEADLINE, request.send()).await {
            tracing::debug!(service = self.service, error = %err, "an upstream did not end the catalogue's session in time");
        }
    }
}

fn check_status(method: &'static str, status: reqwest::StatusCode) -> Result<(), CatalogError> {
    match status.as_u16() {
        200..=299 => Ok(()),
        401 | 403 | 407 => Err(CatalogError::Denied { method, status: status.as_u16() }),
        status => Err(CatalogError::Status { method, status }),
    }
}

/// A failed connection, in words the publisher can act on: the egress policy's refusal when the
/// resolver refused the name, the cause otherwise (without the URL's secrets).
fn unreachable(err: reqwest::Error) -> CatalogError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(inner) = cause {
        if let Some(refusal) = inner.downcast_ref::<Refusal>() {
            return CatalogError::Refused(refusal.clone());
        }
        cause = inner.source();
    }
    if err.is_timeout() {
        return CatalogError::Timeout;
    }
    CatalogError::Unreachable(shorten(&crate::redact::upstream_error(err), 500))
}

/// The JSON-RPC answer to request `id`: the JSON body, or the matching message of the event stream.
async fn answer_of(method: &'static str, id: u64, response: reqwest::Response) -> Result<Value, CatalogError> {
    let is_sse = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|kind| kind.starts_with("text/event-stream"));
    let body = limited(method, response);
    if !is_sse {
        let bytes: BytesMut = body
            .try_fold(BytesMut::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await
            .map_err(|err| body_error(method, err))?;
        let message: Value = serde_json::from_slice(&bytes)
            .map_err(|err| CatalogError::Malformed { method, detail: format!("the body is not JSON ({err})") })?;
        if answers(&message, id) {
            return Ok(message);
        }
        return Err(CatalogError::Malformed { method, detail: "the body does not answer the request".into() });
    }
    let mut events = std::pin::pin!(sse_stream::SseStream::from_bytes_stream(body));
    while let Some(event) = events.next().await {
        let event = event.map_err(|err| match err {
            sse_stream::Error::Body(inner) => match inner.downcast::<std::io::Error>() {
                Ok(io) => body_error(method, *io),
                Err(other) => CatalogError::Unreachable(shorten(&other.to_string(), 300)),
            },
            other => CatalogError::Malformed { method, detail: format!("the event stream is not valid ({other})") },
        })?;
        let Some(data) = event.data.filter(|data| !data.trim().is_empty()) else { continue };
        // Server requests (ping, roots), notifications and unreadable events are not the answer.
        if let Ok(message) = serde_json::from_str::<Value>(&data)
            && answers(&message, id)
        {
            return Ok(message);
        }
    }
    Err(CatalogError::Malformed { method, detail: "the event stream ended without the answer".into() })
}

/// Whether `message` is the response to request `id`.
fn answers(message: &Value, id: u64) -> bool {
    message.get("method").is_none()
        && message.get("id").is_some_and(|got| got.as_u64() == Some(id) || got.as_str() == Some(&id.to_string()))
}

/// The response's body, failing once it passes [`MAX_BODY_BYTES`].
fn limited(
    method: &'static str,
    response: reqwest::Response,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut read = 0usize;
    response.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        read = read.saturating_add(chunk.len());
        if read > MAX_BODY_BYTES {
            return Err(std::io::Error::other(TooLarge(method)));
        }
        Ok(chunk)
    })
}

#[derive(Debug, thiserror::Error)]
#[error("the answer to {0} is too large")]
struct TooLarge(&'static str);

fn body_error(method: &'static str, err: std::io::Error) -> CatalogError {
    if err.get_ref().is_some_and(|inner| inner.is::<TooLarge>()) {
        return CatalogError::TooLarge { method };
    }
    match err.into_inner().map(|inner| inner.downcast::<reqwest::Error>()) {
        Some(Ok(err)) => unreachable(*err),
        Some(Err(other)) => CatalogError::Unreachable(shorten(&other.to_string(), 300)),
        None => CatalogError::Unreachable("the answer broke off".into()),
    }
}

/// A listed tool, with its texts bounded; `None` without a name.
fn read_tool(tool: &Value) -> Option<Tool> {
    let text = |field: &str, max: usize| {
        tool.get(field).and_then(Value::as_str).map(str::trim).filter(|text| !text.is_empty()).map(|t| shorten(t, max))
    };
    let name = text("name", MAX_NAME_CHARS)?;
    let title = text("title", MAX_TITLE_CHARS)
        .or_else(|| tool.pointer("/annotations/title").and_then(Value::as_str).map(|t| shorten(t, MAX_TITLE_CHARS)));
    Some(Tool { name, title, description: text("description", MAX_DESCRIPTION_CHARS) })
}

/// `text` cut to `max` characters (with an ellipsis when cut).
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_keep_name_title_and_description_bounded() {
        let tool = read_tool(&json!({"name": "search", "title": "Search", "description": "x".repeat(5000)}));
        let tool = tool.unwrap_or_else(|| Tool { name: String::new(), title: None, description: None });
        assert_eq!(tool.name, "search");
        assert_eq!(tool.title.as_deref(), Some("Search"));
        assert_eq!(tool.description.map(|d| d.chars().count()), Some(MAX_DESCRIPTION_CHARS + 1));
        assert_eq!(read_tool(&json!({"title": "nameless"})), None);
    }

    #[test]
    fn only_the_response_to_the_request_answers_it() {
        assert!(answers(&json!({"jsonrpc":"2.0","id":2,"result":{}}), 2));
        assert!(answers(&json!({"jsonrpc":"2.0","id":"2","result":{}}), 2));
        assert!(!answers(&json!({"jsonrpc":"2.0","id":2,"method":"ping"}), 2));
        assert!(!answers(&json!({"jsonrpc":"2.0","id":3,"result":{}}), 2));
    }
}
