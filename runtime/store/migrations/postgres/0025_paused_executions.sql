-- An execution may be 'paused': a step ran out of attempts and its `on_exhausted` is `pause`;
-- it holds no lease and waits for POST /executions/{id}/resume.
ALTER TABLE executions DROP CONSTRAINT IF EXISTS executions_status_check;
ALTER TABLE executions ADD CONSTRAINT executions_status_check
    CHECK (status IN ('queued', 'running', 'success', 'failed', 'partial', 'cancelled', 'paused'));
-- Paused executions are listed and resumed by filter within an enterprise.
CREATE INDEX executions_by_status ON executions (enterprise_id, status, created_at);
