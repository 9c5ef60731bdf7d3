-- The charge log (embedded database only): the one process that keeps the charge book appends
-- every batch of ended paid calls here, in one statement that touches one B-tree, before their
-- results are released. A background task (and every read of a budget, settlement round or usage
-- report, first) folds the log into `charges` and the budgets' `unsettled` in one transaction,
-- hundreds of rows at a time, and empties it. A row is in the log or in `charges`, never both.
CREATE TABLE charge_log (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    service     TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    tool        TEXT NOT NULL,
    amount      TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('captured', 'released')),
    created_at  INTEGER NOT NULL,
    resolved_at INTEGER NOT NULL,
    -- Only a budget that exists can be charged (the fold could not place the charge otherwise).
    FOREIGN KEY (tenant_id, service) REFERENCES budgets (tenant_id, service)
) WITHOUT ROWID;

-- A charge id is charged once: one already folded cannot be logged again.
CREATE TRIGGER charge_log_once BEFORE INSERT ON charge_log
WHEN EXISTS (SELECT 1 FROM charges WHERE id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'UNIQUE constraint failed: charges.id');
END;
