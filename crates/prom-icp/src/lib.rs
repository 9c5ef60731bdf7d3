//! `IcLedger`: prom-core's `Ledger` on a real ICRC-2 ledger canister of the Internet Computer,
//! through `ic-agent` and `candid`.
//!
//! Everything is behind the cargo feature `icp`; without it this crate is empty and builds none of
//! its dependencies, so the default workspace build stays as lean as it was. Build it with
//! `cargo build -p prom-icp --features icp`.
//!
//! - `wire`: the standard's candid records that the calls use, and their checked conversions to
//!   and from prom-core's types (a `nat` beyond `u128` is refused, never truncated).
//! - `IcLedger`: the `prom_core::ledger::Ledger` implementation. Updates are signed by the
//!   agent's identity, which is the platform's: it spends with `icrc2_transfer_from`. On a real
//!   ledger each user approves the platform from their own wallet; `IcLedger::approve` approves only
//!   from its own identity and refuses any other caller. The server calls `approve` only on the
//!   embedded ledger; `prom serve` does not use `IcLedger` yet.
//!
//! Tests (`tests/main.rs`, one binary): the feature `icp-conformance` (implies `icp`) adds
//! `icrc-ledger-types`, the ledger team's own candid types, as an *optional normal* dependency, and
//! the tests check that every record and error variant encodes and decodes alike across the two
//! type families. A dev-dependency would be simpler to write, but cargo builds dev-dependencies
//! for every workspace test run, feature or not, which would put candid and the ledger types in the
//! default `cargo nextest run --workspace`. `scripts/test` runs
//! `cargo nextest run -p prom-icp --features icp-conformance` as a separate step. With `icp` alone,
//! the conversion tests, the offline `IcLedger` tests and the queries against a fake replica on
//! loopback run (updates need a real replica's certificates). The live test
//! runs against a real replica when `PROM_TEST_ICP_URL`, `PROM_TEST_ICP_LEDGER` and
//! `PROM_TEST_ICP_IDENTITY` are set, and says loudly that it was skipped otherwise.

#[cfg(feature = "icp")]
mod ic_ledger;
#[cfg(feature = "icp")]
pub mod wire;

#[cfg(feature = "icp")]
pub use ic_ledger::{CallFailed, ConnectError, IcLedger, RootKey, load_identity};

/// The agent and candid crates this crate was built with, for callers that build an `Agent`
/// themselves for `IcLedger::new`.
#[cfg(feature = "icp")]
pub use {candid, ic_agent};
