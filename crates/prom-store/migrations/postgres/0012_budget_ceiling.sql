-- While `PUT /v1/services/{slug}/allowance` takes an approval that may lower the allowance to the
-- ledger, new holds keep a budget's held + unsettled within the new amount (NULL: no ceiling).
ALTER TABLE budgets ADD COLUMN ceiling TEXT;
