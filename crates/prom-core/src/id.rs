//! Typed identifiers. Every id is a UUIDv7 (time-ordered, so lists sort by creation) kept as its
//! canonical string; the newtypes keep a tenant id from being passed where a key id belongs.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7().hyphenated().to_string())
            }

            /// Parses an id that came from outside (a URL path, a query string). Anything that
            /// is not a canonical UUID is rejected, so a lookup never runs with junk.
            pub fn parse(raw: &str) -> Option<Self> {
                uuid::Uuid::try_parse(raw).ok().map(|id| Self(id.hyphenated().to_string()))
            }

            /// Wraps an id read back from the database, which only ever holds ids we made.
            pub fn from_trusted(raw: String) -> Self {
                Self(raw)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

define_id!(
    /// Identifies an API key. Safe to log and to use as a metric label.
    KeyId
);
define_id!(
    /// Identifies a tenant (an account that owns keys, allowances and services).
    TenantId
);
define_id!(
    /// Identifies a person who signs in.
    UserId
);
define_id!(
    /// Identifies a sign-in session (not its token).
    SessionId
);
define_id!(
    /// Identifies a registered MCP service.
    ServiceId
);
define_id!(
    /// Identifies one charge (a hold for one paid tool call, later captured or released).
    ChargeId
);
define_id!(
    /// Identifies an OAuth grant: what one person allowed one client to do with one service.
    GrantId
);
define_id!(
    /// Identifies a settlement batch (and is its ledger memo).
    SettlementId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_uuids() {
        let id = KeyId::new();
        assert_eq!(KeyId::parse(id.as_str()), Some(id));
        assert_eq!(KeyId::parse("1 OR 1=1"), None);
        assert_eq!(KeyId::parse(""), None);
    }

    #[test]
    fn ids_sort_by_creation() {
        let a = KeyId::new();
        let b = KeyId::new();
        assert!(a < b);
    }
}
