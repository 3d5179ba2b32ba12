-- Admission pushes back: an execute or webhook trigger is refused (429) while the enterprise
-- has this many executions queued (status 'queued'); see the engine's admission.rs.
ALTER TABLE enterprises ADD COLUMN max_queued_executions INTEGER NOT NULL DEFAULT 10000;

-- Admission counts the enterprise's queued executions on every bounded trigger: only the
-- queued rows are in this index, so the count reads at most the bound's worth of entries.
CREATE INDEX executions_queued_by_enterprise ON executions (enterprise_id) WHERE status = 'queued';
