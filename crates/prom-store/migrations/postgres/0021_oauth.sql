-- OAuth 2.1 for interactive agents (docs/OAUTH.md): clients, grants, codes and tokens.
--
-- Every grant is backed by a credential row of its own in api_keys (kind 'grant'), so charges,
-- usage and revocation name it like a key; the keys pages list only kind 'key'. A grant row's
-- digest is a placeholder ('grant:' and the grant id, 42 bytes) that no 32-byte key digest equals.
ALTER TABLE api_keys ADD COLUMN kind TEXT NOT NULL DEFAULT 'key' CHECK (kind IN ('key', 'grant'));
-- The keys page's index (0018) now holds API keys only, so a page and its count still read index
-- entries only.
DROP INDEX api_keys_live;
CREATE INDEX api_keys_live ON api_keys (tenant_id, created_at DESC, id DESC) WHERE deleted_at IS NULL AND kind = 'key';

-- Clients the authorization server knows. redirect_uris is a JSON array of strings. Registered
-- clients no grant ever used (last_used_at NULL) are purged a day after registration.
CREATE TABLE oauth_clients (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    client_uri    TEXT,
    source        TEXT NOT NULL CHECK (source IN ('registered', 'metadata_document', 'configured')),
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX oauth_clients_unused ON oauth_clients (created_at) WHERE source = 'registered' AND last_used_at IS NULL;

-- What one person allowed one client to do with one service. client_id has no foreign key: a
-- metadata document's client may be fetched again and replaced, or a registration purged, and
-- the grant keeps the name it was given under (client_name). scopes is a JSON array of strings;
-- spend_cap a decimal string, like amounts.
CREATE TABLE oauth_grants (
    id          TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL UNIQUE REFERENCES api_keys (id),
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    user_id     TEXT NOT NULL REFERENCES users (id),
    client_id   TEXT NOT NULL,
    client_name TEXT NOT NULL,
    service     TEXT NOT NULL,
    resource    TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    spend_cap   TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX oauth_grants_tenant ON oauth_grants (tenant_id, created_at);

-- Authorization codes and tokens are stored as SHA-256 digests of their cleartext only. used_at
-- is set once, by a conditional update: a code, or a refresh token, is exchanged once.
CREATE TABLE oauth_codes (
    digest         BYTEA PRIMARY KEY,
    grant_id       TEXT NOT NULL REFERENCES oauth_grants (id),
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT
);
CREATE INDEX oauth_codes_expiry ON oauth_codes (expires_at);

CREATE TABLE oauth_tokens (
    digest     BYTEA PRIMARY KEY,
    grant_id   TEXT NOT NULL REFERENCES oauth_grants (id),
    kind       TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT
);
CREATE INDEX oauth_tokens_grant ON oauth_tokens (grant_id);
CREATE INDEX oauth_tokens_expiry ON oauth_tokens (expires_at);
