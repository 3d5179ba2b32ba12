-- Host-managed authentication: a connection's auth (type and settings, its secrets included;
-- sealed for the connection, '' for none) and static headers (JSON object), and the OAuth2
-- tokens the host obtained for it (sealed, shared by every node: one refreshes, the others
-- use its token).
ALTER TABLE connections ADD COLUMN auth TEXT NOT NULL DEFAULT '';
ALTER TABLE connections ADD COLUMN headers TEXT NOT NULL DEFAULT '{}';

CREATE TABLE connection_tokens (
    connection_id TEXT PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    -- Sealed; '' until the first token arrives.
    token TEXT NOT NULL,
    -- When it expires, and when it is refreshed (before it expires), unix ms.
    expires_at INTEGER NOT NULL,
    refresh_at INTEGER NOT NULL,
    -- A node refreshing it holds this until then, so the others wait for its token.
    refreshing_until INTEGER,
    updated_at INTEGER NOT NULL
);
