//! Sign-in session tokens for the management API (`/v1`) and the CLI.
//!
//! A token is `prom_sess_` + 64 hex characters. Unlike API keys, session tokens are short-lived and
//! never typed by hand, so they are stored as a plain SHA-256 digest: with 256 random bits there is
//! nothing for a slow hash to protect, and session checks stay cheap.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Prefix of session tokens. Never change: the key parser uses it to give a precise error.
pub const SESSION_PREFIX: &str = "prom_sess_";

/// A cleartext session token.
pub struct SessionToken(SecretString);

/// The stored digest of a session token.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionDigest([u8; 32]);

impl SessionToken {
    pub fn mint() -> Self {
        let mut bytes = [0u8; 32];
        crate::os_random(&mut bytes);
        Self(SecretString::from(format!("{SESSION_PREFIX}{}", hex::encode(bytes))))
    }

    /// Accepts anything with the session prefix and the right length; the digest lookup decides.
    pub fn parse(raw: &str) -> Option<Self> {
        let body = raw.strip_prefix(SESSION_PREFIX)?;
        let ok = body.len() == 64 && body.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Self(SecretString::from(raw)))
    }

    pub fn digest(&self) -> SessionDigest {
        SessionDigest(Sha256::digest(self.0.expose_secret().as_bytes()).into())
    }

    /// The cleartext, for the one response that hands it out.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

impl SessionDigest {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SessionDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionDigest(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_digest() {
        let token = SessionToken::mint();
        let parsed = SessionToken::parse(token.expose()).unwrap();
        assert_eq!(parsed.digest(), token.digest());
        assert!(SessionToken::parse("prom_sess_xyz").is_none());
        assert!(SessionToken::parse(&token.expose().replace("prom_sess_", "prom_live_")).is_none());
    }
}
