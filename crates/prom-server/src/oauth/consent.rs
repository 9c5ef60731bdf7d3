//! The authorization endpoint and the consent page.
//!
//! `GET /oauth/authorize` checks the request; a client that cannot be trusted with a redirect
//! (unknown, or a redirect URI it did not register) is told so on a page and never redirected;
//! other mistakes go back to the client as `error=…`. A sound request continues at
//! `/app/connect` with the same parameters, a dashboard page (sign-in first if needed) where a
//! person who may mint keys (owner or admin) reads who asks for what — the client and where its
//! metadata came from, the service and its prices — and sets the spend cap and how long the
//! permission lasts. Allow makes the grant and sends a one-time code back; Deny sends
//! `access_denied`. The form re-checks everything: nothing of the request is kept in between.

use askama::Template;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use prom_core::access::Role;
use prom_core::id::{GrantId, KeyId};
use prom_core::money::Amount;
use prom_core::oauth::{CODE_PREFIX, ClientSource, NewCode, NewGrant, OAuthClient, OAuthSecret};
use prom_core::service::ServiceRecord;
use prom_core::time::Timestamp;
use reqwest::Url;
use serde::Deserialize;

use super::clients::{redirect_allowed, resolve};
use super::{CODE_TTL, SCOPE, base_url, resource_of};
use crate::dashboard::viewer::{Posted, Viewer};
use crate::dashboard::{Chrome, Nav, PageError, render_status};
use crate::state::AppState;

/// Longest a grant may last, in days.
const MAX_DAYS: u32 = 365;
const DEFAULT_DAYS: u32 = 30;

pub fn routes() -> Router<AppState> {
    Router::new().route("/connect", get(consent_page).post(decide))
}

/// The parameters of an authorization request.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuthRequest {
    #[serde(default)]
    pub response_type: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub redirect_uri: String,
    #[serde(default)]
    pub code_challenge: String,
    #[serde(default)]
    pub code_challenge_method: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub scope: Option<String>,
}

/// Why a request fails.
enum Failure {
    /// Shown on a page: the redirect URI cannot be trusted.
    Page(String),
    /// Sent back to the client's redirect URI.
    Redirect { to: String, error: &'static str, description: String, state: Option<String> },
}

/// A request that passed every check.
struct Checked {
    client: OAuthClient,
    service: std::sync::Arc<ServiceRecord>,
    request: AuthRequest,
}

fn parse_query(raw: Option<&str>) -> Result<AuthRequest, String> {
    super::parse_once(raw.unwrap_or_default().as_bytes())
}

async fn check(state: &AppState, headers: &HeaderMap, request: AuthRequest) -> Result<Checked, Failure> {
    if request.client_id.is_empty() {
        return Err(Failure::Page("the app did not say who it is (no client_id); start again from the app".into()));
    }
    let client = resolve(state, &request.client_id).await.map_err(Failure::Page)?;
    if request.redirect_uri.is_empty() || !redirect_allowed(&client, &request.redirect_uri) {
        return Err(Failure::Page(format!(
            "{} asked to send you back to an address it did not register ({:?}), so this request was stopped \
             here: it may not come from that app",
            client.name, request.redirect_uri
        )));
    }
    let back = |error: &'static str, description: String| Failure::Redirect {
        to: request.redirect_uri.clone(),
        error,
        description,
        state: request.state.clone(),
    };
    if request.response_type != "code" {
        return Err(back("unsupported_response_type", "only response_type=code is supported".into()));
    }
    if request.code_challenge.is_empty() {
        return Err(back(
            "invalid_request",
            "PKCE is required: send code_challenge with code_challenge_method=S256".into(),
        ));
    }
    if request.code_challenge_method != "S256" {
        return Err(back(
            "invalid_request",
            format!("code_challenge_method {:?} is not supported; use S256", request.code_challenge_method),
        ));
    }
    let challenge_ok = (43..=128).contains(&request.code_challenge.len())
        && request.code_challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !challenge_ok {
        return Err(back("invalid_request", "code_challenge must be the base64url SHA-256 of the verifier".into()));
    }
    if let Some(scope) = request.scope.as_deref()
        && scope.split(' ').any(|s| !s.is_empty() && s != SCOPE)
    {
        return Err(back("invalid_scope", format!("the only scope is {SCOPE}")));
    }
    if request.resource.is_empty() {
        return Err(back(
            "invalid_request",
            "resource is required (RFC 8707): the MCP URL of the service, like BASE/mcp/demo".into(),
        ));
    }
    let base = base_url(state, headers);
    let prefix = format!("{base}/mcp/");
    let slug = request.resource.strip_prefix(&prefix).unwrap_or_default();
    let service = match prom_core::service::ServiceSlug::parse(slug) {
        Ok(slug) => state.services.get(&slug).await.ok().flatten(),
        Err(_) => None,
    };
    let Some(service) = service.filter(|s| resource_of(&base, s.slug.as_str()) == request.resource) else {
        return Err(back(
            "invalid_target",
            format!("{:?} is not a service of this server; use {prefix}<service>", request.resource),
        ));
    };
    Ok(Checked { client, service, request })
}

/// Where a finished request goes: the client's redirect URI with `params`, `state` and `iss`.
fn back_to_client(redirect_uri: &str, params: &[(&str, &str)], state: Option<&str>, iss: &str) -> Response {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return error_page(StatusCode::BAD_REQUEST, "the app's redirect address is not a URL".into());
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", iss);
    }
    let mut response = Redirect::to(url.as_str()).into_response();
    // The browser follows this redirect from a form post: the page's form-action allowed it.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn failure_response(failure: Failure, iss: &str) -> Response {
    match failure {
        Failure::Page(message) => error_page(StatusCode::BAD_REQUEST, message),
        Failure::Redirect { to, error, description, state } => {
            back_to_client(&to, &[("error", error), ("error_description", &description)], state.as_deref(), iss)
        }
    }
}

#[derive(Template)]
#[template(path = "oauth_error.html")]
struct ErrorPage {
    message: String,
}

fn error_page(status: StatusCode, message: String) -> Response {
    render_status(status, &ErrorPage { message })
}

/// `GET /oauth/authorize`.
pub async fn authorize(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let iss = base_url(&state, &headers);
    let request = match parse_query(query.as_deref()) {
        Ok(request) => request,
        Err(message) => return error_page(StatusCode::BAD_REQUEST, message),
    };
    match check(&state, &headers, request).await {
        Ok(_) => Redirect::to(&format!("/app/connect?{}", query.unwrap_or_default())).into_response(),
        Err(failure) => failure_response(failure, &iss),
    }
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage {
    chrome: Chrome,
    client_name: String,
    client_id: String,
    source: &'static str,
    redirect_host: String,
    service_name: String,
    service_slug: String,
    prices: Vec<(String, String)>,
    request: AuthRequest,
    cap: String,
    days: String,
    may_grant: bool,
    error: Option<String>,
}

fn source_words(source: ClientSource) -> &'static str {
    match source {
        ClientSource::Registered => "registered itself with this server: nobody has checked who made it",
        ClientSource::MetadataDocument => "described by the metadata document at its client ID address",
        ClientSource::Configured => "listed by this server's operator",
    }
}

fn consent_page_for(viewer: &Viewer, checked: &Checked, cap: String, days: String, error: Option<String>) -> Response {
    let redirect_host = Url::parse(&checked.request.redirect_uri)
        .ok()
        .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default()))
        .unwrap_or_default();
    let mut prices: Vec<(String, String)> =
        checked.service.prices.iter().map(|(tool, price)| (tool.clone(), price.to_string())).collect();
    prices.sort();
    let page = ConsentPage {
        chrome: viewer.chrome(Nav::None, format!("Connect {}", checked.client.name)),
        client_name: checked.client.name.clone(),
        client_id: checked.client.id.clone(),
        source: source_words(checked.client.source),
        redirect_host,
        service_name: checked.service.name.clone(),
        service_slug: checked.service.slug.to_string(),
        prices,
        request: checked.request.clone(),
        cap,
        days,
        may_grant: viewer.user().session.role.includes(Role::Admin),
        error,
    };
    let status = if page.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let mut response = render_status(status, &page);
    // The form posts here and is then redirected to the app: allow that one destination.
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
        form_action_source(&checked.request.redirect_uri)
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// The CSP source that allows redirecting to `redirect_uri`: its origin, or its scheme.
fn form_action_source(redirect_uri: &str) -> String {
    match Url::parse(redirect_uri) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url.origin().ascii_serialization(),
        Ok(url) => format!("{}:", url.scheme()),
        Err(_) => String::new(),
    }
}

/// `GET /app/connect`: the consent page.
async fn consent_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    RawQuery(query): RawQuery,
) -> Response {
    let iss = base_url(&state, &headers);
    let request = match parse_query(query.as_deref()) {
        Ok(request) => request,
        Err(message) => return error_page(StatusCode::BAD_REQUEST, message),
    };
    match check(&state, &headers, request).await {
        Ok(checked) => consent_page_for(&viewer, &checked, String::new(), DEFAULT_DAYS.to_string(), None),
        Err(failure) => failure_response(failure, &iss),
    }
}

#[derive(Debug, Deserialize)]
struct Decision {
    #[serde(flatten)]
    request: AuthRequest,
    #[serde(default)]
    cap: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    decision: String,
}

/// `POST /app/connect`: the person's answer.
async fn decide(State(state): State<AppState>, headers: HeaderMap, posted: Posted<Decision>) -> Response {
    let Posted { viewer, form } = posted;
    let iss = base_url(&state, &headers);
    let checked = match check(&state, &headers, form.request).await {
        Ok(checked) => checked,
        Err(failure) => return failure_response(failure, &iss),
    };
    let request = &checked.request;
    if form.decision != "allow" {
        let description = "the person did not allow this app to connect";
        return back_to_client(
            &request.redirect_uri,
            &[("error", "access_denied"), ("error_description", description)],
            request.state.as_deref(),
            &iss,
        );
    }
    if let Err(err) = viewer.principal.require(Role::Admin) {
        return consent_page_for(&viewer, &checked, form.cap, form.days, Some(err.to_string()));
    }
    let cap = match crate::dashboard::store::parse_amount(&form.cap) {
        Ok(cap) => cap,
        Err(err) => return consent_page_for(&viewer, &checked, form.cap, form.days, Some(err.to_string())),
    };
    let days = match form.days.trim().parse::<u32>() {
        Ok(days) if (1..=MAX_DAYS).contains(&days) => days,
        _ => {
            let message = format!("enter how many days the permission lasts: a whole number from 1 to {MAX_DAYS}");
            return consent_page_for(&viewer, &checked, form.cap, form.days, Some(message));
        }
    };
    match grant(&state, &viewer, &checked, cap, days).await {
        Ok(code) => back_to_client(&request.redirect_uri, &[("code", code.expose())], request.state.as_deref(), &iss),
        Err(err) => PageError::from(err).into_response(),
    }
}

/// Makes the grant and its code.
async fn grant(
    state: &AppState,
    viewer: &Viewer,
    checked: &Checked,
    cap: Amount,
    days: u32,
) -> Result<OAuthSecret, crate::error::ApiError> {
    let now = Timestamp::now();
    let session = &viewer.user().session;
    let grant = NewGrant {
        id: GrantId::new(),
        key_id: KeyId::new(),
        tenant_id: session.tenant.id.clone(),
        user_id: session.user_id.clone(),
        client_id: checked.client.id.clone(),
        client_name: checked.client.name.clone(),
        service: checked.service.slug.clone(),
        resource: checked.request.resource.clone(),
        scopes: vec![SCOPE.to_owned()],
        spend_cap: cap,
        expires_at: now.plus_seconds(u64::from(days) * 86_400),
        created_at: now,
    };
    let code = OAuthSecret::mint(CODE_PREFIX);
    let stored = NewCode {
        digest: code.digest(),
        grant_id: grant.id.clone(),
        client_id: checked.client.id.clone(),
        redirect_uri: checked.request.redirect_uri.clone(),
        code_challenge: checked.request.code_challenge.clone(),
        created_at: now,
        expires_at: now.plus_seconds(CODE_TTL.as_secs()),
    };
    let ctx = viewer.principal.audit_context(&viewer.meta);
    state.store.create_grant(&grant, &stored, &ctx).await?;
    Ok(code)
}
