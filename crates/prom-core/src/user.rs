//! People and the values they type: labels, e-mail addresses, passwords, tenant slugs.

use std::fmt;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::kdf::KdfParams;

/// Longest accepted label, in characters.
pub const MAX_LABEL_CHARS: usize = 100;

/// A human-given name for a key ("claude-desktop laptop"): 1 to 100 printable characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Label(String);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("label is required: name the key after the agent or machine that will use it")]
    Empty,
    #[error("label is too long: at most {MAX_LABEL_CHARS} characters")]
    TooLong,
    #[error("label must not contain control characters")]
    Control,
}

impl Label {
    pub fn parse(raw: &str) -> Result<Self, LabelError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(LabelError::Empty);
        }
        if trimmed.chars().count() > MAX_LABEL_CHARS {
            return Err(LabelError::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(LabelError::Control);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// Wraps a label read back from the database.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A normalised (trimmed, lower-cased) e-mail address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("not an e-mail address: expected something like name@example.com")]
pub struct EmailError;

impl Email {
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let email = raw.trim().to_lowercase();
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && matches!(email.split_once('@'), Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
        if valid { Ok(Self(email)) } else { Err(EmailError) }
    }

    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant's short name: lowercase letters, digits and dashes, 2 to 63 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantSlug(String);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("tenant must be 2 to 63 characters of lowercase letters, digits and dashes, like acme-labs")]
pub struct TenantSlugError;

impl TenantSlug {
    pub fn parse(raw: &str) -> Result<Self, TenantSlugError> {
        let ok = (2..=63).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !raw.starts_with('-')
            && !raw.ends_with('-');
        if ok { Ok(Self(raw.to_owned())) } else { Err(TenantSlugError) }
    }

    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Shortest accepted password.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// A cleartext password on its way to being hashed or checked. Redacted `Debug`, no `Display`.
pub struct Password(SecretString);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("password is too short: use at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("password is too long: at most 1024 bytes")]
    TooLong,
}

impl Password {
    /// A password that is being set: length rules apply.
    pub fn new(raw: String) -> Result<Self, PasswordError> {
        if raw.chars().count() < MIN_PASSWORD_CHARS {
            return Err(PasswordError::TooShort);
        }
        if raw.len() > 1024 {
            return Err(PasswordError::TooLong);
        }
        Ok(Self(SecretString::from(raw)))
    }

    /// A password presented at sign-in: checked against the stored hash, whatever its length.
    pub fn presented(raw: String) -> Self {
        Self(SecretString::from(raw))
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Hashes and checks passwords with Argon2id (PHC strings with a random salt per password).
#[derive(Debug)]
pub struct PasswordHasherArgon2 {
    argon2: Argon2<'static>,
    /// A hash of a random password, checked when the e-mail address is unknown so that a failed
    /// sign-in takes the same time whether or not the account exists.
    decoy: String,
}

#[derive(Debug, Error)]
#[error("password hashing failed: {0}")]
pub struct PasswordHashError(String);

impl PasswordHasherArgon2 {
    pub fn new(params: KdfParams) -> Result<Self, PasswordHashError> {
        let argon_params = Params::new(params.m_cost_kib, params.t_cost, params.p_cost, None)
            .map_err(|e| PasswordHashError(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
        let mut hasher = Self { argon2, decoy: String::new() };
        let mut random = [0u8; 24];
        crate::os_random(&mut random);
        hasher.decoy = hasher.hash(&Password::presented(hex_string(&random)))?;
        Ok(hasher)
    }

    pub fn hash(&self, password: &Password) -> Result<String, PasswordHashError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2
            .hash_password(password.0.expose_secret().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| PasswordHashError(e.to_string()))
    }

    /// Checks a password against a stored PHC hash, or against the decoy when there is none.
    /// Returns false for the decoy, for a mismatch and for an unreadable hash. An empty stored
    /// hash is a user who never set a password (added by e-mail): it matches nothing, and is
    /// checked against the decoy so the answer takes as long as for any other account.
    pub fn verify(&self, password: &Password, stored: Option<&str>) -> bool {
        let stored = stored.filter(|hash| !hash.is_empty());
        let phc = stored.unwrap_or(&self.decoy);
        let Ok(parsed) = PasswordHash::new(phc) else { return false };
        let matches = self.argon2.verify_password(password.0.expose_secret().as_bytes(), &parsed).is_ok();
        matches && stored.is_some()
    }
}

fn hex_string(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_trimmed_and_bounded() {
        assert_eq!(Label::parse("  laptop ").unwrap().as_str(), "laptop");
        assert_eq!(Label::parse("   "), Err(LabelError::Empty));
        assert_eq!(Label::parse(&"x".repeat(101)), Err(LabelError::TooLong));
        assert_eq!(Label::parse("a\u{0}b"), Err(LabelError::Control));
        assert!(Label::parse(&"é".repeat(100)).is_ok());
    }

    #[test]
    fn emails_are_normalised() {
        assert_eq!(Email::parse(" Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        assert!(Email::parse("nope").is_err());
        assert!(Email::parse("a@b@c").is_err());
        assert!(Email::parse("@b").is_err());
    }

    #[test]
    fn slugs() {
        assert!(TenantSlug::parse("acme-labs").is_ok());
        assert!(TenantSlug::parse("Acme").is_err());
        assert!(TenantSlug::parse("-x").is_err());
        assert!(TenantSlug::parse("a").is_err());
    }

    #[test]
    fn passwords_hash_and_verify() {
        let hasher = PasswordHasherArgon2::new(KdfParams { m_cost_kib: 64, t_cost: 1, p_cost: 1 }).unwrap();
        assert_eq!(Password::new("short".into()).err(), Some(PasswordError::TooShort));
        let hash = hasher.hash(&Password::new("correct horse battery".into()).unwrap()).unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher.verify(&Password::presented("correct horse battery".into()), Some(&hash)));
        assert!(!hasher.verify(&Password::presented("wrong horse battery".into()), Some(&hash)));
        assert!(!hasher.verify(&Password::presented("anything".into()), None));
        assert!(!hasher.verify(&Password::presented("anything".into()), Some("garbage")));
    }

    #[test]
    fn an_empty_hash_matches_no_password() {
        let hasher = PasswordHasherArgon2::new(KdfParams { m_cost_kib: 64, t_cost: 1, p_cost: 1 }).unwrap();
        assert!(!hasher.verify(&Password::presented(String::new()), Some("")));
        assert!(!hasher.verify(&Password::presented("correct horse battery".into()), Some("")));
    }
}
