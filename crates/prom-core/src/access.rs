//! Who may do what: tenant roles for people, scopes for API keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A member's role in a tenant. Ordered: an owner can do everything an admin can, and so on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    /// Whether this role includes everything `needed` allows.
    pub fn includes(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("role must be one of owner, admin, member")]
pub struct UnknownRole;

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "owner" => Ok(Self::Owner),
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            _ => Err(UnknownRole),
        }
    }
}

/// What an API key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Connect to MCP services through the gateway and be charged for tool calls.
    #[serde(rename = "agent:connect")]
    AgentConnect,
}

impl Scope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AgentConnect => "agent:connect",
        }
    }

    /// Scopes as stored: space-separated, like OAuth's `scope` parameter.
    pub fn join(scopes: &[Scope]) -> String {
        scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
    }

    /// Reads stored scopes, skipping any this build does not know (written by a newer version).
    pub fn split(raw: &str) -> Vec<Scope> {
        raw.split_whitespace().filter_map(|s| s.parse().ok()).collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown scope; the only scope is agent:connect")]
pub struct UnknownScope;

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "agent:connect" => Ok(Self::AgentConnect),
            _ => Err(UnknownScope),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Owner.includes(Role::Admin));
        assert!(Role::Admin.includes(Role::Admin));
        assert!(!Role::Member.includes(Role::Admin));
        assert_eq!("admin".parse(), Ok(Role::Admin));
        assert_eq!("root".parse::<Role>(), Err(UnknownRole));
    }

    #[test]
    fn scopes_round_trip() {
        let stored = Scope::join(&[Scope::AgentConnect]);
        assert_eq!(stored, "agent:connect");
        assert_eq!(Scope::split(&stored), vec![Scope::AgentConnect]);
        assert_eq!(Scope::split("agent:connect future:thing"), vec![Scope::AgentConnect]);
    }
}
