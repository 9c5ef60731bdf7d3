//! Services whose upstream is a local command speaking MCP over stdio. The gateway spawns one
//! process per MCP session (opened by `initialize`), writes each POSTed message to its stdin as
//! one line, and routes what it prints back over HTTP: the response to a request — and progress
//! notifications that carry the request's progress token — on that request's SSE stream; anything
//! else (server-to-client requests, other notifications) on the session's GET stream, or, until
//! one is opened, into a bounded backlog.
//!
//! Processes end with their session (DELETE), when idle too long, when the gateway shuts down
//! (and, as a last resort, when their handle is dropped: `kill_on_drop`). A process that exits
//! on its own fails its pending requests with a JSON-RPC error instead of leaving them hanging.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::process::Stdio;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use futures_util::{SinkExt, Stream, StreamExt};
use prom_core::id::KeyId;
use serde_json::Value;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec};

use super::envelope::{Message, Outcome};
use super::ids::{RpcId, is_paid_id, same_id};
use super::paid::PaidCalls;
use super::relay::{Awaiting, paid_answer};
use super::rpc;
use crate::error::ApiError;

/// Longest line (one JSON-RPC message) accepted from a process.
const MAX_LINE: usize = 8 * 1024 * 1024;
/// Server messages kept for a GET stream that is not open yet.
const MAX_BACKLOG: usize = 1000;
#[derive(Debug)]
pub struct StdioUpstreams {
    sessions: DashMap<String, Arc<StdioSession>>,
    idle: Duration,
    quotas: Quotas,
    paid: Arc<PaidCalls>,
}

/// How many processes may run at once: in all, per tenant and per key.
#[derive(Clone, Copy, Debug)]
pub struct Quotas {
    pub total: usize,
    pub per_tenant: usize,
    pub per_key: usize,
}

/// How to start a session's process: the program line (`prlimit` and its limits, then the
/// command) and the whole environment.
#[derive(Debug)]
pub struct Launch {
    pub program: (std::ffi::OsString, Vec<std::ffi::OsString>),
    pub env: Vec<(String, String)>,
}

#[derive(Debug)]
struct StdioSession {
    key_id: KeyId,
    tenant_id: prom_core::id::TenantId,
    service: String,
    stdin: tokio::sync::Mutex<FramedWrite<ChildStdin, LinesCodec>>,
    routes: Mutex<Routes>,
    child: Mutex<Option<Child>>,
    last_seen: Mutex<Instant>,
    paid: Arc<PaidCalls>,
}

/// Where the process's messages go.
#[derive(Debug, Default)]
struct Routes {
    /// Request id (as the process knows it: a paid call's is the gateway's) → the request's SSE
    /// stream, and what it awaits.
    pending: BTreeMap<RpcId, (mpsc::UnboundedSender<String>, Awaiting)>,
    /// Progress token (as JSON text) → request id.
    progress: BTreeMap<String, RpcId>,
    stream: Option<mpsc::UnboundedSender<String>>,
    backlog: VecDeque<String>,
    exited: bool,
}

/// What a message from a client is, for routing.
#[derive(Debug)]
pub struct Outgoing {
    pub line: String,
    pub request_id: Option<Value>,
    pub progress_token: Option<Value>,
}

impl Outgoing {
    /// Prepares a POSTed body for stdio: exactly one line of JSON.
    pub fn from_body(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|err| ApiError::InvalidRequest(format!("the body is not JSON: {err}")))?;
        let request_id = value.get("method").and(value.get("id")).filter(|id| !id.is_null()).cloned();
        let progress_token = value.pointer("/params/_meta/progressToken").cloned();
        // serde_json never writes a raw newline, so this is one line whatever the client sent.
        Ok(Self { line: value.to_string(), request_id, progress_token })
    }
}

impl StdioUpstreams {
    pub fn new(idle: Duration, quotas: Quotas, paid: Arc<PaidCalls>) -> Arc<Self> {
        let upstreams = Arc::new(Self { sessions: DashMap::new(), idle, quotas, paid });
        tokio::spawn(reap_idle(Arc::downgrade(&upstreams)));
        upstreams
    }

    /// Spawns the process for a new session and returns the session id.
    pub fn open(
        self: &Arc<Self>,
        service: &str,
        agent: &crate::auth::AgentPrincipal,
        launch: &Launch,
    ) -> Result<String, ApiError> {
        let key_id = &agent.key_id;
        let (mut of_tenant, mut of_key) = (0, 0);
        for session in &self.sessions {
            of_tenant += usize::from(session.tenant_id == agent.tenant_id);
            of_key += usize::from(session.key_id == *key_id);
        }
        if of_key >= self.quotas.per_key {
            return Err(ApiError::RateLimited {
                message: format!(
                    "this key runs {of_key} local service processes, its most; end a session (DELETE) or wait for \
                     one to go idle"
                ),
                retry_after_secs: 10,
            });
        }
        if of_tenant >= self.quotas.per_tenant {
            return Err(ApiError::RateLimited {
                message: format!(
                    "your tenant's keys run {of_tenant} local service processes, its most; end a session (DELETE) \
                     or wait for one to go idle"
                ),
                retry_after_secs: 10,
            });
        }
        if self.sessions.len() >= self.quotas.total {
            return Err(ApiError::Unavailable(
                "the gateway runs as many local service processes as it may; retry later".into(),
            ));
        }
        let (program, args) = &launch.program;
        let mut child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| {
                tracing::warn!(service, program = ?program, error = %err, "cannot start a stdio upstream");
                ApiError::UpstreamUnavailable(format!("the service {service} cannot be started right now"))
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ApiError::internal(std::io::Error::other("child pipes missing")));
        };
        let mut id = [0u8; 16];
        crate::fill_random(&mut id);
        let session_id = hex::encode(id);
        let session = Arc::new(StdioSession {
            key_id: key_id.clone(),
            tenant_id: agent.tenant_id.clone(),
            service: service.to_owned(),
            stdin: tokio::sync::Mutex::new(FramedWrite::new(stdin, LinesCodec::new_with_max_length(MAX_LINE))),
            routes: Mutex::new(Routes::default()),
            child: Mutex::new(Some(child)),
            last_seen: Mutex::new(Instant::now()),
            paid: self.paid.clone(),
        });
        self.sessions.insert(session_id.clone(), session.clone());
        let lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE));
        tokio::spawn(read_stdout(Arc::downgrade(self), session_id.clone(), session.clone(), lines));
        let label = service.to_owned();
        tokio::spawn(async move {
            let mut lines = FramedRead::new(stderr, LinesCodec::new_with_max_length(64 * 1024));
            while let Some(Ok(line)) = lines.next().await {
                tracing::debug!(service = %label, "stdio upstream: {line}");
            }
        });
        Ok(session_id)
    }

    fn session(&self, session_id: &str, key_id: &KeyId) -> Result<Arc<StdioSession>, ApiError> {
        match self.sessions.get(session_id) {
            Some(session) if session.key_id == *key_id => {
                *lock(&session.last_seen) = Instant::now();
                Ok(session.clone())
            }
            _ => Err(ApiError::NotFound(
                "this MCP session does not exist or belongs to another key; start a new session (initialize)".into(),
            )),
        }
    }

    /// Sends one client message. A request gets an SSE stream that ends with its response;
    /// anything else gets 202.
    pub async fn send(
        &self,
        session_id: &str,
        key_id: &KeyId,
        message: Outgoing,
        awaiting: Awaiting,
    ) -> Result<Response, ApiError> {
        let session = match self.session(session_id, key_id) {
            Ok(session) => session,
            Err(err) => {
                end_awaiting(&self.paid, awaiting);
                return Err(err);
            }
        };
        let receiver = match message.request_id.as_ref().and_then(RpcId::of) {
            Some(id) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let mut routes = lock(&session.routes);
                if routes.exited {
                    end_awaiting(&self.paid, awaiting);
                    return Err(exited(&session.service));
                }
                if let Some(token) = &message.progress_token {
                    routes.progress.insert(token.to_string(), id.clone());
                }
                routes.pending.insert(id, (tx, awaiting));
                Some(rx)
            }
            None => None,
        };
        let written = session.stdin.lock().await.send(message.line).await;
        if written.is_err() {
            self.close(session_id);
            return Err(exited(&session.service));
        }
        Ok(match receiver {
            Some(rx) => sse(rx).into_response(),
            None => axum::http::StatusCode::ACCEPTED.into_response(),
        })
    }

    /// Writes a notification of the gateway's own to a session's process (best effort).
    pub async fn notify(&self, session_id: &str, line: String) {
        let session = self.sessions.get(session_id).map(|session| session.value().clone());
        if let Some(session) = session {
            let _ = session.stdin.lock().await.send(line).await;
        }
    }

    /// Opens the session's stream of server-initiated messages (replacing an earlier one).
    pub fn listen(&self, session_id: &str, key_id: &KeyId) -> Result<Response, ApiError> {
        let session = self.session(session_id, key_id)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut routes = lock(&session.routes);
        for line in routes.backlog.drain(..) {
            let _ = tx.send(line);
        }
        routes.stream = Some(tx);
        Ok(sse(rx).into_response())
    }

    /// Ends a session and its process.
    pub fn end(&self, session_id: &str, key_id: &KeyId) -> Result<(), ApiError> {
        self.session(session_id, key_id)?;
        self.close(session_id);
        Ok(())
    }

    fn close(&self, session_id: &str) {
        if let Some((_, session)) = self.sessions.remove(session_id) {
            session.kill();
        }
    }

    /// Stops every process (gateway shutdown).
    pub fn shutdown(&self) {
        let ids: Vec<String> = self.sessions.iter().map(|entry| entry.key().clone()).collect();
        for id in ids {
            self.close(&id);
        }
    }

    pub fn running(&self) -> usize {
        self.sessions.len()
    }
}

impl StdioSession {
    fn kill(&self) {
        if let Some(mut child) = lock(&self.child).take() {
            let _ = child.start_kill();
            // Reap it so no zombie is left behind.
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
        fail_pending(self);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn exited(service: &str) -> ApiError {
    ApiError::UpstreamUnavailable(format!("the process behind {service} has exited; start a new session (initialize)"))
}

/// Ends a request that will get no answer: a free one is recorded as an upstream error, a paid
/// one's hold released.
fn end_awaiting(paid: &Arc<PaidCalls>, awaiting: Awaiting) {
    match awaiting {
        Awaiting::Free(mut watch) => watch.finish(Outcome::UpstreamError),
        Awaiting::Paid(ticket) => {
            let paid = paid.clone();
            tokio::spawn(async move { paid.fail(&ticket.upstream_id, Outcome::UpstreamError).await });
        }
        Awaiting::Nothing => {}
    }
}

/// Answers every pending request with an error and ends every stream.
fn fail_pending(session: &StdioSession) {
    let mut routes = lock(&session.routes);
    routes.exited = true;
    for (_, (tx, awaiting)) in std::mem::take(&mut routes.pending) {
        let id = match &awaiting {
            Awaiting::Free(watch) => watch.request_id().clone(),
            Awaiting::Paid(ticket) => ticket.client_id.clone(),
            Awaiting::Nothing => Value::Null,
        };
        end_awaiting(&session.paid, awaiting);
        let message = format!("the process behind {} exited before answering", session.service);
        let _ = tx.send(rpc::error(Some(&id), rpc::INTERNAL_ERROR, message).to_string());
    }
    routes.progress.clear();
    routes.stream = None;
}

fn sse(rx: mpsc::UnboundedReceiver<String>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok(Event::default().data(line)), rx))
    });
    Sse::new(events)
}

/// Routes each line the process prints.
async fn read_stdout(
    upstreams: Weak<StdioUpstreams>,
    session_id: String,
    session: Arc<StdioSession>,
    mut lines: FramedRead<tokio::process::ChildStdout, LinesCodec>,
) {
    while let Some(line) = lines.next().await {
        let line = match line {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => line,
            Err(err) => {
                tracing::warn!(service = %session.service, error = %err, "unreadable output from a stdio upstream");
                break;
            }
        };
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            tracing::warn!(service = %session.service, "a stdio upstream printed something that is not JSON; ignored");
            continue;
        };
        route(&session, &message, line);
    }
    tracing::debug!(service = %session.service, "stdio upstream closed its output");
    // Say how it ended (a process over its memory or CPU limit dies by signal or with an error).
    let child = lock(&session.child).take();
    if let Some(mut child) = child {
        match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
            Ok(Ok(status)) if !status.success() => tracing::warn!(
                service = %session.service, %status,
                "a stdio upstream exited with an error (over its stdio_limits, or it failed)"
            ),
            Ok(_) => {}
            Err(_) => {
                // It closed its output but lives on: end it.
                let _ = child.start_kill();
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
            }
        }
    }
    match upstreams.upgrade() {
        Some(upstreams) => upstreams.close(&session_id),
        None => session.kill(),
    }
}

fn route(session: &StdioSession, message: &Value, line: String) {
    let mut routes = lock(&session.routes);
    let response = match Message::read(line.as_bytes()) {
        Message::Response { id: Some(id), outcome } => Some((id, outcome)),
        _ => None,
    };
    if let Some((id, outcome)) = response {
        let route = RpcId::of(&id).and_then(|key| {
            let route = routes.pending.remove(&key)?;
            routes.progress.retain(|_, request| *request != key);
            Some(route)
        });
        if is_paid_id(&id) {
            // A paid call's result is released only once its charge is captured, under the
            // agent's id, on the call's stream (or, if the agent left it, the session's stream).
            let stream = routes.stream.clone();
            drop(routes);
            let paid = session.paid.clone();
            let upstream_id = id.as_str().unwrap_or_default().to_owned();
            tokio::spawn(async move {
                let delivery = paid.settle(&upstream_id, outcome, line.len()).await;
                let Some(out) = paid_answer(delivery, line.as_bytes()) else {
                    tracing::warn!("a stdio upstream answered a paid call whose hold had ended; withheld");
                    return;
                };
                let delivered = route.is_some_and(|(tx, _)| tx.send(out.clone()).is_ok());
                if !delivered && let Some(stream) = stream {
                    let _ = stream.send(out);
                }
            });
            return;
        }
        if let Some((tx, awaiting)) = route {
            if let Awaiting::Free(mut watch) = awaiting
                && same_id(&id, watch.request_id())
            {
                watch.add_response_bytes(line.len());
                watch.finish(outcome);
            }
            let _ = tx.send(line);
            return; // dropping `tx` ends the request's SSE stream
        }
    }
    if let Some(token) = message.pointer("/params/progressToken").map(Value::to_string)
        && let Some(id) = routes.progress.get(&token).cloned()
        && let Some((tx, awaiting)) = routes.pending.get(&id)
    {
        if let Awaiting::Free(watch) = awaiting {
            watch.add_response_bytes(line.len());
        }
        let _ = tx.send(line);
        return;
    }
    if let Some(stream) = &routes.stream {
        if stream.send(line.clone()).is_ok() {
            return;
        }
        routes.stream = None;
    }
    if routes.backlog.len() >= MAX_BACKLOG {
        routes.backlog.pop_front();
    }
    routes.backlog.push_back(line);
}

async fn reap_idle(upstreams: Weak<StdioUpstreams>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        let Some(upstreams) = upstreams.upgrade() else { return };
        let idle: Vec<String> = upstreams
            .sessions
            .iter()
            .filter(|entry| lock(&entry.value().last_seen).elapsed() > upstreams.idle)
            .map(|entry| entry.key().clone())
            .collect();
        for id in idle {
            tracing::info!(session = %id, "ending an idle stdio session");
            upstreams.close(&id);
        }
    }
}
