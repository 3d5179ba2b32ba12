-- The audit log: every change a user or API key made, with who, when, what, and the resource
-- before and after (secrets removed). enterprise_id is NULL for platform-level rows (a failed
-- login for an unknown address). Kept for the enterprise's retention_days.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    enterprise_id TEXT REFERENCES enterprises(id) ON DELETE CASCADE,
    at INTEGER NOT NULL,
    -- user:<id>, api_key:<id>, or email:<address> for a failed login.
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    resource_id TEXT,
    before TEXT,
    after TEXT
);
CREATE INDEX audit_log_by_time ON audit_log (enterprise_id, at, id);
