//! The MCP gateway: `/mcp/{service}` speaks MCP Streamable HTTP (POST, GET, DELETE) and passes
//! each request to the service's upstream after authenticating it afresh.
//!
//! What the gateway owns, and nothing more: the credential (checked here, never forwarded), the
//! `Origin` check, the session binding (an upstream session id only works with the key that
//! opened it), the `Mcp-Method`/`Mcp-Name` consistency check, and the metering of each JSON-RPC
//! request (method, tool, outcome, latency, bytes). Bodies are relayed untouched; SSE events go
//! out as they arrive with their `id:`/`retry:` lines intact.

mod cors;
mod envelope;
mod ids;
mod intake;
pub mod launch;
mod paid;
mod pending;
mod relay;
mod rpc;
pub mod sessions;
mod sse;
mod stdio;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prom_core::access::Scope;
use prom_core::money::Amount;
use prom_core::service::{ServiceRecord, ServiceSlug, Upstream};
use serde_json::Value;

pub use self::envelope::{Envelope, Outcome};
use self::intake::{Intake, Refusal};
pub use self::launch::{StdioCommand, StdioLimits};
use self::paid::{CancelRoute, PaidCalls};
use self::pending::PendingIds;
use self::relay::{Awaiting, PaidTicket, RelayError};
use self::sessions::SessionBindings;
use self::stdio::{Outgoing, StdioUpstreams};
use crate::auth::{AgentPrincipal, Principal};
use crate::config::ServerConfig;
use crate::egress::{EgressPolicy, EgressResolver, Lookup};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::money::ChargeError;
use crate::state::AppState;

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

/// Most `Mcp-Param-*` headers passed on with one request.
const MAX_PARAM_HEADERS: usize = 64;

/// `Mcp-Param-{Name}` (header names arrive lower-cased).
fn is_param_header(name: &str) -> bool {
    name.len() > "mcp-param-".len() && name.starts_with("mcp-param-")
}

/// Response headers passed back to the agent.
const FORWARDED_RESPONSE_HEADERS: [&str; 6] =
    ["content-type", MCP_SESSION_ID, MCP_PROTOCOL_VERSION, "cache-control", "retry-after", "allow"];

#[derive(Debug)]
pub struct Gateway {
    client: reqwest::Client,
    pub sessions: SessionBindings,
    pub stdio: Arc<StdioUpstreams>,
    pub metrics: Arc<Metrics>,
    /// Paid calls waiting for their result.
    paid: Arc<PaidCalls>,
    /// Request ids pending in each MCP session.
    pending: PendingIds,
    /// Upstream URLs, parsed and checked against the egress policy once (the policy does not
    /// change while the server runs; names are still checked at every connect).
    urls: dashmap::DashMap<String, Result<reqwest::Url, crate::egress::Refusal>>,
    /// Where upstreams may be; the client's resolver applies it to every name it resolves.
    pub egress: Arc<EgressPolicy>,
    /// The resolver's lookups (tests pin names to addresses through it).
    pub lookup: Lookup,
    max_request_bytes: usize,
    upstream_timeout: Duration,
    /// How long a POST's answer may pause before the call ends as an upstream failure.
    upstream_idle: Duration,
    allowed_origins: Vec<String>,
}

impl Gateway {
    /// The egress-checked HTTP client (no proxy, no redirects, refused addresses never dialled).
    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn new(config: &ServerConfig, metrics: Arc<Metrics>) -> Result<Self, GatewayError> {
        let egress = Arc::new(EgressPolicy::new(&config.egress)?);
        let lookup = Lookup::default();
        let resolver = EgressResolver { policy: egress.clone(), lookup: lookup.clone() };
        let client = reqwest::Client::builder()
            // Every upstream connection is made, and its address checked, here: a proxy from the
            // environment would resolve names itself and carry requests past the egress policy.
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let paid = PaidCalls::new(Duration::from_secs(config.paid_result_secs.max(1)));
        let quotas = stdio::Quotas {
            total: config.max_stdio_sessions,
            per_tenant: config.max_stdio_sessions_per_tenant,
            per_key: config.max_stdio_sessions_per_key,
        };
        let stdio = StdioUpstreams::new(Duration::from_secs(config.stdio_idle_secs), quotas, paid.clone());
        tokio::spawn(paid::expire_calls(Arc::downgrade(&paid), {
            let client = client.clone();
            let stdio = Arc::downgrade(&stdio);
            move |expired| cancel_upstream(client.clone(), stdio.clone(), expired)
        }));
        Ok(Self {
            client,
            sessions: SessionBindings::default(),
            stdio,
            metrics,
            paid,
            pending: PendingIds::default(),
            urls: dashmap::DashMap::new(),
            egress,
            lookup,
            max_request_bytes: config.max_mcp_request_bytes,
            upstream_timeout: Duration::from_secs(config.upstream_timeout_secs),
            upstream_idle: Duration::from_secs(config.upstream_idle_secs.max(1)),
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

/// Why a gateway cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot set up the gateway's HTTP client")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Egress(#[from] crate::egress::BadCidr),
}

/// What an agent is told when its service's upstream cannot be used: the same words whether the
/// egress policy refused it or the connection failed, so that agents cannot map the network
/// through the gateway (the operator's log says which).
fn unreachable(service: &str) -> ApiError {
    ApiError::UpstreamUnavailable(format!("the service {service} cannot be reached right now; try again later"))
}

/// Tells an upstream that a paid call's result is no longer wanted (its time ran out and its hold
/// was released). Best effort: a result that comes anyway is withheld.
async fn cancel_upstream(client: reqwest::Client, stdio: std::sync::Weak<StdioUpstreams>, expired: paid::Expired) {
    let notification = paid::cancelled(&expired.upstream_id);
    match expired.route {
        CancelRoute::Http { url: Some(url), session, protocol } => {
            let mut request = client
                .post(url)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, "application/json, text/event-stream")
                .body(notification.to_string());
            if let Some(session) = session {
                request = request.header(MCP_SESSION_ID, session);
            }
            if let Some(protocol) = protocol {
                request = request.header(MCP_PROTOCOL_VERSION, protocol);
            }
            if let Err(err) = tokio::time::timeout(Duration::from_secs(10), request.send()).await {
                tracing::debug!(error = %err, "could not tell an upstream that a paid call was cancelled");
            }
        }
        CancelRoute::Http { url: None, .. } => {}
        CancelRoute::Stdio { session } => {
            if let Some(stdio) = stdio.upgrade() {
                stdio.notify(&session, notification.to_string()).await;
            }
        }
    }
}

/// `POST|GET|DELETE /mcp/{service}`, and CORS preflights (`OPTIONS`) from allowed origins.
pub async fn handle(State(state): State<AppState>, Path(slug): Path<String>, request: Request) -> Response {
    if let Some(preflight) = state.gateway.preflight(request.method(), request.headers()) {
        return preflight;
    }
    let cors = request.headers().contains_key(header::ORIGIN).then(|| request.headers().clone());
    let mut response = match serve(&state, &slug, request).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    };
    if let Some(headers) = cors {
        state.gateway.expose(&headers, &mut response);
    }
    response
}

/// A failure the agent's MCP client should read as a JSON-RPC error.
fn rpc_error(status: StatusCode, id: Option<&Value>, code: i64, message: String) -> Response {
    (status, axum::Json(rpc::error(id, code, message))).into_response()
}

async fn serve(state: &AppState, slug: &str, request: Request) -> Result<Response, ApiError> {
    let gateway = &state.gateway;
    let (mut parts, body) = request.into_parts();
    gateway.check_origin(&parts.headers)?;
    let principal = match Principal::from_request_parts(&mut parts, state).await {
        Ok(principal) => principal,
        // No credential at all: point an interactive client at the authorization server.
        Err(ApiError::TokenMissing) => return Ok(crate::oauth::challenge(state, &parts.headers, slug)),
        Err(err) => return Err(err),
    };
    let agent = principal.require_scope(Scope::AgentConnect)?.clone();
    let not_found = || ApiError::NotFound(format!("no service named {slug:?}; list services with GET /v1/services"));
    let slug = ServiceSlug::parse(slug).map_err(|_| not_found())?;
    if let Some(grant) = &agent.grant
        && grant.service != slug
    {
        return Err(ApiError::TokenInvalid(format!(
            "this access token was issued for the service {} only; connect the agent to {slug} to get one for it",
            grant.service
        )));
    }
    let service = state.services.get(&slug).await?.ok_or_else(not_found)?;
    let session = session_of(&parts.headers)?;
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
        Method::POST => post(state, &service, &agent, &parts.headers, session.as_deref(), body).await,
        // Stateless (2026-07-28) servers have no GET stream; without a session the upstream says so.
        Method::GET => forward(state, &service, &agent, Method::GET, &parts.headers, None, Awaiting::Nothing).await,
        Method::DELETE => {
            let response =
                forward(state, &service, &agent, Method::DELETE, &parts.headers, None, Awaiting::Nothing).await?;
            if let (Some(session), true) = (&session, response.status().is_success()) {
                gateway.sessions.unbind(slug.as_str(), session);
            }
            Ok(response)
        }
        _ => Err(ApiError::MethodNotAllowed("MCP endpoints accept POST, GET and DELETE".into())),
    }
}

/// The `Mcp-Session-Id` header: visible ASCII only, as the specification requires (anything else
/// would slip past the session binding, which compares text).
fn session_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(MCP_SESSION_ID) else { return Ok(None) };
    let bytes = value.as_bytes();
    if bytes.is_empty() || !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(ApiError::InvalidRequest(
            "the Mcp-Session-Id header must be visible ASCII characters; send the session id the server gave".into(),
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
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
            let Intake { bytes, envelope, awaiting } =
                match intake::read_message(state, service, agent, headers, session, body).await? {
                    Ok(intake) => intake,
                    Err(response) => return Ok(response),
                };
            let sent = async {
                let message = Outgoing::from_body(&bytes)?;
                match session {
                    Some(session) => gateway.stdio.send(session, &agent.key_id, message, awaiting).await,
                    None if envelope.method() == Some("initialize") => {
                        // The operator's commands are checked again at spawn time: they may have
                        // changed since the service was registered.
                        let allowed =
                            launch::check(&state.config.stdio_commands, command, args, env).map_err(|refusal| {
                                tracing::warn!(service = slug, %refusal, "a stdio upstream is no longer allowed");
                                ApiError::Forbidden(format!(
                                    "the service {slug} cannot be started on this gateway; its publisher must fix \
                                     its upstream"
                                ))
                            })?;
                        let launch = stdio::Launch {
                            program: launch::command_line(allowed, args, &state.config.stdio_limits),
                            env: launch::environment(env),
                        };
                        let session = gateway.stdio.open(slug, agent, &launch)?;
                        gateway.sessions.bind(slug, &session, &agent.key_id);
                        let mut response = gateway.stdio.send(&session, &agent.key_id, message, awaiting).await?;
                        if let Ok(value) = HeaderValue::from_str(&session) {
                            response.headers_mut().insert(HeaderName::from_static(MCP_SESSION_ID), value);
                        }
                        Ok(response)
                    }
                    None => {
                        gateway.fail(awaiting, Outcome::UpstreamError).await;
                        Err(need_session())
                    }
                }
            };
            sent.await
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
    session: Option<&str>,
    body: Body,
) -> Result<Response, ApiError> {
    let Intake { bytes, envelope, awaiting } =
        match intake::read_message(state, service, agent, headers, session, body).await? {
            Ok(intake) => intake,
            Err(response) => return Ok(response),
        };
    let is_initialize = envelope.method() == Some("initialize");
    let response = forward(state, service, agent, Method::POST, headers, Some(bytes), awaiting).await?;
    if is_initialize && let Some(session) = response.headers().get(MCP_SESSION_ID).and_then(|v| v.to_str().ok()) {
        state.gateway.sessions.bind(service.slug.as_str(), session, &agent.key_id);
    }
    Ok(response)
}

impl Gateway {
    /// The service's upstream URL, parsed once.
    fn upstream_url(&self, service: &ServiceRecord) -> Result<reqwest::Url, ApiError> {
        let Upstream::Http { url } = &service.upstream else {
            return Err(ApiError::internal(std::io::Error::other("stdio service in the HTTP path")));
        };
        let checked = self.checked_url(url).ok_or_else(|| {
            ApiError::UpstreamUnavailable(format!("the service {} has an unusable upstream URL", service.slug))
        })?;
        checked.map_err(|refusal| {
            self.metrics.upstream_error(service.slug.as_str(), "refused");
            tracing::warn!(service = %service.slug, refusal = %refusal, "an upstream was refused by the egress policy");
            unreachable(service.slug.as_str())
        })
    }

    /// The service's upstream URL when it may be used, quietly (for a later cancellation: the
    /// request itself reports a refusal).
    fn allowed_url(&self, service: &ServiceRecord) -> Option<reqwest::Url> {
        let Upstream::Http { url } = &service.upstream else { return None };
        self.checked_url(url)?.ok()
    }

    /// `url` parsed and checked against the egress policy, once (`None`: not a URL).
    fn checked_url(&self, url: &str) -> Option<Result<reqwest::Url, crate::egress::Refusal>> {
        if let Some(checked) = self.urls.get(url) {
            return Some(checked.clone());
        }
        let parsed = reqwest::Url::parse(url).ok()?;
        let checked = self.egress.check_url(&parsed).map(|()| parsed);
        if self.urls.len() > 10_000 {
            self.urls.clear();
        }
        self.urls.insert(url.to_owned(), checked.clone());
        Some(checked)
    }

    /// Ends a request that failed before any answer: a free one is recorded with `outcome`, a paid
    /// one's hold is released (a result that turns up later is withheld).
    async fn fail(&self, awaiting: Awaiting, outcome: Outcome) {
        match awaiting {
            Awaiting::Free(mut watch) => watch.finish(outcome),
            Awaiting::Paid(ticket) => self.paid.fail(&ticket.upstream_id, outcome).await,
            Awaiting::Nothing => {}
        }
    }
}

/// Sends one request upstream and relays the answer.
async fn forward(
    state: &AppState,
    service: &ServiceRecord,
    agent: &AgentPrincipal,
    method: Method,
    headers: &HeaderMap,
    body: Option<bytes::Bytes>,
    awaiting: Awaiting,
) -> Result<Response, ApiError> {
    let gateway = &state.gateway;
    let url = match gateway.upstream_url(service) {
        Ok(url) => url,
        Err(err) => {
            gateway.fail(awaiting, Outcome::UpstreamError).await;
            return Err(err);
        }
    };
    let method_was_post = method == Method::POST;
    let mut request = gateway.client.request(method, url);
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    // A tool's `x-mcp-header` arguments ride as `Mcp-Param-*` headers (2026-07-28), which the
    // upstream checks against the body with the tool's schema: every one goes on, duplicates
    // included (for the upstream to refuse), up to a bound.
    for (name, value) in headers.iter().filter(|(name, _)| is_param_header(name.as_str())).take(MAX_PARAM_HEADERS) {
        request = request.header(name, value);
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
            gateway.fail(awaiting, Outcome::UpstreamError).await;
            return Err(ApiError::UpstreamTimeout(format!(
                "the service {service_name} did not answer within {} s; try again later",
                gateway.upstream_timeout.as_secs()
            )));
        }
        Ok(Err(err)) => {
            let kind = if err.is_connect() { "connect" } else { "request" };
            gateway.metrics.upstream_error(service_name, kind);
            tracing::warn!(service = service_name, error = %crate::redact::upstream_error(err), "upstream request failed");
            gateway.fail(awaiting, Outcome::UpstreamError).await;
            return Err(unreachable(service_name));
        }
        Ok(Ok(response)) => response,
    };
    let status = upstream.status();
    if matches!(status.as_u16(), 401 | 403 | 407) {
        // The upstream refused the gateway itself: an operator's problem, not the agent's key.
        gateway.metrics.upstream_error(service_name, "auth");
        gateway.fail(awaiting, Outcome::UpstreamError).await;
        return Err(ApiError::UpstreamUnavailable(format!(
            "the service {service_name} refused the gateway (HTTP {}); its operator must fix the upstream's credentials",
            status.as_u16()
        )));
    }
    if status.is_server_error() {
        gateway.metrics.upstream_error(service_name, "status_5xx");
    }
    // An error status answers no call: the call ends here (a paid call's hold is released, and any
    // paid response in the body is withheld, as on every stream).
    let awaiting = if status.is_success() {
        awaiting
    } else {
        gateway.fail(awaiting, Outcome::UpstreamError).await;
        Awaiting::Nothing
    };
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
    // A paid call's id and price, for the answer should its result be withheld.
    let paid = match &awaiting {
        Awaiting::Paid(ticket) => Some(ticket.clone()),
        Awaiting::Free(_) | Awaiting::Nothing => None,
    };
    // A paid JSON answer is sent only once its charge is captured: its head waits with it.
    let whole = !is_sse && paid.is_some();
    // A POST's answer must keep coming; a GET stream may rightly be quiet for long.
    let idle = (method_was_post).then_some(gateway.upstream_idle);
    let body = relay::upstream_body(upstream, idle);
    let relay = if is_sse {
        response = response.header("x-accel-buffering", "no");
        sse::relay_sse(body, awaiting, gateway.paid.clone())
    } else {
        relay::relay_json(body, awaiting, gateway.paid.clone())
    };
    match relay::body_of(relay, whole).await {
        Ok(body) => response.body(body).map_err(ApiError::internal),
        Err(err) => withheld(state, service, headers, paid.as_ref(), &err),
    }
}

/// The answer to a call whose response failed before anything of it was sent: a paid result was
/// withheld (its charge could not be captured, or the answer did not answer the call; nothing was
/// charged), or the upstream's body broke off at once.
fn withheld(
    state: &AppState,
    service: &ServiceRecord,
    headers: &HeaderMap,
    paid: Option<&PaidTicket>,
    err: &std::io::Error,
) -> Result<Response, ApiError> {
    let client_id = paid.map(|ticket| &ticket.client_id);
    match err.get_ref().and_then(|inner| inner.downcast_ref::<RelayError>()) {
        Some(RelayError::Charge(ChargeError::Expired)) => {
            let price = paid.map_or(Amount::ZERO, |ticket| ticket.price);
            let refusal = Refusal { price, available: Amount::ZERO, expiring: true };
            Ok(intake::allowance_exceeded(state, service, headers, client_id, refusal))
        }
        Some(RelayError::Charge(err)) => match client_id {
            Some(id) => Ok((StatusCode::OK, axum::Json(rpc::charge_failure(id, err))).into_response()),
            None => Err(ApiError::Unavailable(
                "this paid call could not be charged, so its result was withheld; nothing was charged, retry shortly"
                    .into(),
            )),
        },
        Some(RelayError::Unanswered | RelayError::Foreign) => Ok(rpc_error(
            StatusCode::BAD_GATEWAY,
            client_id,
            rpc::INTERNAL_ERROR,
            format!(
                "the service {} sent an answer that does not answer this call, so it was withheld; nothing was \
                 charged, try again later",
                service.slug
            ),
        )),
        Some(RelayError::TooLarge) => Err(ApiError::UpstreamUnavailable(format!(
            "the service {}'s answer to this paid call is too large to be metered, so it was withheld; nothing was charged",
            service.slug
        ))),
        Some(RelayError::Upstream(_)) | None => Err(ApiError::UpstreamUnavailable(format!(
            "the answer of the service {} broke off; try again later",
            service.slug
        ))),
    }
}

#[cfg(test)]
mod session_header_tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any header value is either a session id of visible ASCII, read back exactly, or a 400;
        /// never a panic, never a lossy id.
        #[test]
        fn session_ids_are_visible_ascii_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut headers = HeaderMap::new();
            let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()) };
            headers.insert(MCP_SESSION_ID, value);
            match session_of(&headers) {
                Ok(Some(id)) => {
                    prop_assert_eq!(id.as_bytes(), bytes.as_slice());
                    prop_assert!(bytes.iter().all(|b| (0x21..=0x7e).contains(b)));
                }
                Ok(None) => prop_assert!(false, "a present header is never absent"),
                Err(err) => prop_assert_eq!(err.status(), StatusCode::BAD_REQUEST),
            }
        }
    }
}
