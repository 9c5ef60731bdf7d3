-- What the calls of a capped credential (an OAuth grant) hold and spent, changed with the budgets
-- in apply_charges (PostgreSQL; the embedded database keeps limits in its in-memory book).
CREATE TABLE spend_limits (
    key_id TEXT PRIMARY KEY REFERENCES api_keys (id),
    held   TEXT NOT NULL,
    spent  TEXT NOT NULL
);

-- Whether a held charge was placed under a spend limit, so that ending it touches the limit's row
-- and ending any other charge costs no extra statement.
ALTER TABLE charges ADD COLUMN capped BOOLEAN NOT NULL DEFAULT FALSE;
