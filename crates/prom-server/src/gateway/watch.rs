//! One JSON-RPC request watched from its arrival to its end: its metering record (one usage event,
//! exactly once) and, for a paid call, its hold, captured or released when the call ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use prom_core::charge::{ChargeOp, ChargeOpResult};
use prom_core::id::ChargeId;
use prom_core::service::ServiceSlug;
use prom_core::time::Timestamp;
use prom_core::usage::UsageEvent;
use serde_json::Value;

use super::envelope::Outcome;
use super::pending::PendingId;
use crate::metrics::{Metrics, RequestLabels, ServiceLabel};
use crate::money::{ChargeBook, ChargeError};
use crate::usage::{KeyUser, UsageRecorder};

/// One JSON-RPC request being watched until its response is seen. Dropping it unfinished records
/// the request as `incomplete`, so every request produces exactly one usage event.
#[derive(Debug)]
pub struct Watch {
    started: Instant,
    request_id: Value,
    service: ServiceSlug,
    method: String,
    tool: Option<String>,
    request_bytes: i64,
    response_bytes: Arc<AtomicI64>,
    user: KeyUser,
    usage: UsageRecorder,
    metrics: Arc<Metrics>,
    charge: Option<HeldCharge>,
    /// The request's id, claimed in its MCP session until the request ends.
    pending: Option<PendingId>,
    finished: bool,
}

/// The hold placed for a paid call, to be captured or released when the call ends.
#[derive(Debug)]
pub struct HeldCharge {
    pub id: ChargeId,
    pub book: ChargeBook,
    /// The service's setting when the hold was placed: a result with `isError: true` is charged.
    pub charge_tool_errors: bool,
}

impl HeldCharge {
    /// Whether a call that ended with `outcome` is charged: a result, or a tool error on a
    /// service that charges those. Anything else is released.
    fn captures(&self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Ok => true,
            Outcome::ToolError => self.charge_tool_errors,
            Outcome::RpcError | Outcome::UpstreamError | Outcome::Incomplete | Outcome::AllowanceExceeded => false,
        }
    }
}

impl Watch {
    #[expect(clippy::too_many_arguments, reason = "a plain record of what one request was")]
    pub fn new(
        request_id: Value,
        service: ServiceSlug,
        method: String,
        tool: Option<String>,
        request_bytes: usize,
        user: KeyUser,
        usage: UsageRecorder,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            started: Instant::now(),
            request_id,
            service,
            method,
            tool,
            request_bytes: i64::try_from(request_bytes).unwrap_or(i64::MAX),
            response_bytes: Arc::new(AtomicI64::new(0)),
            user,
            usage,
            metrics,
            charge: None,
            pending: None,
            finished: false,
        }
    }

    /// Keeps the request's id claimed in its session until the request ends.
    pub fn with_pending(mut self, pending: Option<PendingId>) -> Self {
        self.pending = pending;
        self
    }

    /// Attaches the hold placed for this call.
    pub fn with_charge(mut self, charge: HeldCharge) -> Self {
        self.charge = Some(charge);
        self
    }

    pub fn is_charged(&self) -> bool {
        self.charge.is_some()
    }

    /// The JSON-RPC id of the request.
    pub fn request_id(&self) -> &Value {
        &self.request_id
    }

    /// The tool called, for `tools/call`.
    pub fn tool(&self) -> Option<&str> {
        self.tool.as_deref()
    }

    /// Ends the call: captures its charge when it succeeded (or ended in a tool error on a service
    /// that charges those), releases it otherwise — durably — then records usage. An error means
    /// the capture could not be written: the result must not be delivered, since it would be
    /// served uncharged.
    pub async fn settle(&mut self, outcome: Outcome) -> Result<(), ChargeError> {
        if self.finished {
            return Ok(());
        }
        if let Some(charge) = self.charge.take() {
            let capture = charge.captures(outcome);
            let op = if capture { ChargeOp::Capture(charge.id) } else { ChargeOp::Release(charge.id) };
            let applied = match charge.book.apply(op.clone()).await {
                // Another process released the hold (it took this one for dead): serving the
                // result now would serve it uncharged.
                Ok(ChargeOpResult::NotHeld) if capture => Err(ChargeError::NotHeld),
                // The allowance expires before this charge could be settled: released, withheld.
                Ok(ChargeOpResult::Expired) => Err(ChargeError::Expired),
                Ok(_) => Ok(()),
                Err(err) => Err(err),
            };
            if let Err(ChargeError::Expired) = applied {
                tracing::warn!(
                    service = %self.service,
                    "a paid call ended too close to its allowance's expiry to be settled; its result was withheld \
                     and nothing was charged"
                );
                self.finish(Outcome::AllowanceExceeded);
                return Err(ChargeError::Expired);
            }
            if let Err(err) = applied {
                tracing::error!(error = %err, "could not settle a paid call; its hold stays until repaired");
                if capture {
                    // The hold is still there: give it back, since the result is withheld.
                    if let ChargeOp::Capture(id) = op {
                        charge.book.apply_later(ChargeOp::Release(id));
                    }
                    self.finish(Outcome::UpstreamError);
                    return Err(err);
                }
            }
        }
        self.finish(outcome);
        Ok(())
    }

    pub fn add_response_bytes(&self, bytes: usize) {
        self.response_bytes.fetch_add(i64::try_from(bytes).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// Records how the call ended. A charge still attached is released (this path is for calls
    /// that failed or never completed; successful paid calls go through [`Watch::settle`]).
    pub fn finish(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.pending = None;
        if let Some(charge) = self.charge.take() {
            charge.book.apply_later(ChargeOp::Release(charge.id));
        }
        let elapsed = self.started.elapsed();
        let service = self.service.to_string();
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                service: service.clone(),
                method: crate::metrics::method_label(&self.method).to_owned(),
                outcome: outcome.as_str().to_owned(),
            })
            .inc();
        self.metrics.latency.get_or_create(&ServiceLabel { service }).observe(elapsed.as_secs_f64());
        self.usage.record_event(
            UsageEvent {
                at: Timestamp::now(),
                tenant_id: self.user.tenant_id.clone(),
                key_id: self.user.key_id.clone(),
                service: self.service.clone(),
                method: std::mem::take(&mut self.method),
                tool: self.tool.take(),
                outcome: outcome.as_str().to_owned(),
                latency_us: i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
                request_bytes: self.request_bytes,
                response_bytes: self.response_bytes.load(Ordering::Relaxed),
            },
            self.user.clone(),
        );
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.finish(Outcome::Incomplete);
    }
}
