-- Large values by reference: an execution's output larger than 64 KiB is kept here, out of the
-- executions row that the queue, the claims and every list read; the row keeps its size.
CREATE TABLE payloads (
    execution_id TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    -- What the value is: 'output' (the execution's output).
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (execution_id, name)
);
ALTER TABLE executions ADD COLUMN output_bytes INTEGER;
