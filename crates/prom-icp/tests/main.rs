//! prom-icp's one test binary (each binary costs a link of ic-agent, on two cores). Built only
//! with the feature `icp` (`required-features` in Cargo.toml); the tests against
//! `icrc-ledger-types` need `icp-conformance` as well.
//!
//! - `encoding`: our candid records, their conversions to prom-core's types, and (with
//!   `icp-conformance`) their encoding against the ledger team's types.
//! - `ic_ledger`: what `IcLedger` does without a replica: identity files, refused callers, no answer.
//! - `replica`: `IcLedger`'s queries over HTTP against a fake replica on loopback.
//! - `live`: a real ledger, when `PROM_TEST_ICP_*` say where one is.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod encoding;
mod ic_ledger;
mod live;
mod replica;
