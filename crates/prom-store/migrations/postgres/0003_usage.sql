-- One row per JSON-RPC request through the gateway.
CREATE TABLE usage_events (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             BIGINT NOT NULL,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    key_id         TEXT NOT NULL REFERENCES api_keys (id),
    service        TEXT NOT NULL,
    method         TEXT NOT NULL,
    tool           TEXT,
    outcome        TEXT NOT NULL,
    latency_us     BIGINT NOT NULL,
    request_bytes  BIGINT NOT NULL,
    response_bytes BIGINT NOT NULL
);
CREATE INDEX usage_events_tenant_at ON usage_events (tenant_id, at);
CREATE INDEX usage_events_key_at ON usage_events (key_id, at);
