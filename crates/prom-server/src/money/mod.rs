//! Money: everything that decides what a paid call may spend and moves what it spent.
//!
//! - [`ChargeBook`] (`book.rs`) places, captures and releases the holds of paid calls, applying
//!   the rules of `prom_core::budget` in memory (embedded database) or in transactions
//!   (PostgreSQL).
//! - [`Allowances`] (`approval.rs`, `wallet.rs`) records a tenant's approval after the ledger has
//!   it, and cuts each tenant's wallet into slices, one per budget, from fresh reads of the ledger
//!   (`prom_core::wallet`), so the budgets together never commit more than the wallet can pay.
//! - [`Settler`] (`settler.rs`) moves captured charges to the ledger in batches, exactly once,
//!   and cuts the wallets again every round.
//!
//! Whoever changes a budget's row outside the book does it here, and tells the book: the book's
//! re-read protocol is private to this module.

mod approval;
mod book;
mod settler;
mod wallet;

pub use approval::{Approval, ApprovalError};
pub use book::{ChargeBook, ChargeError};
pub use settler::{SettleReport, Settler};
pub use wallet::Allowances;
