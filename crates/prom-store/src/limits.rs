//! Spend limits of credentials (an OAuth grant's spend cap) in `apply_charges`: a `spend_limits`
//! row per capped credential keeps what its calls hold and spent, changed in the same transaction
//! as the budgets and under the same kind of row lock, taken after every budget's and in key
//! order, so that concurrent batches on any node never deadlock and never hold past a cap.
//!
//! A row is made by the first hold under a cap, with `spent` read from the credential's charges
//! (none, for a new grant). The embedded database keeps limits in its in-memory book instead;
//! there the rows are only used by `apply_charges` itself (tests, stale-hold repair).

use prom_core::money::Amount;
use prom_core::store::{StoreError, StoreResult};

#[derive(sqlx::FromRow)]
pub(crate) struct LimitRow {
    pub held: String,
    pub spent: String,
}

/// Locks a limit's row for the rest of the transaction and reads it (`None`: no row yet).
macro_rules! lock_and_read_limit {
    ($executor:expr, $key:expr) => {
        sqlx::query_as::<_, $crate::limits::LimitRow>(
            "UPDATE spend_limits SET held = held WHERE key_id = $1 RETURNING held, spent",
        )
        .bind($key)
        .fetch_optional($executor)
        .await
        .map_err($crate::db_err)
    };
}
pub(crate) use lock_and_read_limit;

/// The amounts of a credential's captured and settled charges.
macro_rules! spent_amounts {
    ($executor:expr, $key:expr) => {
        sqlx::query_scalar::<_, String>(
            "SELECT amount FROM charges WHERE key_id = $1 AND state IN ('captured', 'settled')",
        )
        .bind($key)
        .fetch_all($executor)
        .await
        .map_err($crate::db_err)
    };
}
pub(crate) use spent_amounts;

/// Makes a limit's row; a row made meanwhile by another node wins (and is locked by the next read).
macro_rules! insert_limit {
    ($executor:expr, $key:expr, $spent:expr) => {
        sqlx::query(
            "INSERT INTO spend_limits (key_id, held, spent) VALUES ($1, '0', $2) ON CONFLICT (key_id) DO NOTHING",
        )
        .bind($key)
        .bind($spent.to_string())
        .execute($executor)
        .await
        .map_err($crate::db_err)
    };
}
pub(crate) use insert_limit;

/// Writes a locked limit back.
macro_rules! write_limit {
    ($executor:expr, $key:expr, $limit:expr) => {{
        let limit: &prom_core::limit::SpendLimit = $limit;
        sqlx::query("UPDATE spend_limits SET held = $1, spent = $2 WHERE key_id = $3")
            .bind(limit.held.to_string())
            .bind(limit.spent.to_string())
            .bind($key)
            .execute($executor)
            .await
            .map_err($crate::db_err)
    }};
}
pub(crate) use write_limit;

/// Sums stored decimal amounts exactly.
pub(crate) fn sum(amounts: &[String]) -> StoreResult<Amount> {
    amounts.iter().try_fold(Amount::ZERO, |total, raw| {
        let amount: Amount =
            raw.parse().map_err(|_| StoreError::Corrupt(format!("stored amount {raw:?} is not a decimal")))?;
        total.checked_add(amount).ok_or_else(|| StoreError::Corrupt("a credential's charges overflow".into()))
    })
}

/// Reads a limit row's amounts.
pub(crate) fn parse(row: &LimitRow) -> StoreResult<(Amount, Amount)> {
    let parse = |raw: &str| {
        raw.parse::<Amount>().map_err(|_| StoreError::Corrupt(format!("stored amount {raw:?} is not a decimal")))
    };
    Ok((parse(&row.held)?, parse(&row.spent)?))
}
