//! The at-rest digests of secrets.
//!
//! API keys are stored as `Argon2id(key, salt = per-deployment salt)`. The digest is deterministic
//! so that it can be the unique lookup index: a presented key is hashed once and found by equality,
//! never by scanning. The salt is created at first start and kept outside the keys table, so a copy
//! of that table alone cannot be brute-forced offline. The parameters are fixed per deployment:
//! changing them would turn every existing key into an unknown one.

use std::fmt;
use std::str::FromStr;

use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::key::PlainKey;

/// Length of the per-deployment salt.
pub const SALT_LEN: usize = 16;

/// Argon2id cost parameters. The default is OWASP's recommendation (m = 19 MiB, t = 2, p = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        Self { m_cost_kib: 19_456, t_cost: 2, p_cost: 1 }
    }
}

#[derive(Debug, Error)]
pub enum KdfError {
    #[error("invalid Argon2id parameters ({0}): m_cost_kib >= 8 × p_cost, t_cost >= 1, 1 <= p_cost <= 16777215")]
    InvalidParams(String),
    #[error("stored Argon2id parameters are unreadable: {0:?}")]
    Unreadable(String),
    #[error("the deployment salt must be {SALT_LEN} bytes, found {0}")]
    SaltLength(usize),
    /// Argon2id refused to hash. `new` validates everything Argon2 checks, so this should never
    /// happen; if it does, the key is refused rather than matched by a digest nobody computed.
    #[error("cannot compute the Argon2id digest of a key")]
    Hash(#[source] argon2::Error),
}

impl fmt::Display for KdfParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "argon2id$m={},t={},p={}", self.m_cost_kib, self.t_cost, self.p_cost)
    }
}

impl FromStr for KdfParams {
    type Err = KdfError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let bad = || KdfError::Unreadable(raw.to_owned());
        let rest = raw.strip_prefix("argon2id$").ok_or_else(bad)?;
        let mut parts = rest.split(',');
        let mut field = |name: &str| -> Result<u32, KdfError> {
            parts.next().and_then(|part| part.strip_prefix(name)).and_then(|value| value.parse().ok()).ok_or_else(bad)
        };
        Ok(Self { m_cost_kib: field("m=")?, t_cost: field("t=")?, p_cost: field("p=")? })
    }
}

/// A key's at-rest digest: the lookup index of the keys table.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time comparison, for the places that compare digests outside a database index.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDigest(..)")
    }
}

/// The deployment's key hasher: Argon2id with fixed parameters and the deployment salt.
pub struct KeyHasher {
    params: KdfParams,
    argon2: Argon2<'static>,
    salt: SecretSlice<u8>,
}

impl KeyHasher {
    pub fn new(params: KdfParams, salt: SecretSlice<u8>) -> Result<Self, KdfError> {
        if salt.expose_secret().len() != SALT_LEN {
            return Err(KdfError::SaltLength(salt.expose_secret().len()));
        }
        let argon_params = Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
            .map_err(|err| KdfError::InvalidParams(err.to_string()))?;
        Ok(Self { params, argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params), salt })
    }

    /// A fresh random salt for a new deployment.
    pub fn generate_salt() -> SecretSlice<u8> {
        let mut salt = vec![0u8; SALT_LEN];
        crate::os_random(&mut salt);
        SecretSlice::from(salt)
    }

    pub fn params(&self) -> KdfParams {
        self.params
    }

    /// The digest of a key. Costs one Argon2id evaluation (tens of milliseconds at OWASP
    /// parameters): callers on a request path run it on the bounded hashing pool.
    ///
    /// An error is never turned into a digest: were it ignored, every key would share the one
    /// untouched output buffer and match each other. Callers refuse the key.
    pub fn digest(&self, key: &PlainKey) -> Result<KeyDigest, KdfError> {
        let mut out = [0u8; 32];
        self.argon2
            .hash_password_into(key.expose().as_bytes(), self.salt.expose_secret(), &mut out)
            .map_err(KdfError::Hash)?;
        Ok(KeyDigest(out))
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyHasher").field("params", &self.params).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Environment;

    fn fast() -> KdfParams {
        KdfParams { m_cost_kib: 64, t_cost: 1, p_cost: 1 }
    }

    #[test]
    fn digest_is_deterministic_per_salt() {
        let salt = KeyHasher::generate_salt();
        let hasher = KeyHasher::new(fast(), salt.clone()).map_err(|e| e.to_string());
        let other = KeyHasher::new(fast(), KeyHasher::generate_salt()).map_err(|e| e.to_string());
        let (Ok(hasher), Ok(other)) = (hasher, other) else { unreachable!("valid params") };
        let key = PlainKey::mint(Environment::Live);
        let digest = |hasher: &KeyHasher, key: &PlainKey| hasher.digest(key).map_err(|e| e.to_string());
        let (Ok(first), Ok(again), Ok(elsewhere), Ok(another)) = (
            digest(&hasher, &key),
            digest(&hasher, &key),
            digest(&other, &key),
            digest(&hasher, &PlainKey::mint(Environment::Live)),
        ) else {
            unreachable!("a valid hasher hashes")
        };
        assert!(first.ct_eq(&again));
        assert!(!first.ct_eq(&elsewhere));
        assert!(!first.ct_eq(&another));
    }

    #[test]
    fn a_failed_hash_is_an_error_not_a_digest() {
        // `new` refuses such a salt; built by hand, it makes Argon2 itself fail (salt too short).
        let Ok(valid) = KeyHasher::new(fast(), KeyHasher::generate_salt()) else { unreachable!("valid params") };
        let broken = KeyHasher { salt: SecretSlice::from(vec![0u8; 3]), ..valid };
        for key in [PlainKey::mint(Environment::Live), PlainKey::mint(Environment::Live)] {
            let result = broken.digest(&key);
            assert!(matches!(result, Err(KdfError::Hash(_))), "a key that cannot be hashed got {result:?}");
        }
    }

    #[test]
    fn params_round_trip_and_validate() {
        let params = KdfParams::default();
        assert_eq!(params.to_string(), "argon2id$m=19456,t=2,p=1");
        assert_eq!(params.to_string().parse::<KdfParams>().ok(), Some(params));
        assert!("bcrypt$x".parse::<KdfParams>().is_err());
        let bad = KdfParams { m_cost_kib: 1, t_cost: 0, p_cost: 1 };
        assert!(KeyHasher::new(bad, KeyHasher::generate_salt()).is_err());
        assert!(KeyHasher::new(params, SecretSlice::from(vec![0u8; 3])).is_err());
    }
}
