//! The charge book's writer: every hold, capture and release of every request goes through one
//! task that applies whatever has queued up in a single transaction (group commit). Under load many
//! paid calls share one commit; when idle a call waits for nobody. A caller gets its result only
//! once the transaction has committed, so a hold is durable before the call is forwarded and a
//! capture is durable before the result is released to the agent.

use std::sync::Arc;

use prom_core::charge::{ChargeOp, ChargeOpResult};
use prom_core::store::{Store, StoreError};
use prom_core::time::Timestamp;
use tokio::sync::{mpsc, oneshot};

/// Most operations in one transaction.
const MAX_BATCH: usize = 512;
/// Operations waiting for the writer before new paid calls are refused as unavailable.
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<ChargeOpResult, Arc<StoreError>>>;

#[derive(Clone, Debug)]
pub struct ChargeBook {
    tx: mpsc::Sender<(ChargeOp, Reply)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    #[error("the charge book is not accepting work (shutting down or overloaded)")]
    Unavailable,
    #[error("the charge book could not be written")]
    Store(#[source] Arc<StoreError>),
}

impl ChargeBook {
    pub fn spawn(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, rx));
        Self { tx }
    }

    /// Applies one operation and waits until it is committed.
    pub async fn apply(&self, op: ChargeOp) -> Result<ChargeOpResult, ChargeError> {
        let (reply, result) = oneshot::channel();
        self.tx.try_send((op, reply)).map_err(|_| ChargeError::Unavailable)?;
        match result.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(err)) => Err(ChargeError::Store(err)),
            Err(_) => Err(ChargeError::Unavailable),
        }
    }

    /// Queues an operation without waiting (a release from a destructor); waits for room rather
    /// than dropping it, on a task of its own.
    pub fn apply_later(&self, op: ChargeOp) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let (reply, result) = oneshot::channel();
            if tx.send((op, reply)).await.is_ok() {
                if let Ok(Err(err)) = result.await {
                    tracing::error!(error = %err, "a charge could not be released; it stays held until repaired");
                }
            }
        });
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<(ChargeOp, Reply)>) {
    let mut batch: Vec<(ChargeOp, Reply)> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let ops: Vec<ChargeOp> = batch.iter().map(|(op, _)| op.clone()).collect();
        match store.apply_charges(&ops, Timestamp::now()).await {
            Ok(results) => {
                for ((_, reply), result) in batch.drain(..).zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, ops = ops.len(), "a charge batch failed");
                let err = Arc::new(err);
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}
