-- Admission pushes back: an execute or webhook trigger is refused (429) while the enterprise
-- has this many executions queued (status 'queued'); see the engine's admission.rs.
ALTER TABLE enterprises ADD COLUMN max_queued_executions BIGINT NOT NULL DEFAULT 10000;

-- Admission counts the enterprise's queued executions on every bounded trigger: only the
-- queued rows are in this index, so the count reads at most the bound's worth of entries.
CREATE INDEX executions_queued_by_enterprise ON executions (enterprise_id) WHERE status = 'queued';

-- The places left in the enterprise's queue (NULL: no such enterprise), for an admission that
-- inserts only when there is one. It first takes a transaction-scoped advisory lock on the
-- enterprise, held until the admission commits, so admissions of one enterprise run one after
-- another across every node. Being VOLATILE, its query reads a snapshot taken after the lock
-- (not the calling statement's), so it sees every admission committed before: two
-- admissions never both take the last place, and the admission stays one statement.
CREATE FUNCTION admission_room(enterprise TEXT) RETURNS BIGINT LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    room BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('admission:' || enterprise, 0));
    SELECT e.max_queued_executions
           - (SELECT COUNT(*) FROM executions q WHERE q.enterprise_id = enterprise AND q.status = 'queued')
      INTO room
      FROM enterprises e WHERE e.id = enterprise;
    RETURN room;
END
$$;
