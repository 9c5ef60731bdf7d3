//! CORS for `/mcp/…`: browsers on an origin the operator allowed (`allowed_origins`) may call the
//! gateway. A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered without a
//! credential — browsers never send one with it — naming the methods and the headers MCP needs;
//! every answer to an allowed origin, errors included, carries `Access-Control-Allow-Origin` and
//! exposes `Mcp-Session-Id`, so the page can read it. Other origins get 403, as before.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Gateway;

/// Request headers a page may send: credentials, MCP's own, resumption; `Mcp-Param-*` too.
const ALLOWED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "accept",
    "x-api-key",
    "mcp-protocol-version",
    "mcp-session-id",
    "mcp-method",
    "mcp-name",
    "last-event-id",
];
const EXPOSED_HEADERS: &str = "mcp-session-id, mcp-protocol-version";

impl Gateway {
    /// The page's origin when it is one the operator allowed.
    fn allowed_origin<'a>(&self, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.allowed_origins.iter().any(|allowed| allowed == text || allowed == "*").then_some(origin)
    }

    /// Answers a CORS preflight, or `None` when `method` and `headers` are not one.
    pub(super) fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<Response> {
        if method != Method::OPTIONS || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            return None;
        }
        let Some(origin) = self.allowed_origin(headers) else {
            let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or("(none)");
            let message = format!(
                "requests from the web origin {origin:?} are not allowed; an operator can allow it with allowed_origins"
            );
            return Some(crate::error::ApiError::Forbidden(message).into_response());
        };
        // The headers the page asked for, where allowed (any `Mcp-Param-*` is).
        let requested = headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(',')
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| ALLOWED_HEADERS.contains(&name.as_str()) || super::is_param_header(name))
            .collect::<Vec<_>>();
        let mut allowed: Vec<&str> = ALLOWED_HEADERS.to_vec();
        allowed.extend(requested.iter().map(String::as_str).filter(|name| super::is_param_header(name)));
        let mut response = StatusCode::NO_CONTENT.into_response();
        let out = response.headers_mut();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE"));
        if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
        out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        out.insert(header::VARY, HeaderValue::from_static("origin"));
        Some(response)
    }

    /// Lets the page read `response` when it came from an allowed origin.
    pub(super) fn expose(&self, request_headers: &HeaderMap, response: &mut Response) {
        let Some(origin) = self.allowed_origin(request_headers) else { return };
        let out = response.headers_mut();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        out.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
        out.append(header::VARY, HeaderValue::from_static("origin"));
    }
}
