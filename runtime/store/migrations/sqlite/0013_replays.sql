-- Dead letters and replay: an execution started again from another's failed step records which
-- one it replays and who asked (`user:<id>` or `api_key:<id>`); executions are listed across
-- orchestrations by time.
ALTER TABLE executions ADD COLUMN replay_of TEXT;
ALTER TABLE executions ADD COLUMN replayed_by TEXT;
CREATE INDEX executions_by_replay ON executions (replay_of);
CREATE INDEX executions_by_time ON executions (enterprise_id, created_at, id);
