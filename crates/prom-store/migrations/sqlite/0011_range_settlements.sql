-- A settlement of the embedded database covers a budget's captured charges up to a point in the
-- order they were written, instead of marking each of them twice (its batch, then `settled`):
-- each of those updates rewrote the row and an index entry, which cost paid calls more than
-- deciding them (measured: docs/BENCHMARKS.md).
--
-- `charges` gets that order as an explicit `seq` (an alias of the rowid, which VACUUM keeps) and is
-- otherwise unchanged; `settlements.upto` is the `seq` of the last charge a batch covers. A batch
-- with `upto` covers the captured charges of its budget with `seq` above the previous batch's
-- `upto` and at most its own; those charges keep state `captured` and no `settlement_id`. Batches
-- recorded before this migration (`upto` NULL) name their charges one by one, as before.
-- The charge log's trigger names `charges`: set aside while the table is rebuilt.
DROP TRIGGER charge_log_once;
CREATE TABLE charges_seq (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    service       TEXT NOT NULL,
    key_id        TEXT NOT NULL REFERENCES api_keys (id),
    tool          TEXT NOT NULL,
    amount        TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('held', 'captured', 'released', 'settled')),
    created_at    INTEGER NOT NULL,
    resolved_at   INTEGER,
    settlement_id TEXT REFERENCES settlements (id)
);
INSERT INTO charges_seq (id, tenant_id, service, key_id, tool, amount, state, created_at, resolved_at, settlement_id)
SELECT id, tenant_id, service, key_id, tool, amount, state, created_at, resolved_at, settlement_id
FROM charges ORDER BY rowid;
DROP TABLE charges;
ALTER TABLE charges_seq RENAME TO charges;
CREATE INDEX charges_budget_state ON charges (tenant_id, service, state);
CREATE INDEX charges_key ON charges (key_id, created_at);
CREATE INDEX charges_settlement ON charges (settlement_id) WHERE settlement_id IS NOT NULL;
CREATE TRIGGER charge_log_once BEFORE INSERT ON charge_log
WHEN EXISTS (SELECT 1 FROM charges WHERE id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'UNIQUE constraint failed: charges.id');
END;

ALTER TABLE settlements ADD COLUMN upto INTEGER;
CREATE INDEX settlements_budget_upto ON settlements (tenant_id, service, upto);

-- Each charge with the batch that settles it and its state as a reader should see it: `settled`
-- once that batch is done (for operators and tests; the server reads the tables).
CREATE VIEW charges_settled AS
SELECT c.seq, c.id, c.tenant_id, c.service, c.key_id, c.tool, c.amount, c.created_at, c.resolved_at,
       COALESCE(c.settlement_id, b.id) AS settlement_id,
       CASE WHEN c.state = 'captured' AND b.state = 'done' THEN 'settled' ELSE c.state END AS state
FROM charges AS c
LEFT JOIN settlements AS b ON c.state = 'captured' AND c.settlement_id IS NULL AND b.id = (
    SELECT s.id FROM settlements AS s
    WHERE s.tenant_id = c.tenant_id AND s.service = c.service AND s.upto >= c.seq
    ORDER BY s.upto LIMIT 1
);
