-- An execution may be 'paused': a step ran out of attempts and its `on_exhausted` is `pause`;
-- it holds no lease and waits for POST /executions/{id}/resume.
--
-- SQLite cannot change a CHECK, and rebuilding `executions` would cascade into its step results
-- (migrations run in a transaction, where foreign keys cannot be switched off). The constraint
-- only grows (every stored row still satisfies it), which SQLite allows through the stored
-- schema text: the one `IN (...)` list of the table gains 'paused'. `RESET` makes this
-- connection read the schema again; the index below raises the schema version, so every
-- other connection does too.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql, '''partial'', ''cancelled'')', '''partial'', ''cancelled'', ''paused'')')
WHERE type = 'table' AND name = 'executions';
PRAGMA writable_schema = RESET;
-- Paused executions are listed and resumed by filter within an enterprise.
CREATE INDEX executions_by_status ON executions (enterprise_id, status, created_at);
