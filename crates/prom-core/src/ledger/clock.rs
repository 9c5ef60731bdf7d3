//! The ledger's notion of now. Ledger times are nanoseconds since the Unix epoch (UTC), as in
//! `created_at_time`, `expires_at` and `ledger_time`; the clock is injected so that tests can move it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

/// Where a ledger reads the time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now_nanos(&self) -> u64;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_nanos(&self) -> u64 {
        u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests, simulations).
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(now_nanos: u64) -> Self {
        Self(AtomicU64::new(now_nanos))
    }

    /// Starts at the current wall-clock time.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now_nanos())
    }

    pub fn set(&self, now_nanos: u64) {
        self.0.store(now_nanos, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // Cannot fail: the update always answers `Some`.
        let _ = self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| Some(now.saturating_add(by)));
    }
}

impl Clock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manual_clock_moves_when_told() {
        let clock = ManualClock::new(1_000);
        clock.advance(Duration::from_nanos(500));
        assert_eq!(clock.now_nanos(), 1_500);
        clock.set(7);
        assert_eq!(clock.now_nanos(), 7);
        clock.advance(Duration::MAX);
        assert_eq!(clock.now_nanos(), u64::MAX);
        assert!(SystemClock.now_nanos() > 1_700_000_000_000_000_000);
    }
}
