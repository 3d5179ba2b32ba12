-- Orchestrations (every version kept), executions queued for workers, and step results.

CREATE TABLE orchestrations (
    id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    -- The current definition as JSON.
    definition TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    -- Set for schedule triggers (copied from the definition so the scheduler can query them).
    cron TEXT,
    timezone TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX orchestrations_by_enterprise ON orchestrations (enterprise_id, deleted, created_at, id);

CREATE TABLE orchestration_versions (
    orchestration_id TEXT NOT NULL REFERENCES orchestrations(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (orchestration_id, version)
);

CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    orchestration_id TEXT NOT NULL REFERENCES orchestrations(id) ON DELETE CASCADE,
    orchestration_version INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'success', 'failed', 'partial', 'cancelled')),
    triggered_by TEXT NOT NULL,
    parameters TEXT NOT NULL,
    output TEXT,
    error TEXT,
    idempotency_key TEXT,
    steps_completed INTEGER NOT NULL DEFAULT 0,
    steps_total INTEGER NOT NULL,
    -- Set by POST /executions/{id}/cancel; the worker stops before the next step.
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
);
CREATE INDEX executions_queue ON executions (status, created_at);
CREATE INDEX executions_by_orchestration ON executions (enterprise_id, orchestration_id, created_at);
CREATE UNIQUE INDEX executions_idempotency ON executions (enterprise_id, orchestration_id, idempotency_key);

CREATE TABLE step_results (
    execution_id TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('success', 'failed', 'skipped')),
    system TEXT,
    operation TEXT,
    input TEXT,
    output TEXT,
    error TEXT,
    attempts INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    -- Trace material as JSON: attempts with plugin timings, plugin log lines, stderr.
    detail TEXT,
    PRIMARY KEY (execution_id, position)
);

-- One row per schedule slot that fired: the primary key makes a slot fire once across nodes.
CREATE TABLE schedule_fires (
    orchestration_id TEXT NOT NULL REFERENCES orchestrations(id) ON DELETE CASCADE,
    slot INTEGER NOT NULL,
    fired_at INTEGER NOT NULL,
    PRIMARY KEY (orchestration_id, slot)
);
