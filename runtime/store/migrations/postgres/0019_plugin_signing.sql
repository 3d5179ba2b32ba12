-- Signed plugins: the Ed25519 keys platform admins trust, who signed each plugin version, and
-- whether an enterprise accepts only signed uploads.
CREATE TABLE plugin_signers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    -- The 32-byte Ed25519 public key, base64.
    public_key TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
-- The name of the trusted signer whose key verified the upload (NULL: unsigned).
ALTER TABLE plugins ADD COLUMN signed_by TEXT;
ALTER TABLE enterprises ADD COLUMN require_signed_plugins BIGINT NOT NULL DEFAULT 0;
