-- How many of an execution's steps succeeded (what the API calls `steps_completed`);
-- `steps_completed` stays the number of committed step results, where a run resumes.
ALTER TABLE executions ADD COLUMN steps_succeeded BIGINT NOT NULL DEFAULT 0;
UPDATE executions SET steps_succeeded =
  (SELECT COUNT(*) FROM step_results s WHERE s.execution_id = executions.id AND s.status = 'success');
-- Whether a connection's calls check their output against the operation's output_schema.
ALTER TABLE connections ADD COLUMN validate_output BIGINT NOT NULL DEFAULT 0;
-- A plugin version may also be 'deprecated' (it serves the connections that pin it; no new pin
-- may choose it) or 'pending' (it declares more than the version before it and waits for an
-- admin's approval).
ALTER TABLE plugins DROP CONSTRAINT IF EXISTS plugins_status_check;
ALTER TABLE plugins ADD CONSTRAINT plugins_status_check CHECK (status IN ('active', 'deprecated', 'disabled', 'pending'));
