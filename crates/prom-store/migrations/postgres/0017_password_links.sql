-- Password links: one-time links with which a user sets a password (a member added by e-mail,
-- who has an empty password_hash until then, or a reset). digest is the digest of the link's
-- secret (the secret itself is never stored); used_at is set when the link is used, or when
-- another link of the same user was.
CREATE TABLE password_links (
    digest     BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX password_links_user ON password_links (user_id);
