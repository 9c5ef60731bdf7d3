//! Prometheus domain types and rules, with no I/O.
//!
//! Everything a request handler or a store needs to agree on lives here: the API key format
//! ([`key`]), ids and timestamps ([`id`], [`time`]), tenants, roles and scopes ([`access`]),
//! labels, e-mail addresses and passwords ([`user`]), session tokens ([`session`]), audit events
//! ([`audit`]) and the storage traits that `prom-store` implements on SQLite and PostgreSQL
//! ([`store`]). Values are checked once, when they are built; past that, code trusts the type.

pub mod access;
pub mod audit;
pub mod budget;
pub mod charge;
pub mod id;
pub mod kdf;
pub mod key;
pub mod ledger;
pub mod limit;
pub mod money;
pub mod oauth;
pub mod service;
pub mod session;
pub mod store;
pub mod time;
pub mod usage;
pub mod user;
pub mod wallet;

/// Fills `buf` from the operating system's CSPRNG.
///
/// The OS generator failing is not something a caller can recover from or work around, and a key
/// minted from anything weaker would be a silent disaster, so this is the one place that aborts.
pub fn os_random(buf: &mut [u8]) {
    #[expect(clippy::panic, reason = "no safe fallback exists when the OS CSPRNG is unavailable")]
    if let Err(err) = getrandom::fill(buf) {
        panic!("the operating system's random number generator failed: {err}");
    }
}
