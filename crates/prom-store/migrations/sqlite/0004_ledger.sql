-- The embedded ICRC-1/ICRC-2 ledger (prom_store::EmbeddedLedger): balances, allowances and the
-- transaction log, in the same database as everything else.
--
-- Accounts are (owner, subaccount): the owner is an opaque id ("tenant:<uuid>", "platform"), the
-- subaccount 64 lowercase hex characters, all zeros for the default account.
-- Amounts are u128 decimal TEXT in both databases, so they stay exact; the ledger never compares or
-- adds them in SQL, only in Rust while it holds the rows' write locks (see src/ledger.rs).
-- Times chosen by clients that may exceed a 64-bit signed integer (expires_at: u64 nanoseconds, where
-- u64::MAX is a common "never") are decimal TEXT too; times the ledger has accepted (created_at_time,
-- ledger_time) are INTEGER nanoseconds.

CREATE TABLE ledger_balances (
    owner      TEXT NOT NULL,
    subaccount TEXT NOT NULL,
    balance    TEXT NOT NULL,
    PRIMARY KEY (owner, subaccount)
);

-- One row per (account, spender) ever approved; an allowance spent to zero or expired stays as a row
-- and reads as no allowance.
CREATE TABLE ledger_allowances (
    owner              TEXT NOT NULL,
    subaccount         TEXT NOT NULL,
    spender_owner      TEXT NOT NULL,
    spender_subaccount TEXT NOT NULL,
    allowance          TEXT NOT NULL,
    expires_at         TEXT,
    PRIMARY KEY (owner, subaccount, spender_owner, spender_subaccount)
);

-- The log: one row (block) per successful mint, burn, transfer (xfer) or approve. dedup_key is the
-- SHA-256 of the caller, the method and all its arguments, set when created_at_time was; it is what
-- makes a retried call answer Duplicate with the original block.
CREATE TABLE ledger_transactions (
    block              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind               TEXT NOT NULL CHECK (kind IN ('mint', 'burn', 'xfer', 'approve')),
    caller             TEXT,
    from_owner         TEXT,
    from_subaccount    TEXT,
    to_owner           TEXT,
    to_subaccount      TEXT,
    spender_owner      TEXT,
    spender_subaccount TEXT,
    amount             TEXT NOT NULL,
    fee                TEXT NOT NULL,
    expected_allowance TEXT,
    expires_at         TEXT,
    memo               BLOB,
    created_at_time    INTEGER,
    ledger_time        INTEGER NOT NULL,
    dedup_key          BLOB UNIQUE
);
