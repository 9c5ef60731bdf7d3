-- What the ledger can still pay for a budget as last read (the allowance left and the wallet's
-- balance, the smaller, less the fee of the transfer that pays it): new holds keep held +
-- unsettled within it. NULL: not read yet. It replaces capping `approved`, which hid what the
-- person approved and could put the approval below what was already committed.
ALTER TABLE budgets ADD COLUMN ledger_cap TEXT;
