//! The bounded Argon2 pool. Argon2id is deliberately slow and memory-hungry; unbounded, a flood
//! of cold key lookups or sign-ins would take every core and starve requests whose keys are
//! already verified. At most `workers` hashes run at once; beyond that a job waits in its lane's
//! queue, and a job whose lane's queue is full is refused at once (the caller answers
//! `RATE_LIMITED`) instead of piling up.
//!
//! Two lanes share the workers. Key lookups come from anyone on the internet; sign-ins (and keys
//! minted by signed-in people) have a queue of their own that key lookups cannot fill, and go
//! first: at most one key lookup at a time waits for a worker, so a sign-in waits for the hashes
//! running now and at most one more, however many key lookups are queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Mutex, Semaphore};

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("too many key checks are queued")]
    Busy,
    #[error("the hashing worker stopped")]
    Crashed(#[source] tokio::task::JoinError),
}

/// Whose work a hash is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Cold API key lookups: anyone can cause them, with any key.
    KeyLookup,
    /// Password checks of sign-ins, and digests of keys minted by signed-in people.
    SignIn,
}

#[derive(Clone, Debug)]
pub struct HashingPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    permits: Arc<Semaphore>,
    /// Held by the one key lookup that may wait for a worker; the others wait here, behind it.
    key_turn: Mutex<()>,
    key_lookups: Queue,
    sign_ins: Queue,
    workers: usize,
}

/// A lane's jobs waiting for a worker, and how many may.
#[derive(Debug)]
struct Queue {
    waiting: AtomicUsize,
    limit: usize,
}

/// A place in a lane's queue, given back when dropped (also when the caller gives up waiting).
struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Queue {
    fn new(max_waiting: usize, workers: usize) -> Self {
        Self { waiting: AtomicUsize::new(0), limit: max_waiting.saturating_add(workers) }
    }

    fn enter(&self) -> Result<Place<'_>, PoolError> {
        let before = self.waiting.fetch_add(1, Ordering::AcqRel);
        let place = Place(&self.waiting);
        if before >= self.limit {
            return Err(PoolError::Busy);
        }
        Ok(place)
    }
}

impl HashingPool {
    /// `workers` hashes at once; `key_queue` key lookups and `sign_in_queue` sign-ins may wait.
    pub fn new(workers: usize, key_queue: usize, sign_in_queue: usize) -> Self {
        let workers = workers.max(1);
        Self {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(workers)),
                key_turn: Mutex::new(()),
                key_lookups: Queue::new(key_queue, workers),
                sign_ins: Queue::new(sign_in_queue, workers),
                workers,
            }),
        }
    }

    /// Runs `job` on a blocking thread once a worker is free, or refuses it when its lane's queue
    /// is full.
    pub async fn run<T, F>(&self, lane: Lane, job: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let inner = &self.inner;
        let permit = match lane {
            Lane::KeyLookup => {
                let place = inner.key_lookups.enter()?;
                let _turn = inner.key_turn.lock().await;
                let permit = inner.permits.clone().acquire_owned().await;
                drop(place);
                permit
            }
            Lane::SignIn => {
                let place = inner.sign_ins.enter()?;
                let permit = inner.permits.clone().acquire_owned().await;
                drop(place);
                permit
            }
        };
        // The semaphore is never closed, so a permit always comes.
        let permit = permit.map_err(|_| PoolError::Busy)?;
        // The permit goes with the job: a caller that stops waiting does not free the worker
        // while its hash still runs.
        tokio::task::spawn_blocking(move || {
            let value = job();
            drop(permit);
            value
        })
        .await
        .map_err(PoolError::Crashed)
    }

    /// Jobs waiting or running now.
    pub fn in_flight(&self) -> usize {
        let inner = &self.inner;
        let waiting =
            inner.key_lookups.waiting.load(Ordering::Acquire) + inner.sign_ins.waiting.load(Ordering::Acquire);
        waiting + (inner.workers - inner.permits.available_permits())
    }

    pub fn workers(&self) -> usize {
        self.inner.workers
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Waits until `ready` holds (the pool's queues are filled by spawned tasks).
    async fn until(ready: impl Fn() -> bool) {
        for _ in 0..500 {
            if ready() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("the pool never reached the expected state");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn key_lookups_cannot_fill_the_sign_in_queue() {
        let pool = HashingPool::new(1, 0, 0);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let running = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(Lane::KeyLookup, move || gate.recv().is_ok()).await }
        });
        until(|| pool.inner.permits.available_permits() == 0).await;
        // One key lookup may wait (queue 0 + 1 worker); the next is refused.
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(Lane::KeyLookup, || true).await }
        });
        until(|| pool.inner.key_lookups.waiting.load(Ordering::Acquire) == 1).await;
        assert!(matches!(pool.run(Lane::KeyLookup, || true).await, Err(PoolError::Busy)));

        // A sign-in still gets in, and runs once the worker is free.
        let sign_in = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(Lane::SignIn, || "signed in").await }
        });
        until(|| pool.inner.sign_ins.waiting.load(Ordering::Acquire) == 1).await;
        release.send(()).unwrap();
        assert_eq!(sign_in.await.unwrap().unwrap(), "signed in");
        assert!(running.await.unwrap().unwrap());
        assert!(waiting.await.unwrap().unwrap());
        assert_eq!(pool.in_flight(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_stops_waiting_gives_its_place_back() {
        let pool = HashingPool::new(1, 0, 0);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let running = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(Lane::SignIn, move || gate.recv().is_ok()).await }
        });
        until(|| pool.inner.permits.available_permits() == 0).await;
        for _ in 0..3 {
            let gave_up = tokio::time::timeout(Duration::from_millis(5), pool.run(Lane::KeyLookup, || ())).await;
            assert!(gave_up.is_err(), "the worker is busy, so the lookup waits");
        }
        assert_eq!(pool.inner.key_lookups.waiting.load(Ordering::Acquire), 0, "abandoned places were kept");
        release.send(()).unwrap();
        assert!(running.await.unwrap().unwrap());
        assert!(pool.run(Lane::KeyLookup, || ()).await.is_ok());
    }
}
