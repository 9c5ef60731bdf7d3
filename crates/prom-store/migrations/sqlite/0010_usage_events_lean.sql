-- usage_events is the embedded database's busiest insert (one row per gateway request, free calls
-- included), so it is rebuilt to cost about half as much to write (measured: docs/BENCHMARKS.md):
-- - a plain rowid key instead of AUTOINCREMENT, which wrote `sqlite_sequence` with every insert
--   (rows are never deleted, so ids still only grow);
-- - no foreign keys, which looked up the tenant and the key for every row: tenants and keys are
--   never deleted (a key is revoked or marked deleted), so the checks could not fail;
-- - one index, (tenant, time), which every usage report uses: reports are always of one tenant,
--   and a key's or a service's usage is read within that tenant's range.
CREATE TABLE usage_events_lean (
    id             INTEGER PRIMARY KEY,
    at             INTEGER NOT NULL,
    tenant_id      TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    service        TEXT NOT NULL,
    method         TEXT NOT NULL,
    tool           TEXT,
    outcome        TEXT NOT NULL,
    latency_us     INTEGER NOT NULL,
    request_bytes  INTEGER NOT NULL,
    response_bytes INTEGER NOT NULL
);
INSERT INTO usage_events_lean
SELECT id, at, tenant_id, key_id, service, method, tool, outcome, latency_us, request_bytes, response_bytes
FROM usage_events;
DROP TABLE usage_events;
ALTER TABLE usage_events_lean RENAME TO usage_events;
CREATE INDEX usage_events_tenant_at ON usage_events (tenant_id, at);
