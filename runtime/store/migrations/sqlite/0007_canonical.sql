-- Canonical records: one row per record of a domain, unique per natural key within the enterprise,
-- with where it came from (lineage).
CREATE TABLE canonical_records (
    id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    domain TEXT NOT NULL,
    natural_key TEXT NOT NULL,
    data TEXT NOT NULL,
    -- api (a user or key) or execution.
    source_kind TEXT NOT NULL,
    source_connection TEXT,
    source_system TEXT,
    execution_id TEXT,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (enterprise_id, domain, natural_key)
);
CREATE INDEX canonical_by_domain ON canonical_records (enterprise_id, domain, created_at);
