-- Identity hardening.
-- * E-mail addresses are unique per enterprise, not platform-wide, so creating a user never
--   tells one enterprise whether another has an account with that address (login still works
--   by address alone: see `auth::password`).
-- * token_generation: bumped when a password changes or the user is deactivated; access tokens
--   carry the generation they were issued under and stop working when it moves on.
-- * API keys may expire.
ALTER TABLE users DROP CONSTRAINT users_email_key;
ALTER TABLE users ADD CONSTRAINT users_enterprise_email_key UNIQUE (enterprise_id, email);
CREATE INDEX users_by_email ON users (email, created_at, id);
ALTER TABLE users ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;

ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;

-- Before this migration a demotion kept the platform grant; a viewer never has platform rights.
UPDATE users SET platform_access = 0 WHERE role = 'viewer';
