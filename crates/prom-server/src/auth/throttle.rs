//! Per-client token buckets for expensive failures (unknown keys, wrong passwords). A client that
//! keeps presenting keys that do not exist runs out of tokens and is refused before any hashing,
//! so it cannot turn the Argon2 pool into a denial of service for everyone else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Clients tracked at once before idle ones are dropped.
const MAX_TRACKED_CLIENTS: usize = 50_000;

#[derive(Debug)]
pub struct ClientThrottle {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl ClientThrottle {
    pub fn new(burst: u32, per_sec: f64) -> Self {
        Self { burst: f64::from(burst.max(1)), per_sec: per_sec.max(0.0), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `client`; `Err(seconds until one is back)` when there is none.
    pub fn take(&self, client: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_TRACKED_CLIENTS && !buckets.contains_key(&client) {
            self.forget_full(&mut buckets, now);
        }
        let bucket = buckets.entry(client).or_insert(Bucket { tokens: self.burst, updated: now });
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if self.per_sec > 0.0 {
            Err(((1.0 - bucket.tokens) / self.per_sec).ceil().max(1.0) as u64)
        } else {
            Err(60)
        }
    }

    /// Gives back a token taken for an attempt that turned out legitimate.
    pub fn refund(&self, client: IpAddr) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(bucket) = buckets.get_mut(&client) {
            bucket.tokens = (bucket.tokens + 1.0).min(self.burst);
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_sec).min(self.burst);
        bucket.updated = now;
    }

    /// Drops clients whose buckets are full again (they are indistinguishable from new ones).
    fn forget_full(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        buckets.retain(|_, bucket| {
            let elapsed = now.duration_since(bucket.updated).as_secs_f64();
            bucket.tokens + elapsed * self.per_sec < self.burst
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_then_refund() {
        let throttle = ClientThrottle::new(3, 0.0);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert!(throttle.take(a).is_ok());
        assert!(throttle.take(a).is_ok());
        assert!(throttle.take(a).is_ok());
        assert!(throttle.take(a).is_err());
        assert!(throttle.take(b).is_ok(), "other clients are unaffected");
        throttle.refund(a);
        assert!(throttle.take(a).is_ok());
    }
}
