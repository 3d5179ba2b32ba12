//! The Ed25519 keys platform admins trust to sign plugins (platform-wide, like the global
//! catalogue).

use dibop_core::{new_id, now_ms};
use sqlx::FromRow;

use super::Store;

/// Most trusted signers: an upload's signature is checked against each.
pub const MAX_SIGNERS: i64 = 100;

#[derive(Debug, Clone, FromRow)]
pub struct SignerRow {
    pub id: String,
    pub name: String,
    /// The 32-byte public key, base64.
    pub public_key: String,
    pub created_at: i64,
}

const COLUMNS: &str = "id, name, public_key, created_at";

impl Store {
    /// Every trusted signer, oldest first (at most [`MAX_SIGNERS`]).
    pub async fn signers(&self) -> sqlx::Result<Vec<SignerRow>> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM plugin_signers ORDER BY created_at, id LIMIT {MAX_SIGNERS}"))
            .fetch_all(self.reads())
            .await
    }

    /// Adds a signer; a unique violation when the name or key is taken.
    pub async fn create_signer(&self, name: &str, public_key: &str) -> sqlx::Result<SignerRow> {
        sqlx::query_as(&format!(
            "INSERT INTO plugin_signers (id, name, public_key, created_at) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
        ))
        .bind(new_id())
        .bind(name)
        .bind(public_key)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await
        .and_then(crate::only)
    }

    /// Removes a signer (versions it signed keep their `signed_by`); `None` when there is none.
    pub async fn delete_signer(&self, id: &str) -> sqlx::Result<Option<SignerRow>> {
        sqlx::query_as(&format!("DELETE FROM plugin_signers WHERE id = $1 RETURNING {COLUMNS}"))
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map(crate::first)
    }
}
