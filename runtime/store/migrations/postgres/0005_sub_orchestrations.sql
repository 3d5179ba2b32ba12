-- Executions started by a sub_orchestration step point at the execution that started them;
-- depth bounds how deeply orchestrations may start one another.
ALTER TABLE executions ADD COLUMN parent_execution_id TEXT;
ALTER TABLE executions ADD COLUMN depth BIGINT NOT NULL DEFAULT 0;
CREATE INDEX executions_by_parent ON executions (parent_execution_id);
