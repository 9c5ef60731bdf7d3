-- Settlements: one ledger transfer_from per batch of captured charges of a (tenant, service).
-- A batch is recorded (with the created_at_time and memo it will use) before the ledger is called,
-- so a retry after a crash re-submits the identical transaction and the ledger deduplicates it.
CREATE TABLE settlements (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    service         TEXT NOT NULL,
    amount          TEXT NOT NULL,
    created_at_time TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'done')),
    block           TEXT,
    created_at      INTEGER NOT NULL,
    settled_at      INTEGER
);
CREATE INDEX settlements_pending ON settlements (state, tenant_id, service);

ALTER TABLE charges ADD COLUMN settlement_id TEXT REFERENCES settlements (id);
CREATE INDEX charges_settlement ON charges (settlement_id);
