-- The prices a tenant's approval covers (JSON: tool -> decimal amount), recorded with each
-- approval: a later increase applies to the tenant only once it approves again, a decrease at
-- once. NULL for approvals recorded before this version (the current prices apply).
ALTER TABLE budgets ADD COLUMN prices TEXT;
