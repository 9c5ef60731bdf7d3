//! The services registry (the App Store): publish a paid MCP service, list and read services,
//! change and remove them.
//!
//! Anyone authenticated may browse, agents included: they need the list to find what to connect
//! to. Only owners and admins of the publishing tenant change a service; to every other tenant its
//! slug is "not found" for changes. The upstream is shown only to signed-in owners and admins of
//! the publishing tenant, and masked (userinfo, query values, environment values), since URLs and
//! stdio environments may hold the provider's credentials.
//! A stdio upstream is a program this host runs, so only commands the operator listed in
//! `stdio_commands` are accepted, with only the arguments and environment names it allows.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use prom_core::access::Role;
use prom_core::id::{ServiceId, TenantId};
use prom_core::money::{Amount, AmountError};
use prom_core::service::{Prices, ServiceRecord, ServiceSlug, Upstream};
use prom_core::store::{NewService, ServicePatch, StoreError};
use prom_core::time::Timestamp;
use reqwest::Url;

use super::ApiJson;
use super::views::{CreateServiceRequest, ServiceListView, ServiceView, UpdateServiceRequest, UpstreamSpec};
use crate::auth::{ClientMeta, Principal};
use crate::config::ServerConfig;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

const MAX_NAME_CHARS: usize = 100;
const MAX_DESCRIPTION_CHARS: usize = 2000;
const MAX_URL_CHARS: usize = 2048;
const MAX_TOOL_CHARS: usize = 128;
const MAX_PRICES: usize = 1000;
const MAX_ARGS: usize = 64;
const MAX_ENV: usize = 64;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidRequest(message.into())
}

/// `raw` as a caller may see it again in a message: short, and quoted.
fn shown(raw: &str) -> String {
    format!("{:?}", raw.chars().take(40).collect::<String>())
}

fn no_such_service(raw: &str) -> ApiError {
    ApiError::NotFound(format!("no service {}; list services with GET /v1/services", shown(raw)))
}

fn not_yours(raw: &str) -> ApiError {
    ApiError::NotFound(format!(
        "no service {} published by your tenant; list services with GET /v1/services",
        shown(raw)
    ))
}

fn parse_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(invalid(format!("name must be 1 to {MAX_NAME_CHARS} characters, without control characters")));
    }
    Ok(name.to_owned())
}

fn parse_description(raw: &str) -> Result<String, ApiError> {
    let description = raw.trim();
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(invalid(format!("description must be at most {MAX_DESCRIPTION_CHARS} characters")));
    }
    Ok(description.to_owned())
}

fn parse_url(raw: &str) -> Result<String, ApiError> {
    // The URL itself is never echoed: it may carry the provider's credentials.
    let bad = || {
        invalid(
            "upstream.url must be an absolute http:// or https:// URL with a host, like https://mcp.example.com/mcp",
        )
    };
    if raw.len() > MAX_URL_CHARS {
        return Err(invalid(format!("upstream.url must be at most {MAX_URL_CHARS} characters")));
    }
    let url = Url::parse(raw).map_err(|_| bad())?;
    let host = url.host_str().is_some_and(|host| !host.is_empty());
    if !matches!(url.scheme(), "http" | "https") || !host {
        return Err(bad());
    }
    Ok(raw.to_owned())
}

fn parse_upstream(spec: UpstreamSpec, config: &ServerConfig) -> Result<Upstream, ApiError> {
    let UpstreamSpec { url, command, args, env } = spec;
    match (url, command) {
        (Some(url), None) => {
            // Empty `args`/`env` say nothing: only ones with something in them are out of place.
            if args.is_some_and(|args| !args.is_empty()) || env.is_some_and(|env| !env.is_empty()) {
                return Err(invalid("upstream.args and upstream.env go with upstream.command, not upstream.url"));
            }
            Ok(Upstream::Http { url: parse_url(&url)? })
        }
        (None, Some(command)) => parse_stdio(command, args.unwrap_or_default(), env.unwrap_or_default(), config),
        (Some(_), Some(_)) => Err(invalid("upstream has both url and command; send one")),
        (None, None) => Err(invalid(
            "upstream needs {\"url\": \"https://…\"} (MCP Streamable HTTP) or {\"command\": …} (MCP stdio)",
        )),
    }
}

/// An HTTP upstream must be somewhere the gateway may connect to (the egress policy): the
/// publisher is told what was refused and how an operator allows it.
async fn check_egress(state: &AppState, upstream: Upstream) -> Result<Upstream, ApiError> {
    if let Upstream::Http { url } = &upstream {
        let parsed = Url::parse(url).map_err(|_| invalid("upstream.url is not a URL"))?;
        let gateway = &state.gateway;
        if let Err(refusal) = gateway.egress.check_registration(&parsed, &gateway.lookup).await {
            return Err(ApiError::Forbidden(format!("upstream.url is refused: {refusal}")));
        }
    }
    Ok(upstream)
}

fn parse_stdio(
    command: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    config: &ServerConfig,
) -> Result<Upstream, ApiError> {
    // Whether this server runs the command at all comes first: a publisher without it learns
    // that, not how its arguments would have been checked.
    if !config.stdio_commands.iter().any(|allowed| allowed.name == command) {
        let refusal = crate::gateway::launch::LaunchRefusal::UnknownCommand(command);
        return Err(ApiError::Forbidden(refusal.to_string()));
    }
    if command.is_empty() || command.contains('\0') {
        return Err(invalid("upstream.command must be a non-empty command without NUL bytes"));
    }
    if args.len() > MAX_ARGS || args.iter().any(|arg| arg.contains('\0')) {
        return Err(invalid(format!("upstream.args must be at most {MAX_ARGS} strings without NUL bytes")));
    }
    let bad_name = |name: &String| name.is_empty() || name.contains(['=', '\0']);
    if env.len() > MAX_ENV || env.iter().any(|(name, value)| bad_name(name) || value.contains('\0')) {
        return Err(invalid(format!(
            "upstream.env must be at most {MAX_ENV} variables; names are non-empty without `=`, and no NUL bytes"
        )));
    }
    // Running a program on this host is the operator's decision, not a tenant admin's.
    match crate::gateway::launch::check(&config.stdio_commands, &command, &args, &env) {
        Ok(_) => {}
        Err(refusal @ crate::gateway::launch::LaunchRefusal::UnknownCommand(_)) => {
            return Err(ApiError::Forbidden(refusal.to_string()));
        }
        Err(refusal) => return Err(invalid(refusal.to_string())),
    }
    Ok(Upstream::Stdio { command, args, env })
}

fn parse_prices(raw: BTreeMap<String, serde_json::Value>) -> Result<Prices, ApiError> {
    if raw.len() > MAX_PRICES {
        return Err(invalid(format!("at most {MAX_PRICES} tools may have a price")));
    }
    raw.into_iter()
        .map(|(tool, value)| {
            if tool.is_empty() || tool.chars().count() > MAX_TOOL_CHARS {
                return Err(invalid(format!("tool names in prices must be 1 to {MAX_TOOL_CHARS} characters")));
            }
            let amount = match &value {
                serde_json::Value::String(text) => text.parse::<Amount>().map_err(|err: AmountError| {
                    invalid(format!("the price of tool {} is not an amount: {err}", shown(&tool)))
                })?,
                serde_json::Value::Number(_) => {
                    return Err(invalid(format!(
                        "the price of tool {} is a JSON number; send it as a string of decimal digits in \
                         the token's smallest unit, like \"250\" (JSON numbers lose precision)",
                        shown(&tool)
                    )));
                }
                _ => {
                    return Err(invalid(format!(
                        "the price of tool {} must be a string of decimal digits, like \"250\"",
                        shown(&tool)
                    )));
                }
            };
            Ok((tool, amount))
        })
        .collect()
}

/// Maps "not found" of a change to the message for a service this tenant did not publish.
fn change_error(slug: &str) -> impl FnOnce(StoreError) -> ApiError + '_ {
    move |err| match err {
        StoreError::NotFound => not_yours(slug),
        other => other.into(),
    }
}

/// The slug of each publishing tenant among `records`.
async fn publishers(state: &AppState, records: &[ServiceRecord]) -> Result<HashMap<TenantId, String>, ApiError> {
    let mut slugs = HashMap::new();
    for record in records {
        if slugs.contains_key(&record.tenant_id) {
            continue;
        }
        let tenant = state.store.get_tenant(&record.tenant_id).await?.ok_or_else(|| {
            ApiError::internal(StoreError::Corrupt(format!("service {} has no publishing tenant", record.slug)))
        })?;
        slugs.insert(tenant.id, tenant.slug.to_string());
    }
    Ok(slugs)
}

async fn view_for(state: &AppState, principal: &Principal, record: &ServiceRecord) -> Result<ServiceView, ApiError> {
    let publishers = publishers(state, std::slice::from_ref(record)).await?;
    Ok(view(principal, record, &publishers))
}

fn view(principal: &Principal, record: &ServiceRecord, publishers: &HashMap<TenantId, String>) -> ServiceView {
    let publisher = publishers.get(&record.tenant_id).map_or("", String::as_str);
    // Agents, even the publisher's own, go through the gateway and never need the upstream; showing
    // it to them would hand an agent the provider's credentials and a way around metering. Members
    // cannot change the service, so they have no need of it either.
    let manages_it = matches!(principal, Principal::User(user) if user.session.role.includes(Role::Admin))
        && &record.tenant_id == principal.tenant_id();
    ServiceView::of(record, publisher, manages_it)
}

/// Publishes a service of the caller's tenant at `/mcp/{slug}`.
#[utoipa::path(post, path = "/v1/services", request_body = CreateServiceRequest, security(("session" = [])), responses(
    (status = 201, body = ServiceView, description = "Published"),
    (status = 400, body = ErrorBody, description = "INVALID_REQUEST: bad slug, name, description, upstream, price or charge_tool_errors"),
    (status = 401, body = ErrorBody, description = "TOKEN_MISSING or TOKEN_INVALID"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: needs owner or admin, or a stdio command not allowed"),
    (status = 409, body = ErrorBody, description = "CONFLICT: the slug is taken, or its deleted service is still owed money"),
))]
pub async fn create_service(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    ApiJson(request): ApiJson<CreateServiceRequest>,
) -> Result<(StatusCode, Json<ServiceView>), ApiError> {
    principal.require(Role::Admin)?;
    let slug = ServiceSlug::parse(&request.slug).map_err(|err| invalid(err.to_string()))?;
    // Calls of a deleted service of this slug still in flight (held in this process's memory;
    // the store checks what is held in the database, unsettled or pending).
    if state.charges.held_on(&slug) > Amount::ZERO {
        return Err(ApiError::Conflict(format!(
            "the slug {slug} belonged to a deleted service whose calls are still in flight; it is free once \
             they end and settle, or choose another slug"
        )));
    }
    let new = NewService {
        id: ServiceId::new(),
        tenant_id: principal.tenant_id().clone(),
        slug,
        name: parse_name(&request.name)?,
        description: parse_description(&request.description)?,
        upstream: check_egress(&state, parse_upstream(request.upstream, &state.config)?).await?,
        prices: parse_prices(request.prices)?,
        charge_tool_errors: request.charge_tool_errors,
        created_at: Timestamp::now(),
    };
    let record = state.store.create_service(new, &principal.audit_context(&meta)).await?;
    state.services.forget(&record.slug);
    // Allowances of an earlier service of the slug ended: holds must see that at once.
    if let Err(err) = state.allowances.service_changed(&record.slug).await {
        tracing::warn!(error = %err, service = %record.slug, "cannot reload budgets of a re-registered slug");
    }
    tracing::info!(service = %record.slug, tenant = %record.tenant_id, "service published");
    Ok((StatusCode::CREATED, Json(view_for(&state, &principal, &record).await?)))
}

/// Every published service, by slug.
#[utoipa::path(get, path = "/v1/services", security(("session" = []), ("api_key" = [])), responses(
    (status = 200, body = ServiceListView),
    (status = 401, body = ErrorBody, description = "TOKEN_MISSING or TOKEN_INVALID"),
))]
pub async fn list_services(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<ServiceListView>, ApiError> {
    let records = state.store.list_services().await?;
    let publishers = publishers(&state, &records).await?;
    Ok(Json(ServiceListView { services: records.iter().map(|r| view(&principal, r, &publishers)).collect() }))
}

/// One service.
#[utoipa::path(get, path = "/v1/services/{slug}", security(("session" = []), ("api_key" = [])),
    params(("slug" = String, Path)), responses(
    (status = 200, body = ServiceView),
    (status = 404, body = ErrorBody, description = "NOT_FOUND"),
))]
pub async fn get_service(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Json<ServiceView>, ApiError> {
    let slug = ServiceSlug::parse(&raw).map_err(|_| no_such_service(&raw))?;
    let record = state.store.get_service(&slug).await?.ok_or_else(|| no_such_service(&raw))?;
    Ok(Json(view_for(&state, &principal, &record).await?))
}

/// Changes a service of the caller's tenant. Fields left out stay; `prices` replaces all prices.
#[utoipa::path(patch, path = "/v1/services/{slug}", request_body = UpdateServiceRequest, security(("session" = [])),
    params(("slug" = String, Path)), responses(
    (status = 200, body = ServiceView),
    (status = 400, body = ErrorBody, description = "INVALID_REQUEST: bad name, description, upstream, price or charge_tool_errors"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: needs owner or admin, or a stdio command not allowed"),
    (status = 404, body = ErrorBody, description = "NOT_FOUND: no such service published by your tenant"),
))]
pub async fn update_service(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path(raw): Path<String>,
    ApiJson(request): ApiJson<UpdateServiceRequest>,
) -> Result<Json<ServiceView>, ApiError> {
    principal.require(Role::Admin)?;
    let slug = ServiceSlug::parse(&raw).map_err(|_| not_yours(&raw))?;
    let patch = ServicePatch {
        name: request.name.as_deref().map(parse_name).transpose()?,
        description: request.description.as_deref().map(parse_description).transpose()?,
        upstream: match request.upstream {
            Some(spec) => Some(check_egress(&state, parse_upstream(spec, &state.config)?).await?),
            None => None,
        },
        prices: request.prices.map(parse_prices).transpose()?,
        charge_tool_errors: request.charge_tool_errors,
    };
    let record = state
        .store
        .update_service(principal.tenant_id(), &slug, patch, Timestamp::now(), &principal.audit_context(&meta))
        .await
        .map_err(change_error(&raw))?;
    state.services.forget(&slug);
    tracing::info!(service = %slug, tenant = %record.tenant_id, "service updated");
    Ok(Json(view_for(&state, &principal, &record).await?))
}

/// Removes a service of the caller's tenant: `/mcp/{slug}` stops at once and the slug is free again.
#[utoipa::path(delete, path = "/v1/services/{slug}", security(("session" = [])), params(("slug" = String, Path)),
    responses(
    (status = 204, description = "Deleted"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: needs owner or admin"),
    (status = 404, body = ErrorBody, description = "NOT_FOUND: no such service published by your tenant"),
))]
pub async fn delete_service(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    let slug = ServiceSlug::parse(&raw).map_err(|_| not_yours(&raw))?;
    state
        .store
        .delete_service(principal.tenant_id(), &slug, Timestamp::now(), &principal.audit_context(&meta))
        .await
        .map_err(change_error(&raw))?;
    state.services.forget(&slug);
    // Its allowances were closed: holds must see that at once.
    if let Err(err) = state.allowances.service_changed(&slug).await {
        tracing::warn!(error = %err, service = %slug, "cannot reload the closed budgets of a deleted service");
    }
    tracing::info!(service = %slug, tenant = %principal.tenant_id(), "service deleted");
    Ok(StatusCode::NO_CONTENT)
}
