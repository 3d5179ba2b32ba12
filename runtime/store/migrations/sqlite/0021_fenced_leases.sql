-- Fenced leases: every claim of an execution raises its epoch, and every write of a claimed
-- execution (step results, API-call rows, parking, finishing, releasing) is conditional on the
-- owner and epoch it was claimed with, so a node that stalled past its lease can never
-- overwrite, finish or release work another node took over.
ALTER TABLE executions ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;

-- Never holds a row: a fenced write first tries to insert a NULL here when its lease is no
-- longer held, and the NOT NULL constraint aborts the whole transaction (see the store's
-- batch.rs, Batch::fence).
CREATE TABLE lease_fence (held INTEGER NOT NULL);
