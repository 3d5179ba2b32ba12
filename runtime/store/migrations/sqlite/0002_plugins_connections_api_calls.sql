-- Plugins (WebAssembly components), connections (an enterprise's configured systems) and the
-- log of every outbound request a plugin made.

CREATE TABLE plugins (
    id TEXT PRIMARY KEY,
    -- NULL for the global catalogue, else the enterprise that uploaded a private plugin.
    enterprise_id TEXT REFERENCES enterprises(id) ON DELETE CASCADE,
    -- 'global' or the enterprise id: one slug+version per scope.
    scope TEXT NOT NULL,
    slug TEXT NOT NULL,
    version TEXT NOT NULL,
    world TEXT NOT NULL CHECK (world IN ('connector', 'transform')),
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    -- The full describe() answer as JSON.
    info TEXT NOT NULL,
    bundled INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at INTEGER NOT NULL,
    UNIQUE (scope, slug, version)
);
CREATE INDEX plugins_by_slug ON plugins (slug, status);

CREATE TABLE connections (
    id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    system TEXT NOT NULL,
    config TEXT NOT NULL,
    -- XChaCha20-Poly1305 sealed JSON object of the credentials (base64 of nonce || ciphertext).
    credentials TEXT NOT NULL,
    allowed_hosts TEXT NOT NULL,
    memory_limit_mb INTEGER NOT NULL DEFAULT 64,
    timeout_ms INTEGER NOT NULL DEFAULT 30000,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (enterprise_id, name)
);
CREATE INDEX connections_by_system ON connections (enterprise_id, system);

CREATE TABLE api_calls (
    id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    timestamp INTEGER NOT NULL,
    system TEXT NOT NULL,
    connection_id TEXT,
    connection TEXT,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    status_code INTEGER,
    status TEXT NOT NULL CHECK (status IN ('success', 'error', 'timeout')),
    duration_ms INTEGER NOT NULL,
    request_bytes INTEGER NOT NULL,
    response_bytes INTEGER NOT NULL,
    request_preview TEXT,
    response_preview TEXT,
    error TEXT,
    orchestration_id TEXT,
    execution_id TEXT,
    step TEXT
);
-- Every list filters by enterprise and orders by time; the others narrow the common filters.
CREATE INDEX api_calls_by_time ON api_calls (enterprise_id, timestamp, id);
CREATE INDEX api_calls_by_system ON api_calls (enterprise_id, system, timestamp);
CREATE INDEX api_calls_by_status ON api_calls (enterprise_id, status, timestamp);
CREATE INDEX api_calls_by_execution ON api_calls (enterprise_id, execution_id);
CREATE INDEX api_calls_by_orchestration ON api_calls (enterprise_id, orchestration_id, timestamp);
