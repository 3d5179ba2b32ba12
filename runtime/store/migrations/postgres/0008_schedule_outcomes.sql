-- A schedule slot is fired or recorded as missed (with why); an orchestration shows its last
-- failure to fire until a slot fires again.
ALTER TABLE schedule_fires ADD COLUMN status TEXT NOT NULL DEFAULT 'fired';
ALTER TABLE schedule_fires ADD COLUMN error TEXT;
ALTER TABLE orchestrations ADD COLUMN schedule_error TEXT;
ALTER TABLE orchestrations ADD COLUMN schedule_error_at BIGINT;
