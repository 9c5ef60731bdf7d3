-- Budgets (the allowance mirror and what is committed against it) and charges (one per paid call).
-- Amounts are exact decimal strings (u128 does not fit SQL integers); every change to a budget
-- happens under its row lock, computed in Rust.
CREATE TABLE budgets (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    service    TEXT NOT NULL,
    approved   TEXT NOT NULL,
    expires_at INTEGER,
    held       TEXT NOT NULL,
    unsettled  TEXT NOT NULL,
    settled    TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, service)
);

CREATE TABLE charges (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    service     TEXT NOT NULL,
    key_id      TEXT NOT NULL REFERENCES api_keys (id),
    tool        TEXT NOT NULL,
    amount      TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('held', 'captured', 'released', 'settled')),
    created_at  INTEGER NOT NULL,
    resolved_at INTEGER
);
CREATE INDEX charges_budget_state ON charges (tenant_id, service, state);
CREATE INDEX charges_key ON charges (key_id, created_at);
