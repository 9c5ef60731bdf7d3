//! A POSTed MCP message, from its bytes to what goes upstream: the envelope checked, the request's
//! id claimed in its session, its metering prepared, and — for a paid tool — its price held and
//! the call registered under a gateway-made id, before anything reaches the upstream. A hold the
//! allowance cannot cover is answered here with `ALLOWANCE_EXCEEDED`.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use prom_core::charge::{ChargeOp, ChargeOpResult, NewCharge};
use prom_core::id::ChargeId;
use prom_core::money::Amount;
use prom_core::service::{ServiceRecord, Upstream};
use prom_core::time::Timestamp;
use serde_json::{Value, json};

use super::envelope::{Envelope, EnvelopeError, Outcome};
use super::ids::{RpcId, with_id};
use super::paid::{CallScope, CancelRoute};
use super::relay::{Awaiting, PaidTicket};
use super::watch::{HeldCharge, Watch};
use super::{MCP_PROTOCOL_VERSION, rpc, rpc_error};
use crate::auth::AgentPrincipal;
use crate::error::ApiError;
use crate::origin::base_url;
use crate::state::AppState;
use crate::usage::KeyUser;

/// A message ready to go upstream.
#[derive(Debug)]
pub struct Intake {
    /// What goes upstream (a paid call's under its gateway-made id).
    pub bytes: Bytes,
    pub envelope: Envelope,
    pub awaiting: Awaiting,
}

/// Reads a POSTed message, checks it, and prepares its metering (and a paid call's hold). `Err`
/// of the inner result is an answer for the agent already (a JSON-RPC error).
pub async fn read_message(
    state: &AppState,
    service: &ServiceRecord,
    agent: &AgentPrincipal,
    headers: &HeaderMap,
    session: Option<&str>,
    body: Body,
) -> Result<Result<Intake, Response>, ApiError> {
    let gateway = &state.gateway;
    let bytes = axum::body::to_bytes(body, gateway.max_request_bytes).await.map_err(|err| {
        let too_large = ApiError::PayloadTooLarge(format!(
            "MCP messages through the gateway are at most {} bytes",
            gateway.max_request_bytes
        ));
        crate::listen::body_error(&err, too_large)
    })?;
    let envelope = match Envelope::parse(&bytes) {
        Ok(envelope) => envelope,
        Err(err @ EnvelopeError::NotJson(_)) => {
            return Ok(Err(rpc_error(StatusCode::BAD_REQUEST, None, rpc::PARSE_ERROR, err.to_string())));
        }
        Err(err) => return Ok(Err(rpc_error(StatusCode::BAD_REQUEST, None, rpc::INVALID_REQUEST, err.to_string()))),
    };
    let modern =
        headers.get(MCP_PROTOCOL_VERSION).and_then(|v| v.to_str().ok()).is_some_and(|version| version >= "2026-07-28");
    if let Err(message) = envelope.check_headers(headers, modern) {
        return Ok(Err(rpc_error(StatusCode::BAD_REQUEST, envelope.request_id(), rpc::HEADER_MISMATCH, message)));
    }
    let scope = CallScope {
        service: service.slug.to_string(),
        key_id: agent.key_id.clone(),
        session: session.map(str::to_owned),
    };
    let Envelope::Request { id, method, .. } = &envelope else {
        let bytes = cancel_by_upstream_id(state, &scope, &envelope, bytes);
        return Ok(Ok(Intake { bytes, envelope, awaiting: Awaiting::Nothing }));
    };
    let pending = match (session, RpcId::of(id)) {
        (Some(session), Some(rpc_id)) => match gateway.pending.claim(service.slug.as_str(), session, rpc_id) {
            Some(claim) => Some(claim),
            None => {
                let message =
                    format!("the id {id} is still pending in this session; give each request an id of its own");
                return Ok(Err(rpc_error(StatusCode::BAD_REQUEST, Some(id), rpc::INVALID_REQUEST, message)));
            }
        },
        _ => None,
    };
    let mut watch = Watch::new(
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
    )
    .with_pending(pending);
    let price = envelope.tool().map_or(Amount::ZERO, |tool| service.price_of(tool));
    if price == Amount::ZERO {
        return Ok(Ok(Intake { bytes, awaiting: Awaiting::Free(watch), envelope }));
    }
    // A paid tool: hold its price (durably) before anything reaches the upstream.
    let charge = NewCharge {
        id: ChargeId::new(),
        tenant_id: agent.tenant_id.clone(),
        service: service.slug.clone(),
        key_id: agent.key_id.clone(),
        tool: envelope.tool().unwrap_or_default().to_owned(),
        amount: price,
        at: Timestamp::now(),
        cap: agent.spend_cap(),
    };
    let charge_id = charge.id.clone();
    match state.charges.apply(ChargeOp::Reserve(charge)).await {
        Ok(ChargeOpResult::Held) => {}
        Ok(ChargeOpResult::Refused { available, expiring }) => {
            watch.finish(Outcome::AllowanceExceeded);
            let refusal = Refusal { price, available, expiring };
            return Ok(Err(allowance_exceeded(state, service, headers, Some(id), refusal)));
        }
        Ok(ChargeOpResult::CapReached { cap, available }) => {
            watch.finish(Outcome::AllowanceExceeded);
            return Ok(Err(cap_reached(state, headers, agent, Some(id), price, cap, available)));
        }
        Ok(ChargeOpResult::PriceNotApproved) => {
            watch.finish(Outcome::AllowanceExceeded);
            let tool = envelope.tool().unwrap_or_default();
            return Ok(Err(price_not_approved(state, service, headers, Some(id), tool, price)));
        }
        Ok(other) => {
            return Err(ApiError::internal(std::io::Error::other(format!("unexpected hold result {other:?}"))));
        }
        Err(err) => {
            tracing::error!(error = %err, service = %service.slug, "cannot place a hold");
            watch.finish(Outcome::UpstreamError);
            return Err(ApiError::Unavailable(
                "paid calls cannot be charged right now, so none are made; nothing was charged, retry shortly".into(),
            ));
        }
    }
    let watch = watch.with_charge(HeldCharge {
        id: charge_id,
        book: state.charges.clone(),
        charge_tool_errors: service.charge_tool_errors,
    });
    let cancel = cancel_route(state, service, headers, session);
    let upstream_id = gateway.paid.register(watch, id.clone(), scope, cancel);
    let upstream_bytes = match with_id(&bytes, &Value::String(upstream_id.clone())) {
        Ok(rewritten) => Bytes::from(rewritten),
        Err(err) => {
            gateway.paid.fail(&upstream_id, Outcome::UpstreamError).await;
            return Err(ApiError::internal(err));
        }
    };
    let ticket = PaidTicket { upstream_id, client_id: id.clone(), price };
    Ok(Ok(Intake { bytes: upstream_bytes, envelope, awaiting: Awaiting::Paid(ticket) }))
}

/// Where a paid call is cancelled upstream should its time run out.
fn cancel_route(state: &AppState, service: &ServiceRecord, headers: &HeaderMap, session: Option<&str>) -> CancelRoute {
    match &service.upstream {
        Upstream::Stdio { .. } => CancelRoute::Stdio { session: session.unwrap_or_default().to_owned() },
        Upstream::Http { .. } => CancelRoute::Http {
            url: state.gateway.allowed_url(service),
            session: session.map(str::to_owned),
            protocol: headers.get(MCP_PROTOCOL_VERSION).and_then(|v| v.to_str().ok()).map(str::to_owned),
        },
    }
}

/// An agent's `notifications/cancelled` for one of its paid calls names the call by the agent's
/// id; the upstream knows it by the gateway's.
fn cancel_by_upstream_id(state: &AppState, scope: &CallScope, envelope: &Envelope, bytes: Bytes) -> Bytes {
    if envelope.method() != Some("notifications/cancelled") {
        return bytes;
    }
    let Ok(mut message) = serde_json::from_slice::<Value>(&bytes) else { return bytes };
    let Some(request_id) = message.pointer_mut("/params/requestId") else { return bytes };
    match state.gateway.paid.upstream_id(scope, request_id) {
        Some(upstream_id) => {
            *request_id = Value::String(upstream_id);
            Bytes::from(message.to_string())
        }
        None => bytes,
    }
}

/// Where the agent's person manages the allowance for `service`.
fn manage_url(state: &AppState, service: &ServiceRecord, headers: &HeaderMap) -> String {
    format!("{}/app/store/{}", base_url(state, headers), service.slug)
}

/// The answer to a paid call whose tool now costs more than the tenant's approval covers (or was
/// free when it approved): a JSON-RPC error (the upstream was never called) asking it to approve
/// the new price.
fn price_not_approved(
    state: &AppState,
    service: &ServiceRecord,
    headers: &HeaderMap,
    id: Option<&Value>,
    tool: &str,
    price: Amount,
) -> Response {
    let manage_url = manage_url(state, service, headers);
    let message = format!(
        "ALLOWANCE_EXCEEDED: {tool} now costs {price}, a price your allowance for {} has not approved; approve it \
         again at {manage_url} (or PUT /v1/services/{}/allowance) to accept the new price",
        service.slug, service.slug
    );
    let data = json!({
        "code": "ALLOWANCE_EXCEEDED",
        "reason": "price_not_approved",
        "service": service.slug.as_str(),
        "tool": tool,
        "price": price.to_string(),
        "manage_url": manage_url,
    });
    allowance_error(id, message, data)
}

/// The answer to a paid call past the spend cap its person set when they connected the agent
/// (an OAuth grant): the allowance may still have room, but this agent may not spend it.
fn cap_reached(
    state: &AppState,
    headers: &HeaderMap,
    agent: &AgentPrincipal,
    id: Option<&Value>,
    price: Amount,
    cap: Amount,
    available: Amount,
) -> Response {
    let apps_url = format!("{}/app/apps", base_url(state, headers));
    let (client, grant) = agent
        .grant
        .as_ref()
        .map_or(("this agent".to_owned(), String::new()), |g| (g.client_name.clone(), g.id.to_string()));
    let message = format!(
        "ALLOWANCE_EXCEEDED: this call costs {price} but the spend cap of {cap} that was set when {client} was \
         connected (grant {grant}) has only {available} left; connect it again with a higher cap (the connected \
         app is at {apps_url})"
    );
    let data = json!({
        "code": "ALLOWANCE_EXCEEDED",
        "reason": "grant_cap_reached",
        "grant": grant,
        "cap": cap.to_string(),
        "price": price.to_string(),
        "available": available.to_string(),
        "manage_url": apps_url,
    });
    allowance_error(id, message, data)
}

/// An `ALLOWANCE_EXCEEDED` JSON-RPC error for the call `id` (HTTP 200: the MCP exchange worked).
fn allowance_error(id: Option<&Value>, message: String, data: Value) -> Response {
    let body = json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Value::Null),
        "error": { "code": rpc::ALLOWANCE_EXCEEDED, "message": message, "data": data }
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// Why a hold was refused.
pub struct Refusal {
    pub price: Amount,
    pub available: Amount,
    /// The allowance expires within the hold margin (or has expired).
    pub expiring: bool,
}

/// The answer to a paid call the allowance cannot cover: a JSON-RPC error (the upstream was never
/// called) that says what the call costs, what is left, and where the allowance is managed.
pub fn allowance_exceeded(
    state: &AppState,
    service: &ServiceRecord,
    headers: &HeaderMap,
    id: Option<&Value>,
    Refusal { price, available, expiring }: Refusal,
) -> Response {
    let manage_url = manage_url(state, service, headers);
    let message = if expiring {
        format!(
            "ALLOWANCE_EXCEEDED: your allowance for {} has expired, or expires too soon for this call to be settled \
             (paid calls stop {} s before it expires); approve it again with a later expires_at at {manage_url} \
             (or PUT /v1/services/{}/allowance)",
            service.slug,
            state.charges.margins().hold_ms / 1000,
            service.slug
        )
    } else {
        format!(
            "ALLOWANCE_EXCEEDED: this call costs {price} but only {available} is left of your allowance for {}; \
             raise it at {manage_url} (or PUT /v1/services/{}/allowance)",
            service.slug, service.slug
        )
    };
    let data = json!({
        "code": "ALLOWANCE_EXCEEDED",
        "service": service.slug.as_str(),
        "price": price.to_string(),
        "available": available.to_string(),
        "expiring": expiring,
        "manage_url": manage_url,
    });
    allowance_error(id, message, data)
}
