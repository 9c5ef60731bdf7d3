//! Token buckets for expensive failures (unknown keys, wrong passwords). A client that keeps
//! presenting keys that do not exist runs out of tokens and is refused before any hashing, so it
//! cannot turn the Argon2 pool into a denial of service for everyone else.
//!
//! A client is a network, not an address: an IPv6 host is usually given a whole /64 and can
//! send from any of its 2^64 addresses, so IPv6 clients are counted per /64 (IPv4, and IPv4
//! mapped into IPv6, per address). [`SharedBudget`] bounds what all clients together may spend,
//! for floods spread over many networks.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Instant;

/// Clients tracked at once before idle ones are dropped.
const MAX_TRACKED_CLIENTS: usize = 50_000;
/// The bits of an IPv6 address that name its /64 network.
const IPV6_NETWORK_MASK: u128 = !0u128 << 64;

/// The client an address belongs to: the IPv4 address itself, or the /64 of an IPv6 address.
pub fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & IPV6_NETWORK_MASK)),
        },
    }
}

/// How many tokens a bucket holds and how fast it refills.
#[derive(Clone, Copy, Debug)]
struct Rate {
    burst: f64,
    per_sec: f64,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Rate {
    fn new(burst: u32, per_sec: f64) -> Self {
        Self { burst: f64::from(burst.max(1)), per_sec: per_sec.max(0.0) }
    }

    fn full(&self, now: Instant) -> Bucket {
        Bucket { tokens: self.burst, updated: now }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_sec).min(self.burst);
        bucket.updated = now;
    }

    /// Takes one token; `Err(seconds until one is back)` when there is none.
    fn take(&self, bucket: &mut Bucket, now: Instant) -> Result<(), u64> {
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

    fn give_back(&self, bucket: &mut Bucket) {
        bucket.tokens = (bucket.tokens + 1.0).min(self.burst);
    }

    /// Whether a bucket left alone since its last update is full again.
    fn is_full(&self, bucket: &Bucket, now: Instant) -> bool {
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens + elapsed * self.per_sec >= self.burst
    }
}

/// One bucket per client (see [`client_of`]).
#[derive(Debug)]
pub struct ClientThrottle {
    rate: Rate,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl ClientThrottle {
    pub fn new(burst: u32, per_sec: f64) -> Self {
        Self { rate: Rate::new(burst, per_sec), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for the client `ip` belongs to; `Err(seconds until one is back)` when
    /// there is none.
    pub fn take(&self, ip: IpAddr) -> Result<(), u64> {
        let client = client_of(ip);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_TRACKED_CLIENTS && !buckets.contains_key(&client) {
            // Clients whose buckets are full again are indistinguishable from new ones.
            buckets.retain(|_, bucket| !self.rate.is_full(bucket, now));
        }
        let bucket = buckets.entry(client).or_insert_with(|| self.rate.full(now));
        self.rate.take(bucket, now)
    }

    /// Gives back a token taken for an attempt that turned out legitimate.
    pub fn refund(&self, ip: IpAddr) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(bucket) = buckets.get_mut(&client_of(ip)) {
            self.rate.give_back(bucket);
        }
    }
}

/// One bucket for everyone: what all clients together may spend.
#[derive(Debug)]
pub struct SharedBudget {
    rate: Rate,
    bucket: Mutex<Bucket>,
}

impl SharedBudget {
    pub fn new(burst: u32, per_sec: f64) -> Self {
        let rate = Rate::new(burst, per_sec);
        Self { rate, bucket: Mutex::new(rate.full(Instant::now())) }
    }

    /// Takes one token; `Err(seconds until one is back)` when there is none.
    pub fn take(&self) -> Result<(), u64> {
        let mut bucket = self.bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.rate.take(&mut bucket, Instant::now())
    }

    /// Gives back a token taken for an attempt that turned out legitimate.
    pub fn refund(&self) {
        let mut bucket = self.bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.rate.give_back(&mut bucket);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn v6(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

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

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let throttle = ClientThrottle::new(2, 0.0);
        assert!(throttle.take(v6("2001:db8:0:7::1")).is_ok());
        assert!(throttle.take(v6("2001:db8:0:7:ffff:1:2:3")).is_ok());
        assert!(throttle.take(v6("2001:db8:0:7:abcd::9")).is_err(), "a new address in the same /64 is the same client");
        assert!(throttle.take(v6("2001:db8:0:8::1")).is_ok(), "the next /64 is another client");
        throttle.refund(v6("2001:db8:0:7::42"));
        assert!(throttle.take(v6("2001:db8:0:7::43")).is_ok(), "a refund goes to the /64");
    }

    #[test]
    fn ipv4_is_per_address_also_when_mapped_into_ipv6() {
        assert_eq!(client_of(v6("::ffff:192.0.2.7")), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
        assert_eq!(client_of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
        assert_eq!(client_of(v6("2001:db8:1:2:3:4:5:6")), v6("2001:db8:1:2::"));
    }

    #[test]
    fn the_shared_budget_is_one_bucket_for_everyone() {
        let budget = SharedBudget::new(2, 0.0);
        assert!(budget.take().is_ok());
        assert!(budget.take().is_ok());
        assert_eq!(budget.take(), Err(60));
        budget.refund();
        assert!(budget.take().is_ok());
    }
}
