-- How many of an execution's steps succeeded (what the API calls `steps_completed`);
-- `steps_completed` stays the number of committed step results, where a run resumes.
ALTER TABLE executions ADD COLUMN steps_succeeded INTEGER NOT NULL DEFAULT 0;
UPDATE executions SET steps_succeeded =
  (SELECT COUNT(*) FROM step_results s WHERE s.execution_id = executions.id AND s.status = 'success');
-- Whether a connection's calls check their output against the operation's output_schema.
ALTER TABLE connections ADD COLUMN validate_output INTEGER NOT NULL DEFAULT 0;
-- A plugin version may also be 'deprecated' (it serves the connections that pin it; no new pin
-- may choose it) or 'pending' (it declares more than the version before it and waits for an
-- admin's approval). SQLite cannot change a CHECK, so the table is rebuilt (nothing references it).
CREATE TABLE plugins_new (
    id TEXT PRIMARY KEY,
    enterprise_id TEXT REFERENCES enterprises(id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    slug TEXT NOT NULL,
    version TEXT NOT NULL,
    world TEXT NOT NULL CHECK (world IN ('connector', 'transform')),
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    info TEXT NOT NULL,
    bundled INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deprecated', 'disabled', 'pending')),
    created_at INTEGER NOT NULL,
    UNIQUE (scope, slug, version)
);
INSERT INTO plugins_new (id, enterprise_id, scope, slug, version, world, sha256, size_bytes, name, description, info,
                         bundled, status, created_at)
SELECT id, enterprise_id, scope, slug, version, world, sha256, size_bytes, name, description, info, bundled, status,
       created_at FROM plugins;
DROP TABLE plugins;
ALTER TABLE plugins_new RENAME TO plugins;
CREATE INDEX plugins_by_slug ON plugins (slug, status);
