-- When each sign-in session was last used (the dashboard lists a member's sessions with it).
-- Existing sessions start at their creation.
ALTER TABLE sessions ADD COLUMN last_seen_at BIGINT;
UPDATE sessions SET last_seen_at = created_at;
ALTER TABLE sessions ALTER COLUMN last_seen_at SET NOT NULL;
-- Revoking a member's sessions in a tenant, when the member is removed, finds them by user.
CREATE INDEX sessions_user ON sessions (user_id, tenant_id);
