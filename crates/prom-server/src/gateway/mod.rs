//! The MCP gateway: `/mcp/{service}` speaks MCP Streamable HTTP (POST, GET, DELETE) and passes
//! each request to the service's upstream after authenticating it afresh.
//!
//! What the gateway owns, and nothing more: the credential (checked here, never forwarded), the
//! `Origin` check, the session binding (an upstream session id only works with the key that
//! opened it), the `Mcp-Method`/`Mcp-Name` consistency check, and the metering of each JSON-RPC
//! request (method, tool, outcome, latency, bytes). Bodies are relayed untouched; SSE events go
//! out as they arrive with their `id:`/`retry:` lines intact.

mod envelope;
mod relay;
pub mod sessions;
mod stdio;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prom_core::access::Scope;
use prom_core::charge::{ChargeOp, ChargeOpResult, NewCharge};
use prom_core::id::ChargeId;
use prom_core::money::Amount;
use prom_core::service::{ServiceRecord, ServiceSlug, Upstream};
use prom_core::time::Timestamp;
use serde_json::{Value, json};

pub use self::envelope::{Envelope, Outcome};
use self::envelope::{EnvelopeError, HEADER_MISMATCH_CODE};
use self::relay::{HeldCharge, Watch};
use self::sessions::SessionBindings;
use self::stdio::{Outgoing, StdioUpstreams};
use crate::auth::{AgentPrincipal, Principal};
use crate::charging::ChargeError;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::usage::KeyUser;

const MCP_SESSION_ID: &str = "mcp-session-id";
const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";

/// Request headers passed to the upstream. Everything else — above all `Authorization`,
/// `x-api-key` and cookies — stays at the gateway.
const FORWARDED_REQUEST_HEADERS: [&str; 8] = [
    "content-type",
    "accept",
    MCP_PROTOCOL_VERSION,
    MCP_SESSION_ID,
    "last-event-id",
    envelope::MCP_METHOD,
    envelope::MCP_NAME,
    "user-agent",
];

/// Response headers passed back to the agent.
const FORWARDED_RESPONSE_HEADERS: [&str; 6] =
    ["content-type", MCP_SESSION_ID, MCP_PROTOCOL_VERSION, "cache-control", "retry-after", "allow"];

#[derive(Debug)]
pub struct Gateway {
    client: reqwest::Client,
    pub sessions: SessionBindings,
    pub stdio: Arc<StdioUpstreams>,
    pub metrics: Arc<Metrics>,
    /// Upstream URLs, parsed once.
    urls: dashmap::DashMap<String, reqwest::Url>,
    max_request_bytes: usize,
    upstream_timeout: Duration,
    allowed_origins: Vec<String>,
}

impl Gateway {
    pub fn new(config: &ServerConfig, metrics: Arc<Metrics>) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            sessions: SessionBindings::default(),
            stdio: StdioUpstreams::new(Duration::from_secs(config.stdio_idle_secs), config.max_stdio_sessions),
            metrics,
            urls: dashmap::DashMap::new(),
            max_request_bytes: config.max_mcp_request_bytes,
            upstream_timeout: Duration::from_secs(config.upstream_timeout_secs),
            allowed_origins: config.allowed_origins.clone(),
        })
    }

    /// Browsers send `Origin`; MCP clients outside a browser do not. A page on another origin must
    /// not be able to drive an agent's session (DNS rebinding), so a present, unlisted origin is
    /// refused.
    fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
        let origin = origin.to_str().unwrap_or_default();
        if self.allowed_origins.iter().any(|allowed| allowed == origin || allowed == "*") {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "requests from the web origin {origin:?} are not allowed; an operator can allow it with allowed_origins"
        )))
    }
}

/// `POST|GET|DELETE /mcp/{service}`.
pub async fn handle(State(state): State<AppState>, Path(slug): Path<String>, request: Request) -> Response {
    match serve(&state, &slug, request).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

/// A failure the agent's MCP client should read as a JSON-RPC error.
fn rpc_error(status: StatusCode, id: Option<&Value>, code: i64, message: String) -> Response {
    let body = json!({ "jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": { "code": code, "message": message } });
    (status, axum::Json(body)).into_response()
}

async fn serve(state: &AppState, slug: &str, request: Request) -> Result<Response, ApiError> {
    let gateway = &state.gateway;
    let (mut parts, body) = request.into_parts();
    gateway.check_origin(&parts.headers)?;
    let principal = Principal::from_request_parts(&mut parts, state).await?;
    let agent = principal.require_scope(Scope::AgentConnect)?.clone();
    let not_found = || ApiError::NotFound(format!("no service named {slug:?}; list services with GET /v1/services"));
    let slug = ServiceSlug::parse(slug).map_err(|_| not_found())?;
    let service = state.services.get(&slug).await?.ok_or_else(not_found)?;
    let session = parts.headers.get(MCP_SESSION_ID).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(session) = &session
        && !gateway.sessions.allows(slug.as_str(), session, &agent.key_id)
    {
        return Err(ApiError::NotFound(
            "this MCP session does not exist or belongs to another key; start a new session (initialize)".into(),
        ));
    }
    if let Upstream::Stdio { .. } = &service.upstream {
        return stdio_request(state, &service, &agent, parts.method, &parts.headers, session.as_deref(), body).await;
    }
    match parts.method {
        Method::POST => post(state, &service, &agent, &parts.headers, body).await,
        Method::GET => match session {
            Some(_) => forward(state, &service, &agent, Method::GET, &parts.headers, None, None).await,
            // Stateless (2026-07-28) servers have no GET stream; let the upstream say so (405).
            None => forward(state, &service, &agent, Method::GET, &parts.headers, None, None).await,
        },
        Method::DELETE => {
            let response = forward(state, &service, &agent, Method::DELETE, &parts.headers, None, None).await?;
            if let (Some(session), true) = (&session, response.status().is_success()) {
                gateway.sessions.unbind(slug.as_str(), session);
            }
            Ok(response)
        }
        _ => Err(ApiError::MethodNotAllowed("MCP endpoints accept POST, GET and DELETE".into())),
    }
}

/// Reads a POSTed message, checks it, and prepares its metering.
async fn read_message(
    state: &AppState,
    service: &ServiceRecord,
    agent: &AgentPrincipal,
    headers: &HeaderMap,
    body: Body,
) -> Result<Result<(bytes::Bytes, Envelope, Option<Watch>), Response>, ApiError> {
    let gateway = &state.gateway;
    let bytes = axum::body::to_bytes(body, gateway.max_request_bytes).await.map_err(|_| {
        ApiError::PayloadTooLarge(format!(
            "MCP messages through the gateway are at most {} bytes",
            gateway.max_request_bytes
        ))
    })?;
    let envelope = match Envelope::parse(&bytes) {
        Ok(envelope) => envelope,
        Err(err @ EnvelopeError::NotJson(_)) => {
            return Ok(Err(rpc_error(StatusCode::BAD_REQUEST, None, -32700, err.to_string())));
        }
        Err(err) => return Ok(Err(rpc_error(StatusCode::BAD_REQUEST, None, -32600, err.to_string()))),
    };
    let modern =
        headers.get(MCP_PROTOCOL_VERSION).and_then(|v| v.to_str().ok()).is_some_and(|version| version >= "2026-07-28");
    if let Err(message) = envelope.check_headers(headers, modern) {
        return Ok(Err(rpc_error(StatusCode::BAD_REQUEST, envelope.request_id(), HEADER_MISMATCH_CODE, message)));
    }
    let mut watch = match &envelope {
        Envelope::Request { id, method, .. } => Some(Watch::new(
            id.clone(),
            service.slug.clone(),
            method.clone(),
            envelope.tool().map(str::to_owned),
            bytes.len(),
            KeyUser {
                key_id: agent.key_id.clone(),
                tenant_id: agent.tenant_id.clone(),
                label: agent.label.to_string(),
                display: agent.display.clone(),
            },
            state.usage.clone(),
            gateway.metrics.clone(),
        )),
        _ => None,
    };
    // A paid tool: hold its price (durably) before anything reaches the upstream.
    let price = envelope.tool().map_or(Amount::ZERO, |tool| service.price_of(tool));
    if let Some(mut pending) = watch.take_if(|_| price > Amount::ZERO) {
        let charge = NewCharge {
            id: ChargeId::new(),
            tenant_id: agent.tenant_id.clone(),
            service: service.slug.clone(),
            key_id: agent.key_id.clone(),
            tool: envelope.tool().unwrap_or_default().to_owned(),
            amount: price,
            at: Timestamp::now(),
        };
        let id = charge.id.clone();
        match state.charges.apply(ChargeOp::Reserve(charge)).await {
            Ok(ChargeOpResult::Held) => {
                watch = Some(pending.with_charge(HeldCharge {
                    id,
                    book: state.charges.clone(),
                    charge_tool_errors: service.charge_tool_errors,
                }))
            }
            Ok(ChargeOpResult::Refused { available, expiring }) => {
                pending.finish(Outcome::AllowanceExceeded);
                let refusal = Refusal { price, available, expiring };
                return Ok(Err(allowance_exceeded(state, service, headers, envelope.request_id(), refusal)));
            }
            Ok(other) => {
                return Err(ApiError::internal(std::io::Error::other(format!("unexpected hold result {other:?}"))));
            }
            Err(err) => {
                tracing::error!(error = %err, service = %service.slug, "cannot place a hold");
                pending.finish(Outcome::UpstreamError);
                return Err(ApiError::Unavailable(
                    "paid calls cannot be charged right now, so none are made; nothing was charged, retry shortly"
                        .into(),
                ));
            }
        }
    }
    Ok(Ok((bytes, envelope, watch)))
}

/// JSON-RPC error code of a paid call the allowance cannot cover.
pub const ALLOWANCE_EXCEEDED_CODE: i64 = -32402;

/// Why a hold was refused.
struct Refusal {
    price: Amount,
    available: Amount,
    /// The allowance expires within the hold margin (or has expired).
    expiring: bool,
}

/// The answer to a paid call the allowance cannot cover: a JSON-RPC error (the upstream was never
/// called) that says what the call costs, what is left, and where the allowance is managed.
fn allowance_exceeded(
    state: &AppState,
    service: &ServiceRecord,
    headers: &HeaderMap,
    id: Option<&Value>,
    Refusal { price, available, expiring }: Refusal,
) -> Response {
    let base = match &state.config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1:7070");
            format!("http://{host}")
        }
    };
    let manage_url = format!("{base}/app/store/{}", service.slug);
    let body = json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Value::Null),
        "error": {
            "code": ALLOWANCE_EXCEEDED_CODE,
            "message": if expiring {
                format!(
                    "ALLOWANCE_EXCEEDED: your allowance for {} has expired, or expires too soon for this call to be \
                     settled (paid calls stop {} s before it expires); approve it again with a later expires_at at \
                     {manage_url} (or PUT /v1/services/{}/allowance)",
                    service.slug,
                    state.charges.margins().hold_ms / 1000,
                    service.slug
                )
            } else {
                format!(
                    "ALLOWANCE_EXCEEDED: this call costs {price} but only {available} is left of your allowance for \
                     {}; raise it at {manage_url} (or PUT /v1/services/{}/allowance)",
                    service.slug, service.slug
                )
            },
            "data": {
                "code": "ALLOWANCE_EXCEEDED",
                "service": service.slug.as_str(),
                "price": price.to_string(),
                "available": available.to_string(),
                "expiring": expiring,
                "manage_url": manage_url,
            }
        }
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// A request to a service whose upstream is a local command.
async fn stdio_request(
    state: &AppState,
    service: &ServiceRecord,
    agent: &AgentPrincipal,
    method: Method,
    headers: &HeaderMap,
    session: Option<&str>,
    body: Body,
) -> Result<Response, ApiError> {
    let gateway = &state.gateway;
    let Upstream::Stdio { command, args, env } = &service.upstream else {
        return Err(ApiError::internal(std::io::Error::other("not a stdio service")));
    };
    let slug = service.slug.as_str();
    let need_session = || {
        ApiError::InvalidRequest(format!(
            "{slug} runs as a local process per MCP session: send initialize first, then the Mcp-Session-Id it returns"
        ))
    };
    match method {
        Method::POST => {
            let (bytes, envelope, watch) = match read_message(state, service, agent, headers, body).await? {
                Ok(read) => read,
                Err(response) => return Ok(response),
            };
            let message = Outgoing::from_body(&bytes)?;
            match session {
                Some(session) => gateway.stdio.send(session, &agent.key_id, message, watch).await,
                None if envelope.method() == Some("initialize") => {
                    // The allow-list is checked again at spawn time: it may have shrunk since the
                    // service was registered.
                    if !state.config.stdio_upstream_commands.iter().any(|allowed| allowed == command) {
                        return Err(ApiError::Forbidden(format!(
                            "the command of service {slug} is not in this gateway's stdio_upstream_commands"
                        )));
                    }
                    let session = gateway.stdio.open(slug, &agent.key_id, command, args, env)?;
                    gateway.sessions.bind(slug, &session, &agent.key_id);
                    let mut response = gateway.stdio.send(&session, &agent.key_id, message, watch).await?;
                    if let Ok(value) = HeaderValue::from_str(&session) {
                        response.headers_mut().insert(HeaderName::from_static(MCP_SESSION_ID), value);
                    }
                    Ok(response)
                }
                None => Err(need_session()),
            }
        }
        Method::GET => gateway.stdio.listen(session.ok_or_else(need_session)?, &agent.key_id),
        Method::DELETE => {
            let session = session.ok_or_else(need_session)?;
            gateway.stdio.end(session, &agent.key_id)?;
            gateway.sessions.unbind(slug, session);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(ApiError::MethodNotAllowed("MCP endpoints accept POST, GET and DELETE".into())),
    }
}

async fn post(
    state: &AppState,
    service: &Arc<ServiceRecord>,
    agent: &Arc<AgentPrincipal>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (bytes, envelope, watch) = match read_message(state, service, agent, headers, body).await? {
        Ok(read) => read,
        Err(response) => return Ok(response),
    };
    let is_initialize = envelope.method() == Some("initialize");
    let response = forward(state, service, agent, Method::POST, headers, Some(bytes), watch).await?;
    if is_initialize && let Some(session) = response.headers().get(MCP_SESSION_ID).and_then(|v| v.to_str().ok()) {
        state.gateway.sessions.bind(service.slug.as_str(), session, &agent.key_id);
    }
    Ok(response)
}

/// Sends one request upstream and relays the answer.
async fn forward(
    state: &AppState,
    service: &ServiceRecord,
    agent: &AgentPrincipal,
    method: Method,
    headers: &HeaderMap,
    body: Option<bytes::Bytes>,
    mut watch: Option<Watch>,
) -> Result<Response, ApiError> {
    let gateway = &state.gateway;
    let url = match &service.upstream {
        Upstream::Http { url } => url,
        Upstream::Stdio { .. } => {
            return Err(ApiError::internal(std::io::Error::other("stdio service in the HTTP path")));
        }
    };
    let url = match gateway.urls.get(url) {
        Some(parsed) => parsed.clone(),
        None => {
            let parsed = reqwest::Url::parse(url).map_err(|_| {
                ApiError::UpstreamUnavailable(format!("the service {} has an unusable upstream URL", service.slug))
            })?;
            if gateway.urls.len() > 10_000 {
                gateway.urls.clear();
            }
            gateway.urls.insert(url.clone(), parsed.clone());
            parsed
        }
    };
    let mut request = gateway.client.request(method, url);
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    request = request
        .header("x-prometheus-tenant-id", agent.tenant_id.as_str())
        .header("x-prometheus-key-id", agent.key_id.as_str())
        .header("x-prometheus-service", service.slug.as_str());
    if let Some(body) = body {
        request = request.body(body);
    }
    let service_name = service.slug.as_str();
    let upstream = match tokio::time::timeout(gateway.upstream_timeout, request.send()).await {
        Err(_) => {
            gateway.metrics.upstream_error(service_name, "timeout");
            if let Some(watch) = &mut watch {
                let _ = watch.settle(Outcome::UpstreamError).await;
            }
            return Err(ApiError::UpstreamTimeout(format!(
                "the service {service_name} did not answer within {} s; try again later",
                gateway.upstream_timeout.as_secs()
            )));
        }
        Ok(Err(err)) => {
            let kind = if err.is_connect() { "connect" } else { "request" };
            gateway.metrics.upstream_error(service_name, kind);
            tracing::warn!(service = service_name, error = %err, "upstream request failed");
            if let Some(watch) = &mut watch {
                let _ = watch.settle(Outcome::UpstreamError).await;
            }
            return Err(ApiError::UpstreamUnavailable(format!(
                "the service {service_name} cannot be reached right now ({kind} failed); try again later"
            )));
        }
        Ok(Ok(response)) => response,
    };
    let status = upstream.status();
    if matches!(status.as_u16(), 401 | 403 | 407) {
        // The upstream refused the gateway itself: an operator's problem, not the agent's key.
        gateway.metrics.upstream_error(service_name, "auth");
        if let Some(watch) = &mut watch {
            let _ = watch.settle(Outcome::UpstreamError).await;
        }
        return Err(ApiError::UpstreamUnavailable(format!(
            "the service {service_name} refused the gateway (HTTP {}); its operator must fix the upstream's credentials",
            status.as_u16()
        )));
    }
    if status.is_server_error() {
        gateway.metrics.upstream_error(service_name, "status_5xx");
    }
    if !status.is_success()
        && let Some(watch) = &mut watch
    {
        let _ = watch.settle(Outcome::UpstreamError).await;
    }
    let mut response = Response::builder().status(status);
    if let Some(out) = response.headers_mut() {
        for name in FORWARDED_RESPONSE_HEADERS {
            if let Some(value) = upstream.headers().get(name) {
                out.insert(name, value.clone());
            }
        }
    }
    let is_sse = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    // A paid call's id and price, for the answer should its capture fail (free calls need neither).
    let paid = watch
        .as_ref()
        .filter(|watch| watch.is_charged())
        .map(|watch| (watch.request_id().clone(), watch.tool().map_or(Amount::ZERO, |tool| service.price_of(tool))));
    // A paid JSON answer is sent only once its charge is captured: its head waits with it.
    let whole = !is_sse && paid.is_some();
    let relay = if is_sse {
        response = response.header("x-accel-buffering", "no");
        relay::relay_sse(upstream, watch)
    } else {
        relay::relay_json(upstream, watch)
    };
    match relay::body_of(relay, whole).await {
        Ok(body) => response.body(body).map_err(ApiError::internal),
        Err(err) => withheld(state, service, headers, paid.as_ref(), &err),
    }
}

/// The answer to a call whose response failed before anything of it was sent: its charge could
/// not be captured (the result is withheld and nothing was charged), or the upstream's body broke
/// off at once.
fn withheld(
    state: &AppState,
    service: &ServiceRecord,
    headers: &HeaderMap,
    paid: Option<&(Value, Amount)>,
    err: &std::io::Error,
) -> Result<Response, ApiError> {
    match err.get_ref().and_then(|inner| inner.downcast_ref::<ChargeError>()) {
        Some(ChargeError::Expired) => {
            let (id, price) = paid.map_or((None, Amount::ZERO), |(id, price)| (Some(id), *price));
            let refusal = Refusal { price, available: Amount::ZERO, expiring: true };
            Ok(allowance_exceeded(state, service, headers, id, refusal))
        }
        Some(_) => Err(ApiError::Unavailable(
            "this paid call could not be charged, so its result was withheld; nothing was charged, retry shortly"
                .into(),
        )),
        None => Err(ApiError::UpstreamUnavailable(format!(
            "the answer of the service {} broke off; try again later",
            service.slug
        ))),
    }
}
