-- One row per JSON-RPC request through the gateway.
CREATE TABLE usage_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at             INTEGER NOT NULL,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    key_id         TEXT NOT NULL REFERENCES api_keys (id),
    service        TEXT NOT NULL,
    method         TEXT NOT NULL,
    tool           TEXT,
    outcome        TEXT NOT NULL,
    latency_us     INTEGER NOT NULL,
    request_bytes  INTEGER NOT NULL,
    response_bytes INTEGER NOT NULL
);
CREATE INDEX usage_events_tenant_at ON usage_events (tenant_id, at);
CREATE INDEX usage_events_key_at ON usage_events (key_id, at);
