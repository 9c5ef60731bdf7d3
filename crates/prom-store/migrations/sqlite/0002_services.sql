-- Services: the paid MCP servers the gateway serves at /mcp/{slug}.
-- upstream is the JSON of prom_core::service::Upstream; prices a JSON object tool -> "amount"
-- (decimal strings, so u128 amounts stay exact). Deleted services keep their row (deleted_at) for
-- the audit history; their slug becomes free again.

CREATE TABLE services (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    slug        TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    upstream    TEXT NOT NULL,
    prices      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted_at  INTEGER
);
CREATE UNIQUE INDEX services_live_slug ON services (slug) WHERE deleted_at IS NULL;
CREATE INDEX services_tenant ON services (tenant_id);
