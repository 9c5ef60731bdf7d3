//! Usage: one event per JSON-RPC request that went through the gateway. The raw material of
//! `api_key.use` audit rows, usage reports and (with prices) charges.
//!
//! A usage report ([`UsageQuery`] → [`UsageReport`]) counts a tenant's gateway requests and adds
//! up what they were charged, in total and by key, tool, service or UTC day. Requests come from the usage
//! events; money comes from the charges that were captured (or since settled), so a refused or
//! failed call counts as a call and costs nothing.

use std::collections::BTreeMap;

use crate::id::{KeyId, TenantId};
use crate::money::Amount;
use crate::service::ServiceSlug;
use crate::time::Timestamp;
use crate::user::Label;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageEvent {
    pub at: Timestamp,
    pub tenant_id: TenantId,
    pub key_id: KeyId,
    pub service: ServiceSlug,
    /// The JSON-RPC method, such as `tools/call`.
    pub method: String,
    /// The tool of a `tools/call`.
    pub tool: Option<String>,
    /// `ok`, `tool_error`, `rpc_error`, `upstream_error`, `incomplete` or `allowance_exceeded`.
    pub outcome: String,
    pub latency_us: i64,
    pub request_bytes: i64,
    pub response_bytes: i64,
}

/// The outcome of a request that did what was asked.
pub const OUTCOME_OK: &str = "ok";

/// How a usage report breaks its totals down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageGrouping {
    /// By API key.
    Key,
    /// By tool (requests that call no tool, such as `initialize`, form one group without a tool).
    Tool,
    /// By calendar day, UTC.
    Day,
    /// By service (its slug).
    Service,
}

impl UsageGrouping {
    pub const ALL: [UsageGrouping; 4] = [Self::Key, Self::Tool, Self::Day, Self::Service];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Tool => "tool",
            Self::Day => "day",
            Self::Service => "service",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|grouping| grouping.as_str() == raw)
    }
}

/// Which usage to report: one tenant's, from `from` (inclusive) to `to` (exclusive), optionally
/// only one key's or one service's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageQuery {
    pub tenant_id: TenantId,
    pub key_id: Option<KeyId>,
    pub service: Option<ServiceSlug>,
    pub from: Timestamp,
    pub to: Timestamp,
    pub group_by: UsageGrouping,
}

/// What a slice of usage adds up to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageTotals {
    /// Gateway requests.
    pub calls: u64,
    /// Requests by outcome (`ok`, `tool_error`, `allowance_exceeded`, …); they add up to `calls`.
    pub outcomes: BTreeMap<String, u64>,
    /// The sum of the captured and settled charges.
    pub charged: Amount,
}

impl UsageTotals {
    /// Requests whose outcome was `ok`.
    pub fn ok(&self) -> u64 {
        self.outcomes.get(OUTCOME_OK).copied().unwrap_or(0)
    }

    /// Requests with any other outcome: errors, refusals, and requests that never completed.
    pub fn errors(&self) -> u64 {
        self.calls.saturating_sub(self.ok())
    }

    /// Counts `calls` requests with `outcome`.
    pub fn count(&mut self, outcome: &str, calls: u64) {
        self.calls = self.calls.saturating_add(calls);
        let entry = self.outcomes.entry(outcome.to_owned()).or_insert(0);
        *entry = entry.saturating_add(calls);
    }

    /// Adds `other` in; `None`, leaving `self` unchanged, if the charged sum would pass `u128`
    /// (which no real book can reach).
    pub fn absorb(&mut self, other: &UsageTotals) -> Option<()> {
        self.charged = self.charged.checked_add(other.charged)?;
        for (outcome, calls) in &other.outcomes {
            self.count(outcome, *calls);
        }
        Some(())
    }
}

/// The value a row of a usage report is grouped by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsageGroup {
    /// A key of the tenant (deleted keys included: their usage stays).
    Key { id: KeyId, label: Label, display: String },
    /// A tool; `None` for requests that call no tool.
    Tool(Option<String>),
    /// A calendar day, UTC, as `YYYY-MM-DD`.
    Day(String),
    /// A service.
    Service(ServiceSlug),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRow {
    pub group: UsageGroup,
    pub totals: UsageTotals,
}

/// A usage report: the totals of everything the query matched, and its rows. Days come in
/// calendar order; keys, tools and services busiest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageReport {
    pub totals: UsageTotals,
    pub rows: Vec<UsageRow>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_count_outcomes_and_add_up() {
        let mut a = UsageTotals::default();
        a.count("ok", 3);
        a.count("tool_error", 1);
        a.charged = Amount::new(300);
        assert_eq!((a.calls, a.ok(), a.errors()), (4, 3, 1));
        let mut b = UsageTotals::default();
        b.count("ok", 1);
        b.count("allowance_exceeded", 2);
        b.charged = Amount::new(u128::MAX - 300);
        a.absorb(&b).expect("fits");
        assert_eq!((a.calls, a.ok(), a.errors(), a.charged), (7, 4, 3, Amount::new(u128::MAX)));
        assert_eq!(a.absorb(&b), None, "a sum past u128 is refused");
    }

    #[test]
    fn groupings_parse_their_names_only() {
        for grouping in UsageGrouping::ALL {
            assert_eq!(UsageGrouping::parse(grouping.as_str()), Some(grouping));
        }
        assert_eq!(UsageGrouping::parse("service"), Some(UsageGrouping::Service));
        assert_eq!(UsageGrouping::parse("Key"), None);
        assert_eq!(UsageGrouping::parse(""), None);
    }
}
