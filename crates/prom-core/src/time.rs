//! Timestamps: milliseconds since the Unix epoch, UTC.
//!
//! Stored as a plain 64-bit integer in both databases so that comparisons (`expires_at <= now`),
//! ordering and indexes behave identically on SQLite and PostgreSQL; shown as RFC 3339 on the wire.

use std::fmt;

use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time, to the millisecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    pub fn from_datetime(at: OffsetDateTime) -> Self {
        let ms = at.unix_timestamp_nanos() / 1_000_000;
        Self(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// Parses an RFC 3339 timestamp such as `2026-11-23T19:08:22Z`.
    pub fn parse_rfc3339(raw: &str) -> Option<Self> {
        OffsetDateTime::parse(raw, &Rfc3339).ok().map(Self::from_datetime)
    }

    pub fn to_datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// This instant plus `secs` seconds, saturating.
    pub fn plus_seconds(self, secs: u64) -> Self {
        let ms = i64::try_from(secs).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
        Self(self.0.saturating_add(ms))
    }

    /// This instant plus `ms` milliseconds, saturating.
    pub const fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// This instant minus `secs` seconds, saturating.
    pub fn minus_seconds(self, secs: u64) -> Self {
        let ms = i64::try_from(secs).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
        Self(self.0.saturating_sub(ms))
    }

    /// The calendar date, `YYYY-MM-DD` (used in rotated keys' default labels).
    pub fn date_string(self) -> String {
        let date = self.to_datetime().date();
        format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime().format(&Rfc3339) {
            Ok(text) => f.write_str(&text),
            Err(_) => write!(f, "{}ms", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_rfc3339() {
        let at = Timestamp::from_millis(1_795_460_902_123);
        let text = at.to_string();
        assert_eq!(text, "2026-11-23T19:08:22.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&text), Some(at));
        assert_eq!(at.date_string(), "2026-11-23");
    }

    #[test]
    fn plus_seconds_saturates() {
        assert_eq!(Timestamp::from_millis(0).plus_seconds(2).as_millis(), 2000);
        assert_eq!(Timestamp::from_millis(i64::MAX).plus_seconds(u64::MAX).as_millis(), i64::MAX);
    }
}
