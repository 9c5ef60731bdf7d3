//! The `countdown` tool's input, checked once: how many steps and how far apart.

use std::time::Duration;

use thiserror::Error;

/// Most progress notifications one countdown may send.
pub const MAX_STEPS: u32 = 100;
/// Longest pause between two notifications, so one call cannot hold a session for long.
pub const MAX_INTERVAL_MS: u64 = 1_000;
/// Pause between notifications when the caller does not say.
pub const DEFAULT_INTERVAL_MS: u64 = 10;

/// A validated countdown: `steps` in `1..=MAX_STEPS`, `interval` at most `MAX_INTERVAL_MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Countdown {
    steps: u32,
    interval: Duration,
}

/// Why a countdown request was refused; the message is shown to the caller as the tool's error.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CountdownError {
    #[error("n must be between 1 and {MAX_STEPS}, got {0}")]
    StepsOutOfRange(i64),
    #[error("interval_ms must be between 0 and {MAX_INTERVAL_MS}, got {0}")]
    IntervalOutOfRange(i64),
}

impl Countdown {
    /// Checks the raw arguments. They arrive as `i64` so that negative and oversized numbers get
    /// the same readable refusal instead of a JSON decoding error.
    pub fn parse(n: i64, interval_ms: Option<i64>) -> Result<Self, CountdownError> {
        let steps = u32::try_from(n)
            .ok()
            .filter(|steps| (1..=MAX_STEPS).contains(steps))
            .ok_or(CountdownError::StepsOutOfRange(n))?;
        let interval_ms = match interval_ms {
            None => DEFAULT_INTERVAL_MS,
            Some(raw) => u64::try_from(raw)
                .ok()
                .filter(|ms| *ms <= MAX_INTERVAL_MS)
                .ok_or(CountdownError::IntervalOutOfRange(raw))?,
        };
        Ok(Self { steps, interval: Duration::from_millis(interval_ms) })
    }

    /// How many progress notifications this countdown sends.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// The pause between two notifications.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}
