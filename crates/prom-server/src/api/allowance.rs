//! `GET|PUT /v1/services/{slug}/allowance`: how much a tenant lets the platform spend on a
//! service, with ICRC-2 semantics. `PUT` hands the approval to the money module
//! (`money::Allowances::approve`): the ledger first (on the embedded ledger the server signs for
//! the tenant's dev wallet), then the budget that holds draw on, then a new cut of the wallet.
//! Funds stay in the tenant's wallet until a charge is settled.

use axum::Json;
use axum::extract::{Path, State};
use prom_core::access::Role;
use prom_core::audit::{AuditAction, AuditTarget, NewAuditEvent};
use prom_core::charge::Budget;
use prom_core::ledger::AllowanceArgs;
use prom_core::money::Amount;
use prom_core::service::{ServiceRecord, ServiceSlug};
use prom_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::ApiJson;
use crate::auth::{ClientMeta, Principal};
use crate::billing::{platform_spender, tenant_wallet};
use crate::error::{ApiError, ErrorBody};
use crate::money::{Approval, ApprovalError, ChargeError};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAllowanceRequest {
    /// The new allowance (a decimal string in the token's smallest unit). It replaces the current
    /// one; it is not added to it.
    #[schema(value_type = String, pattern = r"^[0-9]{1,38}$")]
    pub amount: Amount,
    /// When the allowance ends (RFC 3339); none by default.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Apply only if the current allowance is exactly this (compare-and-swap).
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = r"^[0-9]{1,38}$")]
    pub expected_allowance: Option<Amount>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AllowanceView {
    pub service: String,
    /// What was last approved.
    pub approved: String,
    /// Held for paid calls in flight.
    pub held: String,
    /// Captured, not yet settled to the ledger.
    pub unsettled: String,
    /// Settled to the ledger since the last approval.
    pub settled: String,
    /// What new paid calls may still use (nothing from `paid_calls_stop_at` on).
    pub available: String,
    pub expires_at: Option<String>,
    /// When new paid calls stop, a margin before `expires_at`, so that every charge is settled on
    /// the ledger while the allowance stands.
    pub paid_calls_stop_at: Option<String>,
    /// The allowance as the ledger reports it now (approved minus what settlements consumed).
    pub ledger_allowance: String,
    /// The tenant's wallet balance on the ledger.
    pub wallet_balance: String,
    /// This service's slice of the wallet: what its held and unsettled calls may add up to. The
    /// wallet's balance, less one ledger fee per service that settles, is shared out among the
    /// tenant's services (each within its ledger allowance left); it is cut again from a fresh
    /// read every settlement round and after every approval. `null` until first cut. Paid calls
    /// stop at it even when the approval leaves more: approving more than the wallet holds is
    /// allowed, spending it is not.
    pub ledger_cap: Option<String>,
    /// Why new paid calls are stopped, when they are: `expiry` (the allowance expires within the
    /// margin), `wallet` (the ledger cannot pay more: fund the wallet, or approve again on the
    /// ledger), or `allowance` (the approval is used up: raise it). `null` while calls may go on.
    pub stopped_by: Option<String>,
    /// What each priced tool costs this tenant now: the price its approval covers, or less if the
    /// price fell since.
    pub prices_in_force: std::collections::BTreeMap<String, String>,
    /// Prices raised (or tools priced) since the approval: they apply once the tenant approves
    /// again; until then the tool costs `approved` (a tool that was free is refused).
    pub pending_increases: Vec<PendingIncrease>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PendingIncrease {
    pub tool: String,
    /// The price the approval covers; `null` when the tool was free when it was approved.
    pub approved: Option<String>,
    /// The publisher's price now.
    pub price: String,
}

async fn service(state: &AppState, slug: &str) -> Result<std::sync::Arc<ServiceRecord>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no service named {slug:?}; list services with GET /v1/services"));
    let slug = ServiceSlug::parse(slug).map_err(|_| not_found())?;
    state.services.get(&slug).await?.ok_or_else(not_found)
}

fn ledger_unavailable(err: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %err, "ledger call failed");
    ApiError::UpstreamUnavailable("the ledger cannot be reached right now; nothing was changed, retry later".into())
}

fn book_unavailable(err: ChargeError) -> ApiError {
    tracing::warn!(error = %err, "the charge book cannot answer");
    ApiError::Unavailable("allowances cannot be read right now; retry shortly".into())
}

async fn view(state: &AppState, budget: &Budget) -> Result<AllowanceView, ApiError> {
    let ledger = state.ledger.as_ref();
    let wallet = tenant_wallet(&budget.tenant_id);
    let on_ledger = ledger
        .allowance(AllowanceArgs { account: wallet.clone(), spender: platform_spender(&budget.service) })
        .await
        .map_err(ledger_unavailable)?;
    let balance = ledger.balance_of(&wallet).await.map_err(ledger_unavailable)?;
    let now = Timestamp::now();
    let margins = state.charges.margins();
    let available = budget.available(now, margins).map_err(ApiError::internal)?;
    let stopped_by = if budget.expiring(now, margins) {
        Some("expiry")
    } else if available > Amount::ZERO {
        None
    } else {
        let open = budget.open().map_err(ApiError::internal)?;
        match budget.ledger_cap {
            Some(cap) if cap.checked_sub(open).unwrap_or(Amount::ZERO) == Amount::ZERO => Some("wallet"),
            _ => Some("allowance"),
        }
    };
    let current = state.services.get(&budget.service).await?.map(|service| service.prices.clone()).unwrap_or_default();
    let mut prices_in_force = std::collections::BTreeMap::new();
    let mut pending_increases = Vec::new();
    for (tool, price) in &current {
        let in_force = budget.price_in_force(tool, *price);
        if let Some(in_force) = in_force {
            prices_in_force.insert(tool.clone(), in_force.to_string());
        }
        if in_force != Some(*price) {
            pending_increases.push(PendingIncrease {
                tool: tool.clone(),
                approved: in_force.map(|amount| amount.to_string()),
                price: price.to_string(),
            });
        }
    }
    Ok(AllowanceView {
        service: budget.service.to_string(),
        approved: budget.approved.to_string(),
        held: budget.held.to_string(),
        unsettled: budget.unsettled.to_string(),
        settled: budget.settled.to_string(),
        available: available.to_string(),
        expires_at: budget.expires_at.map(|at| at.to_string()),
        paid_calls_stop_at: budget.expires_at.map(|at| at.plus_millis(-state.charges.margins().hold_ms).to_string()),
        ledger_allowance: on_ledger.allowance.to_string(),
        wallet_balance: balance.to_string(),
        ledger_cap: budget.ledger_cap.map(|cap| cap.to_string()),
        stopped_by: stopped_by.map(str::to_owned),
        prices_in_force,
        pending_increases,
    })
}

/// The caller's tenant's allowance for a service.
#[utoipa::path(get, path = "/v1/services/{slug}/allowance", security(("session" = [])), params(("slug" = String, Path)),
    responses(
        (status = 200, body = AllowanceView),
        (status = 404, body = ErrorBody, description = "NOT_FOUND: no such service"),
    ))]
pub async fn get_allowance(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
) -> Result<Json<AllowanceView>, ApiError> {
    principal.require(Role::Member)?;
    let service = service(&state, &slug).await?;
    let budget = state.charges.budget(principal.tenant_id(), &service.slug).await.map_err(book_unavailable)?;
    Ok(Json(view(&state, &budget).await?))
}

/// Approves (replaces) the caller's tenant's allowance for a service.
#[utoipa::path(put, path = "/v1/services/{slug}/allowance", request_body = SetAllowanceRequest,
    security(("session" = [])), params(("slug" = String, Path)),
    responses(
        (status = 200, body = AllowanceView, description = "Approved; paid calls may use it at once"),
        (status = 400, body = ErrorBody, description = "INVALID_REQUEST: bad amount or date, wallet cannot pay the approval fee"),
        (status = 403, body = ErrorBody, description = "FORBIDDEN: needs owner or admin"),
        (status = 404, body = ErrorBody, description = "NOT_FOUND: no such service"),
        (status = 409, body = ErrorBody, description = "CONFLICT: expires_at is past or within the hold margin, expected_allowance differs from the current allowance, or the amount is below what paid calls hold and have not settled yet"),
    ))]
pub async fn set_allowance(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path(slug): Path<String>,
    ApiJson(request): ApiJson<SetAllowanceRequest>,
) -> Result<Json<AllowanceView>, ApiError> {
    principal.require(Role::Admin)?;
    let service = service(&state, &slug).await?;
    let expires_at = match request.expires_at.as_deref() {
        None => None,
        Some(raw) => Some(Timestamp::parse_rfc3339(raw).ok_or_else(|| {
            ApiError::InvalidRequest("expires_at must be an RFC 3339 time like 2026-12-31T23:59:59Z".into())
        })?),
    };
    let audit = NewAuditEvent {
        at: Timestamp::now(),
        tenant_id: Some(principal.tenant_id().clone()),
        action: AuditAction::AllowanceApprove,
        context: principal.audit_context(&meta),
        target: Some(AuditTarget::service(service.slug.as_str(), &service.name)),
        details: json!({ "amount": request.amount.to_string(), "expires_at": expires_at.map(|at| at.to_string()) }),
    };
    let approval = Approval {
        tenant: principal.tenant_id().clone(),
        service: service.clone(),
        amount: request.amount,
        expires_at,
        expected_allowance: request.expected_allowance,
        audit,
    };
    let budget = state.allowances.approve(approval).await.map_err(|err| {
        let message = err.to_string();
        match err {
            ApprovalError::InsufficientFunds { .. } => ApiError::InvalidRequest(message),
            // An expiry is checked against the clock, which the request cannot know: a conflict.
            ApprovalError::ExpiresTooSoon { .. }
            | ApprovalError::Expired
            | ApprovalError::BelowCommitted { .. }
            | ApprovalError::AllowanceChanged { .. } => ApiError::Conflict(message),
            ApprovalError::LedgerRefused(_) | ApprovalError::LedgerUnavailable => {
                ApiError::UpstreamUnavailable(message)
            }
            ApprovalError::Book(err) => book_unavailable(err),
            ApprovalError::Store(err) => ApiError::from(err),
        }
    })?;
    Ok(Json(view(&state, &budget).await?))
}
