-- Identity hardening.
-- * E-mail addresses are unique per enterprise, not platform-wide, so creating a user never
--   tells one enterprise whether another has an account with that address (login still works
--   by address alone: see `auth::password`). SQLite cannot drop a column constraint, so the
--   table is rebuilt; no table references users.
-- * token_generation: bumped when a password changes or the user is deactivated; access tokens
--   carry the generation they were issued under and stop working when it moves on.
-- * API keys may expire.
CREATE TABLE users_new (
    id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('platform_admin', 'enterprise_admin', 'viewer')),
    platform_access INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deactivated')),
    password_hash TEXT NOT NULL,
    token_generation INTEGER NOT NULL DEFAULT 0,
    last_login_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (enterprise_id, email)
);
INSERT INTO users_new (id, enterprise_id, email, name, role, platform_access, status, password_hash,
                       last_login_at, created_at, updated_at)
SELECT id, enterprise_id, email, name, role, platform_access, status, password_hash,
       last_login_at, created_at, updated_at
FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
CREATE INDEX users_by_enterprise ON users (enterprise_id, created_at, id);
CREATE INDEX users_by_email ON users (email, created_at, id);

ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;

-- Before this migration a demotion kept the platform grant; a viewer never has platform rights.
UPDATE users SET platform_access = 0 WHERE role = 'viewer';
