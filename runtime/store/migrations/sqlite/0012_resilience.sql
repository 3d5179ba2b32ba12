-- Resilience of connections: each connection's policy (and the enterprise's default rate) (circuit breaker and outbound rate
-- limit, JSON), the circuit breakers' state (one row per connection that ever failed), and two
-- more API-call outcomes for calls refused before they left (SQLite cannot change a CHECK, so
-- the table is rebuilt).

ALTER TABLE connections ADD COLUMN resilience TEXT NOT NULL DEFAULT '{}';
-- Calls a minute of each connection that sets no rate limit of its own.
ALTER TABLE enterprises ADD COLUMN outbound_requests_per_minute INTEGER NOT NULL DEFAULT 60;

CREATE TABLE circuits (
    connection_id TEXT PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    state TEXT NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    -- Consecutive failed calls.
    failures INTEGER NOT NULL,
    -- When it opened, or when the trial call of a half-open circuit began (unix ms).
    opened_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE INDEX circuits_by_enterprise ON circuits (enterprise_id);

CREATE TABLE api_calls_new (
    id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    timestamp INTEGER NOT NULL,
    system TEXT NOT NULL,
    connection_id TEXT,
    connection TEXT,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    status_code INTEGER,
    status TEXT NOT NULL CHECK (status IN ('success', 'error', 'timeout', 'circuit_open', 'rate_limited')),
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
INSERT INTO api_calls_new SELECT id, enterprise_id, timestamp, system, connection_id, connection, method, url,
    status_code, status, duration_ms, request_bytes, response_bytes, request_preview, response_preview, error,
    orchestration_id, execution_id, step FROM api_calls;
DROP TABLE api_calls;
ALTER TABLE api_calls_new RENAME TO api_calls;
CREATE INDEX api_calls_by_time ON api_calls (enterprise_id, timestamp, id);
CREATE INDEX api_calls_by_system ON api_calls (enterprise_id, system, timestamp);
CREATE INDEX api_calls_by_status ON api_calls (enterprise_id, status, timestamp);
CREATE INDEX api_calls_by_execution ON api_calls (enterprise_id, execution_id);
CREATE INDEX api_calls_by_orchestration ON api_calls (enterprise_id, orchestration_id, timestamp);
