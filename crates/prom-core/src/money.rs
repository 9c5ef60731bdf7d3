//! Amounts of the token, in its smallest unit. Exact integers end to end: `u128` in the domain,
//! decimal strings on the wire (JSON numbers lose precision past 2^53), text in storage.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// A non-negative amount in the token's smallest unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(u128);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("an amount is a string of decimal digits in the token's smallest unit, like \"250\"")]
pub struct AmountError;

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub const fn new(units: u128) -> Self {
        Self(units)
    }

    pub const fn units(self) -> u128 {
        self.0
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if raw.is_empty() || raw.len() > 39 || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError);
        }
        raw.parse::<u128>().map(Amount).map_err(|_| AmountError)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Every amount round-trips through its decimal string; any other text is refused, never
        /// truncated or wrapped.
        #[test]
        fn amounts_round_trip_and_nothing_else_parses(units in proptest::num::u128::ANY, raw in ".{0,45}") {
            let amount = Amount::new(units);
            proptest::prop_assert_eq!(amount.to_string().parse::<Amount>(), Ok(amount));
            if let Ok(parsed) = raw.parse::<Amount>() {
                proptest::prop_assert!(raw.bytes().all(|b| b.is_ascii_digit()) && !raw.is_empty());
                let printed = parsed.to_string();
                proptest::prop_assert_eq!(printed.trim_start_matches('0'), raw.trim_start_matches('0'));
            }
        }
    }

    #[test]
    fn parses_exact_decimal_strings() {
        assert_eq!("250".parse(), Ok(Amount::new(250)));
        assert_eq!("340282366920938463463374607431768211455".parse(), Ok(Amount::new(u128::MAX)));
        assert_eq!("340282366920938463463374607431768211456".parse::<Amount>(), Err(AmountError));
        for bad in ["", "-1", "1.5", " 1", "1e3", "0x10"] {
            assert_eq!(bad.parse::<Amount>(), Err(AmountError), "{bad}");
        }
        assert_eq!(serde_json::to_string(&Amount::new(7)).unwrap(), "\"7\"");
        assert!(serde_json::from_str::<Amount>("7").is_err(), "numbers are refused: they lose precision");
    }
}
