-- Incoming webhooks: each triggers one orchestration with parameters mapped from the request.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    orchestration_id TEXT NOT NULL REFERENCES orchestrations(id) ON DELETE CASCADE,
    -- JSON object: parameter name -> mapping over ${body...} and ${headers...}.
    parameters TEXT NOT NULL,
    signature TEXT NOT NULL CHECK (signature IN ('none', 'hmac-sha256')),
    -- Sealed with the server's secret key: needed in clear to verify HMAC signatures.
    secret TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL
);
CREATE INDEX webhooks_by_enterprise ON webhooks (enterprise_id, created_at, id);
