-- The bytes of every stored plugin component, by sha256, so that any node sharing the database
-- can run any plugin (the data directory keeps only a cache of them and of compiled artifacts).
CREATE TABLE plugin_blobs (
    sha256 TEXT PRIMARY KEY,
    bytes BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
