//! Key usage off the request path. A verified request never writes to the database: it notes the
//! key in a bounded channel (and only once a second per key), and a background task folds the
//! notes into one `last_used_at` update per key per flush. When the channel is full a note is
//! dropped and counted: `last_used_at` is informational, requests must never wait for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prom_core::id::KeyId;
use prom_core::store::Store;
use prom_core::time::Timestamp;
use tokio::sync::{mpsc, oneshot};

const CHANNEL_CAPACITY: usize = 4096;

enum Message {
    Used(KeyId, Timestamp),
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
            Self::Used(id, _) => write!(f, "Used({id})"),
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

    /// Notes a use. Never waits.
    pub fn record(&self, key: KeyId, at: Timestamp) {
        if self.tx.try_send(Message::Used(key, at)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes out everything noted so far and waits for it (shutdown, tests).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Message>, every: Duration) {
    let mut pending: HashMap<KeyId, Timestamp> = HashMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Used(key, at)) => {
                    let latest = pending.entry(key).or_insert(at);
                    *latest = (*latest).max(at);
                }
                Some(Message::Flush(done)) => {
                    write(&*store, &mut pending).await;
                    let _ = done.send(());
                }
                None => {
                    write(&*store, &mut pending).await;
                    return;
                }
            },
            _ = tick.tick() => write(&*store, &mut pending).await,
        }
    }
}

async fn write(store: &dyn Store, pending: &mut HashMap<KeyId, Timestamp>) {
    if pending.is_empty() {
        return;
    }
    let uses: Vec<(KeyId, Timestamp)> = pending.drain().collect();
    if let Err(err) = store.touch_keys(&uses).await {
        tracing::warn!(error = %err, keys = uses.len(), "could not record key usage; will retry with the next uses");
        // Put them back so the next flush tries again, unless newer uses arrived meanwhile.
        for (key, at) in uses {
            pending.entry(key).or_insert(at);
        }
    }
}
