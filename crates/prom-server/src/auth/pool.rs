//! The bounded Argon2 pool. Argon2id is deliberately slow and memory-hungry; unbounded, a flood
//! of cold key lookups or sign-ins would take every core and starve requests whose keys are
//! already verified. At most `workers` hashes run at once and at most `queue` wait; beyond that a
//! job is refused at once (the caller answers `RATE_LIMITED`) instead of piling up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("too many key checks are queued")]
    Busy,
    #[error("the hashing worker stopped")]
    Crashed(#[source] tokio::task::JoinError),
}

#[derive(Clone, Debug)]
pub struct HashingPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    permits: Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
    workers: usize,
}

impl HashingPool {
    pub fn new(workers: usize, max_waiting: usize) -> Self {
        let workers = workers.max(1);
        Self {
            inner: Arc::new(Inner {
                permits: Semaphore::new(workers),
                waiting: AtomicUsize::new(0),
                max_waiting,
                workers,
            }),
        }
    }

    /// Runs `job` on a blocking thread once a worker is free, or refuses it when the queue is full.
    pub async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let inner = &self.inner;
        if inner.waiting.fetch_add(1, Ordering::AcqRel) >= inner.max_waiting + inner.workers {
            inner.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(PoolError::Busy);
        }
        let permit = inner.permits.acquire().await;
        inner.waiting.fetch_sub(1, Ordering::AcqRel);
        // The semaphore is never closed, so a permit always comes.
        let _permit = permit.map_err(|_| PoolError::Busy)?;
        tokio::task::spawn_blocking(job).await.map_err(PoolError::Crashed)
    }

    /// Jobs waiting or running now.
    pub fn in_flight(&self) -> usize {
        self.inner.waiting.load(Ordering::Acquire) + (self.inner.workers - self.inner.permits.available_permits())
    }

    pub fn workers(&self) -> usize {
        self.inner.workers
    }
}
