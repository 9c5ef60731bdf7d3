//! Paid calls between their hold and their result.
//!
//! A paid call is registered here once its hold is placed, and goes upstream under a gateway-made
//! id (`ids.rs`). Its hold stays until the response with that id turns up — on the call's own
//! stream, on a stream the agent resumed with `Last-Event-ID`, on any stream of the service — or
//! until its time runs out. Whichever stream sees the response settles it here first (a capture,
//! or a release for a result that is not charged) and only then delivers it, under the agent's
//! own id; a response nobody is waiting for is withheld. An agent that hangs up therefore does not
//! get its hold released while the result can still be fetched, and a result fetched after the
//! time ran out is never delivered free. When the time runs out the hold is released and the
//! upstream is told with `notifications/cancelled`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use prom_core::id::KeyId;
use serde_json::{Value, json};

use super::envelope::Outcome;
use super::ids::{RpcId, new_paid_id};
use super::watch::Watch;
use crate::money::ChargeError;

/// Paid calls waiting for their result, by gateway-made id.
#[derive(Debug)]
pub struct PaidCalls {
    calls: Mutex<Calls>,
    wait: Duration,
}

#[derive(Debug, Default)]
struct Calls {
    by_upstream_id: HashMap<String, PaidCall>,
    /// The agent's id of each call in its scope → the upstream id (for the agent's cancels).
    by_client_id: HashMap<(CallScope, RpcId), String>,
}

impl Calls {
    fn insert(&mut self, upstream_id: String, call: PaidCall) {
        if let Some(client_id) = RpcId::of(&call.client_id) {
            self.by_client_id.insert((call.scope.clone(), client_id), upstream_id.clone());
        }
        self.by_upstream_id.insert(upstream_id, call);
    }

    fn remove(&mut self, upstream_id: &str) -> Option<PaidCall> {
        let call = self.by_upstream_id.remove(upstream_id)?;
        if let Some(client_id) = RpcId::of(&call.client_id) {
            let key = (call.scope.clone(), client_id);
            if self.by_client_id.get(&key).is_some_and(|id| id == upstream_id) {
                self.by_client_id.remove(&key);
            }
        }
        Some(call)
    }
}

/// Who a paid call belongs to: the agent may cancel it by its own id in this scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CallScope {
    pub service: String,
    pub key_id: KeyId,
    pub session: Option<String>,
}

/// Where to send `notifications/cancelled` for a call whose time ran out.
#[derive(Clone, Debug)]
pub enum CancelRoute {
    Http { url: Option<reqwest::Url>, session: Option<String>, protocol: Option<String> },
    Stdio { session: String },
}

#[derive(Debug)]
struct PaidCall {
    /// Carries the hold and the call's metering record.
    watch: Watch,
    /// The id the agent sent, which its response goes back under.
    client_id: Value,
    scope: CallScope,
    deadline: Instant,
    cancel: CancelRoute,
}

/// What to do with a paid call's response.
#[derive(Debug)]
pub enum Delivery {
    /// Settled (captured, or released for a result that is not charged): deliver it under the
    /// agent's id.
    Deliver(Value),
    /// It could not be charged: withhold it, and tell the agent so under its id.
    Withheld(Value, ChargeError),
    /// No paid call waits for it (its time ran out, or it was answered already): withhold it.
    Unknown,
}

/// A call whose time ran out: its hold is released; the upstream should be told.
#[derive(Debug)]
pub struct Expired {
    pub upstream_id: String,
    pub route: CancelRoute,
}

impl PaidCalls {
    /// `wait`: how long a paid call may take to deliver its result, resumptions included.
    pub fn new(wait: Duration) -> Arc<Self> {
        Arc::new(Self { calls: Mutex::new(Calls::default()), wait })
    }

    /// Registers a call whose hold `watch` carries; returns the id it goes upstream under.
    pub fn register(&self, watch: Watch, client_id: Value, scope: CallScope, cancel: CancelRoute) -> String {
        let upstream_id = new_paid_id();
        let call = PaidCall { watch, client_id, scope, deadline: Instant::now() + self.wait, cancel };
        self.lock().insert(upstream_id.clone(), call);
        upstream_id
    }

    /// The response to `upstream_id` (`response_bytes` long) was seen, ending with `outcome`:
    /// settles the call (capture or release, durably) and says whether its response may be
    /// delivered.
    pub async fn settle(&self, upstream_id: &str, outcome: Outcome, response_bytes: usize) -> Delivery {
        let Some(mut call) = self.lock().remove(upstream_id) else { return Delivery::Unknown };
        call.watch.add_response_bytes(response_bytes);
        match call.watch.settle(outcome).await {
            Ok(()) => Delivery::Deliver(call.client_id),
            Err(err) => Delivery::Withheld(call.client_id, err),
        }
    }

    /// The call failed without a result (the upstream refused it, failed or timed out): its hold
    /// is released now. A result that turns up later is withheld.
    pub async fn fail(&self, upstream_id: &str, outcome: Outcome) {
        let call = self.lock().remove(upstream_id);
        if let Some(mut call) = call {
            let _ = call.watch.settle(outcome).await;
        }
    }

    /// The upstream id of the agent's call `client_id` in `scope`, for its `notifications/cancelled`.
    pub fn upstream_id(&self, scope: &CallScope, client_id: &Value) -> Option<String> {
        let key = (scope.clone(), RpcId::of(client_id)?);
        self.lock().by_client_id.get(&key).cloned()
    }

    /// Ends every call whose time has run out: releases its hold and returns where to cancel it.
    pub fn expire(&self, now: Instant) -> Vec<Expired> {
        let expired: Vec<(String, PaidCall)> = {
            let mut calls = self.lock();
            let ids: Vec<String> = calls
                .by_upstream_id
                .iter()
                .filter(|(_, call)| call.deadline <= now)
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter().filter_map(|id| calls.remove(&id).map(|call| (id, call))).collect()
        };
        expired
            .into_iter()
            .map(|(upstream_id, mut call)| {
                call.watch.finish(Outcome::Incomplete);
                Expired { upstream_id, route: call.cancel }
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The notification that tells an upstream a call's result is no longer wanted.
pub fn cancelled(upstream_id: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": { "requestId": upstream_id, "reason": "the gateway stopped waiting for this paid call's result" }
    })
}

/// Expires calls once a second (more often for short waits) until `calls` is dropped, handing
/// each expired call to `cancel`.
pub async fn expire_calls<F, Fut>(calls: Weak<PaidCalls>, cancel: F)
where
    F: Fn(Expired) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let period = calls.upgrade().map_or(Duration::from_secs(1), |calls| (calls.wait / 4).min(Duration::from_secs(1)));
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(calls) = calls.upgrade() else { return };
        for expired in calls.expire(Instant::now()) {
            tokio::spawn(cancel(expired));
        }
    }
}
