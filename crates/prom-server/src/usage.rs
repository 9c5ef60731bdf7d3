//! Usage off the request path. A request never writes to the database: it appends what happened
//! to a bounded in-memory inbox (a mutex-guarded push: no channel, no task wake-up per request),
//! and a background task drains the inbox every flush interval and folds the notes into batched
//! writes —
//! `last_used_at` once per key per flush, gateway usage events in one transaction, and one
//! `api_key.use` audit row per key per minute, and one `user.login_failed` row per account per
//! minute with the number of attempts (so a password-guessing flood writes a row a minute, not a
//! row an attempt, and its user agents are a bounded sample). When the channel is full a note is
//! dropped and counted; requests never wait for bookkeeping.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prom_core::audit::{Actor, AuditAction, AuditContext, AuditTarget, NewAuditEvent};
use prom_core::id::{KeyId, TenantId};
use prom_core::store::Store;
use prom_core::time::Timestamp;
use prom_core::usage::UsageEvent;
use serde_json::json;
use tokio::sync::{Notify, mpsc, oneshot};

/// Most notes waiting for the writer; beyond that new ones are dropped (and counted).
const CHANNEL_CAPACITY: usize = 100_000;
/// Notes that start a write before the interval is up. Writes stay small because, on the embedded
/// database, a write holds the only write connection and paid calls' charges wait for it: at
/// 2,000 a busy gateway's usage writes stalled paid calls by tens of milliseconds (p99).
const MAX_BATCH: usize = 500;
const MINUTE_MS: i64 = 60_000;
/// Longest method or tool name stored (bytes): agents choose them, and a request may be megabytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Most distinct tools an `api_key.use` row lists; the rest are counted in `tools_omitted`.
pub const MAX_TOOLS_PER_USE_ROW: usize = 32;

/// Who used a key, for its `api_key.use` row.
#[derive(Clone, Debug)]
pub struct KeyUser {
    pub key_id: KeyId,
    pub tenant_id: TenantId,
    pub label: String,
    pub display: String,
}

/// One failed sign-in, for its account's `user.login_failed` row of the minute.
#[derive(Clone, Debug)]
pub struct FailedSignIn {
    /// The tenant whose log shows it (the account's, when it has exactly one).
    pub tenant_id: Option<TenantId>,
    pub email: String,
    pub ip: String,
    pub user_agent: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug)]
enum Note {
    Touched(KeyId, Timestamp),
    Used(Box<(UsageEvent, KeyUser)>),
    SignInFailed(Box<FailedSignIn>),
}

/// Most accounts with failed sign-ins kept per minute; beyond, attempts are dropped (counted).
const MAX_FAILED_ACCOUNTS: usize = 10_000;
/// Most distinct addresses and user agents a `user.login_failed` row lists.
const MAX_SAMPLES: usize = 8;

#[derive(Clone, Debug)]
pub struct UsageRecorder {
    inbox: Arc<Mutex<Vec<Note>>>,
    /// Wakes the writer early when the inbox fills up (once per batch, not per request).
    full: Arc<Notify>,
    flushes: mpsc::Sender<oneshot::Sender<()>>,
    dropped: Arc<AtomicU64>,
}

impl UsageRecorder {
    /// Starts the writer task. It stops when every recorder clone is dropped, after a last flush.
    pub fn spawn(store: Arc<dyn Store>, every: Duration) -> Self {
        let (flushes, rx) = mpsc::channel(16);
        let recorder = Self {
            inbox: Arc::new(Mutex::new(Vec::new())),
            full: Arc::new(Notify::new()),
            flushes,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        tokio::spawn(run(
            store,
            recorder.inbox.clone(),
            recorder.full.clone(),
            rx,
            every.max(Duration::from_millis(10)),
        ));
        recorder
    }

    fn send(&self, note: Note) {
        let mut inbox = self.inbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if inbox.len() >= CHANNEL_CAPACITY {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        inbox.push(note);
        if inbox.len() == MAX_BATCH {
            self.full.notify_one();
        }
    }

    /// Notes that a key authenticated a request (for `last_used_at`). Never waits.
    pub fn record(&self, key: KeyId, at: Timestamp) {
        self.send(Note::Touched(key, at));
    }

    /// Notes one JSON-RPC request through the gateway, its method and tool names cut to
    /// [`MAX_NAME_BYTES`]. Never waits.
    pub fn record_event(&self, mut event: UsageEvent, user: KeyUser) {
        truncate_name(&mut event.method);
        if let Some(tool) = &mut event.tool {
            truncate_name(tool);
        }
        self.send(Note::Used(Box::new((event, user))));
    }

    /// Notes a failed sign-in (written as its account's row of the minute). Never waits.
    pub fn record_failed_sign_in(&self, failure: FailedSignIn) {
        self.send(Note::SignInFailed(Box::new(failure)));
    }

    /// Writes out everything noted so far, including the current minute's `api_key.use` rows,
    /// and waits for it (shutdown, tests).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.flushes.send(done).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Notes dropped because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Uses of one key within one minute.
#[derive(Debug)]
struct MinuteOfUse {
    user: KeyUser,
    requests: u64,
    services: BTreeSet<String>,
    /// At most [`MAX_TOOLS_PER_USE_ROW`].
    tools: BTreeSet<String>,
    /// Distinct tools beyond those (an upper bound: a tool seen twice may count twice).
    tools_omitted: u64,
}

#[derive(Debug, Default)]
struct Pending {
    touched: HashMap<KeyId, Timestamp>,
    events: Vec<UsageEvent>,
    minutes: HashMap<(KeyId, i64), MinuteOfUse>,
    /// Failed sign-ins by (account, minute).
    failures: HashMap<(String, i64), FailedMinute>,
    failures_dropped: u64,
}

/// The failed sign-ins of one account within one minute.
#[derive(Debug)]
struct FailedMinute {
    first: FailedSignIn,
    attempts: u64,
    /// At most [`MAX_SAMPLES`] each.
    addresses: BTreeSet<String>,
    user_agents: BTreeSet<String>,
}

async fn run(
    store: Arc<dyn Store>,
    inbox: Arc<Mutex<Vec<Note>>>,
    full: Arc<Notify>,
    mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
    every: Duration,
) {
    let mut pending = Pending::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (all, done) = tokio::select! {
            flush = flushes.recv() => match flush {
                Some(done) => (true, Some(done)),
                // Every recorder is gone: write what is left and stop.
                None => {
                    take_notes(&inbox, &mut pending);
                    write(&*store, &mut pending, true).await;
                    return;
                }
            },
            () = full.notified() => (false, None),
            _ = tick.tick() => (false, None),
        };
        take_notes(&inbox, &mut pending);
        write(&*store, &mut pending, all).await;
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}

/// Moves the inbox's notes into `pending`, folding uses into per-key, per-minute counts.
fn take_notes(inbox: &Mutex<Vec<Note>>, pending: &mut Pending) {
    let notes = std::mem::take(&mut *inbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    for note in notes {
        match note {
            Note::Touched(key, at) => note_touch(pending, key, at),
            Note::SignInFailed(failure) => note_failure(pending, *failure),
            Note::Used(used) => {
                let (event, user) = *used;
                note_touch(pending, event.key_id.clone(), event.at);
                let minute = event.at.as_millis().div_euclid(MINUTE_MS);
                let entry = pending.minutes.entry((event.key_id.clone(), minute)).or_insert_with(|| MinuteOfUse {
                    user,
                    requests: 0,
                    services: BTreeSet::new(),
                    tools: BTreeSet::new(),
                    tools_omitted: 0,
                });
                entry.requests += 1;
                entry.services.insert(event.service.to_string());
                if let Some(tool) = &event.tool
                    && !entry.tools.contains(tool)
                {
                    if entry.tools.len() < MAX_TOOLS_PER_USE_ROW {
                        entry.tools.insert(tool.clone());
                    } else {
                        entry.tools_omitted += 1;
                    }
                }
                pending.events.push(event);
            }
        }
    }
}

/// Cuts `name` to at most [`MAX_NAME_BYTES`], on a character boundary.
fn truncate_name(name: &mut String) {
    if name.len() > MAX_NAME_BYTES {
        let end = (0..=MAX_NAME_BYTES).rev().find(|at| name.is_char_boundary(*at)).unwrap_or(0);
        name.truncate(end);
    }
}

fn note_failure(pending: &mut Pending, failure: FailedSignIn) {
    let key = (failure.email.clone(), failure.at.as_millis().div_euclid(MINUTE_MS));
    if !pending.failures.contains_key(&key) && pending.failures.len() >= MAX_FAILED_ACCOUNTS {
        pending.failures_dropped += 1;
        return;
    }
    let entry = pending.failures.entry(key).or_insert_with(|| FailedMinute {
        first: failure.clone(),
        attempts: 0,
        addresses: BTreeSet::new(),
        user_agents: BTreeSet::new(),
    });
    entry.attempts += 1;
    if entry.addresses.len() < MAX_SAMPLES {
        entry.addresses.insert(failure.ip);
    }
    if let Some(agent) = failure.user_agent
        && entry.user_agents.len() < MAX_SAMPLES
    {
        entry.user_agents.insert(agent);
    }
}

fn note_touch(pending: &mut Pending, key: KeyId, at: Timestamp) {
    let latest = pending.touched.entry(key).or_insert(at);
    *latest = (*latest).max(at);
}

/// Writes what is pending. `api_key.use` rows are written once their minute is over (or when
/// `all` is set), so each key gets one row per minute.
async fn write(store: &dyn Store, pending: &mut Pending, all: bool) {
    if !pending.touched.is_empty() {
        let uses: Vec<(KeyId, Timestamp)> = pending.touched.drain().collect();
        if let Err(err) = store.touch_keys(&uses).await {
            tracing::warn!(error = %err, keys = uses.len(), "could not record key usage; will retry");
            for (key, at) in uses {
                pending.touched.entry(key).or_insert(at);
            }
        }
    }
    let current_minute = Timestamp::now().as_millis().div_euclid(MINUTE_MS);
    let closed: Vec<(KeyId, i64)> =
        pending.minutes.keys().filter(|(_, minute)| all || *minute < current_minute).cloned().collect();
    let closed_failures: Vec<(String, i64)> =
        pending.failures.keys().filter(|(_, minute)| all || *minute < current_minute).cloned().collect();
    if pending.events.is_empty() && closed.is_empty() && closed_failures.is_empty() {
        return;
    }
    if pending.failures_dropped > 0 {
        tracing::warn!(
            dropped = pending.failures_dropped,
            "failed sign-ins of too many accounts in a minute were not logged"
        );
        pending.failures_dropped = 0;
    }
    let mut audit = Vec::with_capacity(closed.len() + closed_failures.len());
    let mut taken = Vec::with_capacity(closed.len());
    for key in closed {
        if let Some(minute) = pending.minutes.remove(&key) {
            audit.push(use_event(&minute, key.1));
            taken.push((key, minute));
        }
    }
    let mut taken_failures = Vec::with_capacity(closed_failures.len());
    for key in closed_failures {
        if let Some(minute) = pending.failures.remove(&key) {
            audit.push(failure_event(&minute, key.1));
            taken_failures.push((key, minute));
        }
    }
    let events = std::mem::take(&mut pending.events);
    if let Err(err) = store.record_usage(&events, &audit).await {
        tracing::warn!(error = %err, events = events.len(), "could not record gateway usage; will retry");
        pending.events = events;
        pending.minutes.extend(taken);
        pending.failures.extend(taken_failures);
    }
}

fn failure_event(minute: &FailedMinute, minute_index: i64) -> NewAuditEvent {
    let start = Timestamp::from_millis(minute_index * MINUTE_MS);
    let first = &minute.first;
    NewAuditEvent {
        at: first.at,
        tenant_id: first.tenant_id.clone(),
        action: AuditAction::UserLoginFailed,
        context: AuditContext {
            actor: Actor::Anonymous { claimed: Some(first.email.clone()) },
            ip: Some(first.ip.clone()),
            user_agent: first.user_agent.clone(),
        },
        target: None,
        details: json!({
            "email": first.email,
            "minute": start.to_string(),
            "attempts": minute.attempts,
            "addresses": minute.addresses,
            "user_agents": minute.user_agents,
        }),
    }
}

fn use_event(minute: &MinuteOfUse, minute_index: i64) -> NewAuditEvent {
    let user = &minute.user;
    let start = Timestamp::from_millis(minute_index * MINUTE_MS);
    NewAuditEvent {
        at: start,
        tenant_id: Some(user.tenant_id.clone()),
        action: AuditAction::ApiKeyUse,
        context: AuditContext {
            actor: Actor::ApiKey { id: user.key_id.clone(), display: user.display.clone() },
            ip: None,
            user_agent: None,
        },
        target: Some(AuditTarget::api_key(&user.key_id, &user.label)),
        details: json!({
            "minute": start.to_string(),
            "requests": minute.requests,
            "services": minute.services,
            "tools": minute.tools,
            "tools_omitted": minute.tools_omitted,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_on_a_character_boundary() {
        let mut long = "é".repeat(200);
        truncate_name(&mut long);
        assert_eq!(long, "é".repeat(64));
        let mut odd = format!("a{}", "é".repeat(200));
        truncate_name(&mut odd);
        assert_eq!(odd.len(), 127, "the cut falls back to the last boundary");
        let mut short = "tools/call".to_owned();
        truncate_name(&mut short);
        assert_eq!(short, "tools/call");
    }
}
