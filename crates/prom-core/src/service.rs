//! Paid MCP services: what the gateway serves at `/mcp/{slug}`, where it forwards, and the price
//! of each tool.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::id::{ServiceId, TenantId};
use crate::money::Amount;
use crate::time::Timestamp;

/// A service's URL name: lowercase letters, digits and dashes, 2 to 63 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServiceSlug(String);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("a service slug is 2 to 63 characters of lowercase letters, digits and dashes, like weather-pro")]
pub struct ServiceSlugError;

impl ServiceSlug {
    pub fn parse(raw: &str) -> Result<Self, ServiceSlugError> {
        let ok = (2..=63).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !raw.starts_with('-')
            && !raw.ends_with('-');
        if ok { Ok(Self(raw.to_owned())) } else { Err(ServiceSlugError) }
    }

    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the gateway forwards a service's traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Upstream {
    /// An MCP Streamable HTTP endpoint.
    Http { url: String },
    /// A command the gateway spawns and speaks MCP stdio with.
    Stdio {
        command: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
    },
}

/// Price per tool name; tools without a price are free.
pub type Prices = BTreeMap<String, Amount>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRecord {
    pub id: ServiceId,
    /// The tenant that published the service (and is paid for it).
    pub tenant_id: TenantId,
    pub slug: ServiceSlug,
    pub name: String,
    pub description: String,
    pub upstream: Upstream,
    pub prices: Prices,
    /// Whether a paid call whose result has `isError: true` is charged. Off by default: such calls
    /// are released, like failed ones; a provider whose tool errors still cost it work may turn it on.
    pub charge_tool_errors: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl ServiceRecord {
    /// The price of calling `tool`, or zero.
    pub fn price_of(&self, tool: &str) -> Amount {
        self.prices.get(tool).copied().unwrap_or(Amount::ZERO)
    }
}
