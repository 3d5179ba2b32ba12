//! The OAuth2 tokens the host obtained for connections (sealed by the caller), shared by every
//! node: a node about to refresh one claims the refresh for a while, so the others wait for its
//! token instead of asking the token endpoint too.

use super::Store;

/// A stored token (its text still sealed).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub token: String,
    pub expires_at: i64,
    pub refresh_at: i64,
}

impl Store {
    pub async fn connection_token(&self, connection_id: &str) -> sqlx::Result<Option<TokenRow>> {
        sqlx::query_as(
            "SELECT token, expires_at, refresh_at FROM connection_tokens WHERE connection_id = $1 AND token <> ''",
        )
        .bind(connection_id)
        .fetch_optional(&self.pool)
        .await
    }

    /// Claims the refresh of a connection's token until `until`; true for the one caller that
    /// wins it (no claim running, or the last one ran out).
    pub async fn claim_token_refresh(
        &self,
        enterprise_id: &str,
        connection_id: &str,
        now: i64,
        until: i64,
    ) -> sqlx::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO connection_tokens (connection_id, enterprise_id, token, expires_at, refresh_at, refreshing_until, updated_at) \
             VALUES ($1, $2, '', 0, 0, $4, $3) \
             ON CONFLICT (connection_id) DO UPDATE SET refreshing_until = $4, updated_at = $3 \
             WHERE connection_tokens.refreshing_until IS NULL OR connection_tokens.refreshing_until < $3",
        )
        .bind(connection_id)
        .bind(enterprise_id)
        .bind(now)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores a new token and ends the refresh claim.
    pub async fn put_connection_token(
        &self,
        connection_id: &str,
        sealed: &str,
        expires_at: i64,
        refresh_at: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE connection_tokens SET token = $2, expires_at = $3, refresh_at = $4, refreshing_until = NULL, \
             updated_at = $5 WHERE connection_id = $1",
        )
        .bind(connection_id)
        .bind(sealed)
        .bind(expires_at)
        .bind(refresh_at)
        .bind(dibop_core::now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends a refresh claim that got no token.
    pub async fn release_token_refresh(&self, connection_id: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE connection_tokens SET refreshing_until = NULL WHERE connection_id = $1")
            .bind(connection_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets a connection's token (its auth settings changed).
    pub async fn forget_connection_token(&self, connection_id: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM connection_tokens WHERE connection_id = $1")
            .bind(connection_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
