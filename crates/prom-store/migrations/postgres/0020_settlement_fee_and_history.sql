-- The ledger's fee for each completed settlement batch (a decimal string, like amounts), shown on
-- the paying tenant's wallet page; NULL while pending, and for batches completed before it was
-- recorded. The wallet page lists a tenant's batches newest first.
ALTER TABLE settlements ADD COLUMN fee TEXT;
CREATE INDEX settlements_tenant_created ON settlements (tenant_id, created_at, id);
-- A publisher's earnings read the charges of its services' slugs in a time range.
CREATE INDEX charges_service_created ON charges (service, created_at);
