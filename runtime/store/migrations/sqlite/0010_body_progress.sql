-- Steps finished inside for_each/parallel bodies of an execution parked by a long wait in a
-- body: replayed when the execution resumes (nothing runs twice), deleted once the container
-- step's own result is committed. `body_parked` says whether there is anything to read.
CREATE TABLE body_steps (
    execution_id TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT,
    partial INTEGER NOT NULL DEFAULT 0,
    -- The step's trace record (JSON), as the container's detail lists it.
    record TEXT NOT NULL,
    PRIMARY KEY (execution_id, label)
);
ALTER TABLE executions ADD COLUMN body_parked INTEGER NOT NULL DEFAULT 0;
-- Why a failed or cancelled execution ended: STEP_FAILED, OUTPUT_FAILED, CANCELLED, INTERNAL.
ALTER TABLE executions ADD COLUMN error_code TEXT;
