-- Resilience of connections: each connection's policy (and the enterprise's default rate) (circuit breaker and outbound rate
-- limit, JSON), the circuit breakers' state (one row per connection that ever failed; shared
-- by every node), and two more API-call outcomes for calls refused before they left.

ALTER TABLE connections ADD COLUMN resilience TEXT NOT NULL DEFAULT '{}';
-- Calls a minute of each connection that sets no rate limit of its own.
ALTER TABLE enterprises ADD COLUMN outbound_requests_per_minute BIGINT NOT NULL DEFAULT 60;

CREATE TABLE circuits (
    connection_id TEXT PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    state TEXT NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    -- Consecutive failed calls.
    failures BIGINT NOT NULL,
    -- When it opened, or when the trial call of a half-open circuit began (unix ms).
    opened_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX circuits_by_enterprise ON circuits (enterprise_id);

ALTER TABLE api_calls DROP CONSTRAINT api_calls_status_check;
ALTER TABLE api_calls ADD CONSTRAINT api_calls_status_check
    CHECK (status IN ('success', 'error', 'timeout', 'circuit_open', 'rate_limited'));
