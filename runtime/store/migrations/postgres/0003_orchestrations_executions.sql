-- Orchestrations (every version kept), executions queued for workers, and step results.

CREATE TABLE orchestrations (
    id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    version BIGINT NOT NULL,
    -- The current definition as JSON.
    definition TEXT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    -- Set for schedule triggers (copied from the definition so the scheduler can query them).
    cron TEXT,
    timezone TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX orchestrations_by_enterprise ON orchestrations (enterprise_id, deleted, created_at, id);

CREATE TABLE orchestration_versions (
    orchestration_id TEXT NOT NULL REFERENCES orchestrations(id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    definition TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (orchestration_id, version)
);

CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    orchestration_id TEXT NOT NULL REFERENCES orchestrations(id) ON DELETE CASCADE,
    orchestration_version BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'success', 'failed', 'partial', 'cancelled')),
    triggered_by TEXT NOT NULL,
    parameters TEXT NOT NULL,
    output TEXT,
    error TEXT,
    idempotency_key TEXT,
    steps_completed BIGINT NOT NULL DEFAULT 0,
    steps_total BIGINT NOT NULL,
    -- Set by POST /executions/{id}/cancel; the worker stops before the next step.
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);
CREATE INDEX executions_queue ON executions (status, created_at);
CREATE INDEX executions_by_orchestration ON executions (enterprise_id, orchestration_id, created_at);
CREATE UNIQUE INDEX executions_idempotency ON executions (enterprise_id, orchestration_id, idempotency_key);

CREATE TABLE step_results (
    execution_id TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('success', 'failed', 'skipped')),
    system TEXT,
    operation TEXT,
    input TEXT,
    output TEXT,
    error TEXT,
    attempts BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    -- Trace material as JSON: attempts with plugin timings, plugin log lines, stderr.
    detail TEXT,
    PRIMARY KEY (execution_id, position)
);

-- One row per schedule slot that fired: the primary key makes a slot fire once across nodes.
CREATE TABLE schedule_fires (
    orchestration_id TEXT NOT NULL REFERENCES orchestrations(id) ON DELETE CASCADE,
    slot BIGINT NOT NULL,
    fired_at BIGINT NOT NULL,
    PRIMARY KEY (orchestration_id, slot)
);
