//! Retention: what is older than each enterprise's `retention_days` goes.

use dibop_core::now_ms;

use super::Store;

impl Store {
    /// Deletes finished executions (with their step results, the trace material), API-call rows
    /// and audit-log rows older than their enterprise's `retention_days`; answers how many
    /// executions and API calls went.
    /// Canonical records are kept.
    pub async fn purge_expired(&self) -> sqlx::Result<(u64, u64)> {
        let now = now_ms();
        // One transaction: a reader never sees an execution gone and its API calls still there.
        let mut tx = self.pool.begin().await?;
        let cutoff = "$1 - (SELECT retention_days FROM enterprises e WHERE e.id = {table}.enterprise_id) * 86400000";
        let executions = sqlx::query(&format!(
            "DELETE FROM executions WHERE status IN ('success', 'failed', 'partial', 'cancelled') \
             AND created_at < {}",
            cutoff.replace("{table}", "executions")
        ))
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let api_calls =
            sqlx::query(&format!("DELETE FROM api_calls WHERE timestamp < {}", cutoff.replace("{table}", "api_calls")))
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        sqlx::query(&format!(
            "DELETE FROM audit_log WHERE enterprise_id IS NOT NULL AND at < {}",
            cutoff.replace("{table}", "audit_log")
        ))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Platform-level rows (failed logins of unknown addresses) are kept 90 days.
        sqlx::query("DELETE FROM audit_log WHERE enterprise_id IS NULL AND at < $1")
            .bind(now - 90 * 86_400_000)
            .execute(&mut *tx)
            .await?;
        // Schedule slots only guard against firing twice; a day of them is plenty.
        sqlx::query("DELETE FROM schedule_fires WHERE fired_at < $1").bind(now - 86_400_000).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok((executions, api_calls))
    }
}
