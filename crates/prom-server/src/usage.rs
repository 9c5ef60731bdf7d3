//! Usage off the request path. A request never writes to the database: it notes what happened
//! in a bounded channel, and a background task folds the notes into batched writes —
//! `last_used_at` once per key per flush, gateway usage events in one transaction, and one
//! `api_key.use` audit row per key per minute. When the channel is full a note is dropped and
//! counted; requests never wait for bookkeeping.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prom_core::audit::{Actor, AuditAction, AuditContext, AuditTarget, NewAuditEvent};
use prom_core::id::{KeyId, TenantId};
use prom_core::store::Store;
use prom_core::time::Timestamp;
use prom_core::usage::UsageEvent;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

const CHANNEL_CAPACITY: usize = 16_384;
/// Most usage events written in one transaction.
const MAX_BATCH: usize = 2_000;
const MINUTE_MS: i64 = 60_000;

/// Who used a key, for its `api_key.use` row.
#[derive(Clone, Debug)]
pub struct KeyUser {
    pub key_id: KeyId,
    pub tenant_id: TenantId,
    pub label: String,
    pub display: String,
}

enum Message {
    Touched(KeyId, Timestamp),
    Used(Box<(UsageEvent, KeyUser)>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone, Debug)]
pub struct UsageRecorder {
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Touched(id, _) => write!(f, "Touched({id})"),
            Self::Used(used) => write!(f, "Used({})", used.0.key_id),
            Self::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl UsageRecorder {
    /// Starts the writer task. It stops when every recorder clone is dropped, after a last flush.
    pub fn spawn(store: Arc<dyn Store>, every: Duration) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(run(store, rx, every.max(Duration::from_millis(10))));
        Self { tx, dropped: Arc::new(AtomicU64::new(0)) }
    }

    fn send(&self, message: Message) {
        if self.tx.try_send(message).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Notes that a key authenticated a request (for `last_used_at`). Never waits.
    pub fn record(&self, key: KeyId, at: Timestamp) {
        self.send(Message::Touched(key, at));
    }

    /// Notes one JSON-RPC request through the gateway. Never waits.
    pub fn record_event(&self, event: UsageEvent, user: KeyUser) {
        self.send(Message::Used(Box::new((event, user))));
    }

    /// Writes out everything noted so far, including the current minute's `api_key.use` rows,
    /// and waits for it (shutdown, tests).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
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
    tools: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Pending {
    touched: HashMap<KeyId, Timestamp>,
    events: Vec<UsageEvent>,
    minutes: HashMap<(KeyId, i64), MinuteOfUse>,
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Message>, every: Duration) {
    let mut pending = Pending::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Touched(key, at)) => note_touch(&mut pending, key, at),
                Some(Message::Used(used)) => {
                    let (event, user) = *used;
                    note_touch(&mut pending, event.key_id.clone(), event.at);
                    let minute = event.at.as_millis().div_euclid(MINUTE_MS);
                    let entry = pending.minutes.entry((event.key_id.clone(), minute)).or_insert_with(|| MinuteOfUse {
                        user,
                        requests: 0,
                        services: BTreeSet::new(),
                        tools: BTreeSet::new(),
                    });
                    entry.requests += 1;
                    entry.services.insert(event.service.to_string());
                    if let Some(tool) = &event.tool {
                        entry.tools.insert(tool.clone());
                    }
                    pending.events.push(event);
                    if pending.events.len() >= MAX_BATCH {
                        write(&*store, &mut pending, false).await;
                    }
                }
                Some(Message::Flush(done)) => {
                    write(&*store, &mut pending, true).await;
                    let _ = done.send(());
                }
                None => {
                    write(&*store, &mut pending, true).await;
                    return;
                }
            },
            _ = tick.tick() => write(&*store, &mut pending, false).await,
        }
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
    if pending.events.is_empty() && closed.is_empty() {
        return;
    }
    let mut audit = Vec::with_capacity(closed.len());
    let mut taken = Vec::with_capacity(closed.len());
    for key in closed {
        if let Some(minute) = pending.minutes.remove(&key) {
            audit.push(use_event(&minute, key.1));
            taken.push((key, minute));
        }
    }
    let events = std::mem::take(&mut pending.events);
    if let Err(err) = store.record_usage(&events, &audit).await {
        tracing::warn!(error = %err, events = events.len(), "could not record gateway usage; will retry");
        pending.events = events;
        pending.minutes.extend(taken);
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
        }),
    }
}
