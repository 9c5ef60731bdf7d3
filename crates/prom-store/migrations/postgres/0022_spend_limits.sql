-- What the calls of a capped credential (an OAuth grant) hold and spent, changed with the budgets
-- in apply_charges (PostgreSQL; the embedded database keeps limits in its in-memory book).
CREATE TABLE spend_limits (
    key_id TEXT PRIMARY KEY REFERENCES api_keys (id),
    held   TEXT NOT NULL,
    spent  TEXT NOT NULL
);
