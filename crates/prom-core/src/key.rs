//! The API key format: minting, parsing, the display form and the at-rest digest input.
//!
//! A key is `prom_live_` or `prom_test_` followed by 64 lowercase hex characters (32 bytes from
//! the OS CSPRNG). The prefixes are part of the public contract — agents, secret scanners and
//! users' configuration recognise keys by them — and must never change.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Prefix of keys for live (real-money) servers. Never change: it is a published format.
pub const LIVE_PREFIX: &str = "prom_live_";
/// Prefix of keys for test servers. Never change: it is a published format.
pub const TEST_PREFIX: &str = "prom_test_";
/// Number of hex characters after the prefix (32 random bytes).
pub const SECRET_HEX_LEN: usize = 64;
/// Total length of a well-formed key.
pub const KEY_LEN: usize = LIVE_PREFIX.len() + SECRET_HEX_LEN;

/// Which deployment a key belongs to. A server runs in exactly one environment and accepts only
/// keys of that environment, so a key copied from a test setup can never spend real money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Live,
    Test,
}

impl Environment {
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::Live => LIVE_PREFIX,
            Self::Test => TEST_PREFIX,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = UnknownEnvironment;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "live" => Ok(Self::Live),
            "test" => Ok(Self::Test),
            _ => Err(UnknownEnvironment),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("environment must be \"live\" or \"test\"")]
pub struct UnknownEnvironment;

/// Why a presented string is not a well-formed key. Messages describe the shape of the problem
/// and how to fix it; they never echo any part of what was presented.
#[derive(Debug, Error, PartialEq, Eq, Clone, Copy)]
pub enum KeyFormatError {
    #[error(
        "this is not a Prometheus API key: keys start with prom_live_ or prom_test_ followed by 64 \
         hex characters; copy the key exactly as it was shown when it was created"
    )]
    UnknownPrefix,
    #[error(
        "this looks like a sign-in session token, not an API key: agents must present an API key \
         (prom_live_… or prom_test_…); create one with `prom keys create`"
    )]
    SessionToken,
    #[error(
        "the API key is truncated: expected 64 hex characters after the prefix but found {found}; \
         copy the whole key"
    )]
    Truncated { found: usize },
    #[error(
        "the API key is too long: expected 64 hex characters after the prefix but found {found}; \
         check for extra characters pasted along with the key"
    )]
    TooLong { found: usize },
    #[error(
        "the API key contains characters that are not lowercase hex after its prefix; copy the key \
         exactly as it was shown when it was created"
    )]
    NotHex,
}

/// A cleartext API key. Exists only while a request is being authenticated or in the one create
/// response that reveals it; it has no `Display`, its `Debug` is redacted, and it is never stored.
pub struct PlainKey {
    secret: SecretString,
    environment: Environment,
}

impl PlainKey {
    /// Mints a new key from 32 bytes of the OS CSPRNG.
    pub fn mint(environment: Environment) -> Self {
        let mut bytes = [0u8; SECRET_HEX_LEN / 2];
        crate::os_random(&mut bytes);
        let mut text = String::with_capacity(KEY_LEN);
        text.push_str(environment.prefix());
        text.push_str(&hex::encode(bytes));
        Self { secret: SecretString::from(text), environment }
    }

    /// Checks the shape of a presented key. Cheap (no hashing); run it before anything costly.
    pub fn parse(raw: &str) -> Result<Self, KeyFormatError> {
        let (environment, body) = if let Some(body) = raw.strip_prefix(LIVE_PREFIX) {
            (Environment::Live, body)
        } else if let Some(body) = raw.strip_prefix(TEST_PREFIX) {
            (Environment::Test, body)
        } else if raw.starts_with(crate::session::SESSION_PREFIX) {
            return Err(KeyFormatError::SessionToken);
        } else {
            return Err(KeyFormatError::UnknownPrefix);
        };
        if !body.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(KeyFormatError::NotHex);
        }
        match body.len() {
            SECRET_HEX_LEN => {}
            found if found < SECRET_HEX_LEN => return Err(KeyFormatError::Truncated { found }),
            found => return Err(KeyFormatError::TooLong { found }),
        }
        Ok(Self { secret: SecretString::from(raw), environment })
    }

    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// The last four characters, kept in the clear so a key can be recognised in a list.
    pub fn last4(&self) -> String {
        let text = self.secret.expose_secret();
        text[text.len() - 4..].to_owned()
    }

    /// The display form, `prom_live_...x7z9`: safe to show, log and store.
    pub fn display(&self) -> String {
        display_form(self.environment, &self.last4())
    }

    /// The cleartext, for the digest, the cache hash and the one-time reveal. Every caller of
    /// this is a place where key material could leak; keep them few.
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }
}

impl fmt::Debug for PlainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlainKey({})", self.display())
    }
}

/// The display form of a key from its environment and last four characters.
pub fn display_form(environment: Environment, last4: &str) -> String {
    format!("{}...{}", environment.prefix(), last4)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Untrusted text never panics the parser, and only the exact format is accepted.
        #[test]
        fn any_text_parses_or_is_refused(raw in ".{0,100}") {
            if let Ok(key) = PlainKey::parse(&raw) {
                proptest::prop_assert_eq!(key.expose(), raw.as_str());
                proptest::prop_assert_eq!(raw.len(), KEY_LEN);
            }
        }

        /// Near misses of a real key: one character changed, cut or added.
        #[test]
        fn a_key_one_edit_away_is_refused_or_is_the_same(at in 0usize..KEY_LEN, with in proptest::char::any(), cut in proptest::bool::ANY) {
            let key = PlainKey::mint(Environment::Live);
            let mut text: Vec<char> = key.expose().chars().collect();
            if cut { text.truncate(at); } else { text[at] = with; }
            let edited: String = text.into_iter().collect();
            if let Ok(parsed) = PlainKey::parse(&edited) {
                proptest::prop_assert_eq!(parsed.expose(), edited.as_str());
            }
            proptest::prop_assert_eq!(PlainKey::parse(key.expose()).map(|k| k.expose().to_owned()).ok(), Some(key.expose().to_owned()));
        }
    }

    #[test]
    fn minted_keys_have_the_documented_format() {
        for env in [Environment::Live, Environment::Test] {
            let key = PlainKey::mint(env);
            let text = key.expose();
            assert_eq!(text.len(), KEY_LEN);
            assert!(text.starts_with(env.prefix()));
            assert!(text[env.prefix().len()..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            let parsed = PlainKey::parse(text);
            assert!(parsed.is_ok());
            assert_eq!(key.environment(), env);
        }
    }

    #[test]
    fn minted_keys_differ() {
        let a = PlainKey::mint(Environment::Live);
        let b = PlainKey::mint(Environment::Live);
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn display_form_is_prefix_dots_last4() {
        let key = PlainKey::mint(Environment::Live);
        let text = key.expose().to_owned();
        assert_eq!(key.display(), format!("prom_live_...{}", &text[text.len() - 4..]));
        assert_eq!(key.display().len(), "prom_live_...".len() + 4);
    }

    #[test]
    fn debug_is_redacted() {
        let key = PlainKey::mint(Environment::Test);
        let debug = format!("{key:?}");
        assert!(!debug.contains(&key.expose()[10..]));
        assert!(debug.starts_with("PlainKey(prom_test_..."));
    }

    #[test]
    fn parse_names_each_malformation() {
        let good = PlainKey::mint(Environment::Live).expose().to_owned();
        assert_eq!(PlainKey::parse("").err(), Some(KeyFormatError::UnknownPrefix));
        assert_eq!(PlainKey::parse("sk-abc").err(), Some(KeyFormatError::UnknownPrefix));
        assert_eq!(PlainKey::parse(&good[..40]).err(), Some(KeyFormatError::Truncated { found: 30 }));
        assert_eq!(PlainKey::parse(&format!("{good}00")).err(), Some(KeyFormatError::TooLong { found: 66 }));
        assert_eq!(
            PlainKey::parse(&good.to_uppercase().replace("PROM_LIVE_", "prom_live_")).err(),
            Some(KeyFormatError::NotHex)
        );
        assert_eq!(PlainKey::parse(&format!("prom_sess_{}", &good[10..])).err(), Some(KeyFormatError::SessionToken));
        assert_eq!(PlainKey::parse(&format!("{good} ")).err(), Some(KeyFormatError::NotHex));
    }

    #[test]
    fn error_messages_never_echo_input() {
        let good = PlainKey::mint(Environment::Live).expose().to_owned();
        for bad in [&good[..40], &format!("{good}ff"), &good.replace('a', "Z")] {
            if let Err(err) = PlainKey::parse(bad) {
                assert!(!err.to_string().contains(&bad[10..20]), "{err}");
            }
        }
    }
}
