-- Whether the last call to the ledger for a pending settlement batch went without a definite
-- answer (no answer came back, or the process died during it): the ledger may have carried it out.
-- Set before each call, cleared by a definite refusal. A batch past the ledger's deduplication
-- window that is not in doubt was certainly never carried out, and is submitted anew with a new
-- `created_at_time`; one in doubt is left for an operator (see docs/ARCHITECTURE.md).
ALTER TABLE settlements ADD COLUMN in_doubt BOOLEAN NOT NULL DEFAULT FALSE;
