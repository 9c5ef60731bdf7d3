-- The keys page lists a tenant's live (not deleted) keys newest first, a page at a time, with
-- their count: this index holds exactly those keys in that order, so a page and the count read
-- index entries only, however many keys the tenant has.
CREATE INDEX api_keys_live ON api_keys (tenant_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
