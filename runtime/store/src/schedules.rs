//! Schedule slots: which orchestrations fire, each slot fired or recorded missed once across
//! nodes, and the orchestration's last failure to fire.

use sqlx::FromRow;

use dibop_core::now_ms;

use super::Store;
use super::orchestrations::{ORCHESTRATION, OrchestrationRow};

impl Store {
    /// Active, scheduled orchestrations of every enterprise, with their cron and time zone.
    pub async fn scheduled_orchestrations(&self) -> sqlx::Result<Vec<(OrchestrationRow, String, String)>> {
        #[derive(FromRow)]
        struct Scheduled {
            #[sqlx(flatten)]
            row: OrchestrationRow,
            cron: String,
            timezone: String,
        }
        let rows: Vec<Scheduled> = sqlx::query_as(&format!(
            "SELECT {ORCHESTRATION}, cron, timezone FROM orchestrations \
             WHERE deleted = 0 AND status = 'active' AND cron IS NOT NULL AND timezone IS NOT NULL"
        ))
        .fetch_all(self.reads())
        .await?;
        Ok(rows.into_iter().map(|s| (s.row, s.cron, s.timezone)).collect())
    }

    /// Claims one schedule slot; `false` when it already fired (on this node or another).
    pub async fn claim_slot(&self, orchestration_id: &str, slot_ms: i64) -> sqlx::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO schedule_fires (orchestration_id, slot, fired_at) VALUES ($1, $2, $3) \
             ON CONFLICT (orchestration_id, slot) DO NOTHING",
        )
        .bind(orchestration_id)
        .bind(slot_ms)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records that a slot of `orchestration_id` did not fire, and why, on the slot and on the
    /// orchestration. `claimed`: the caller claimed the slot before (it is marked missed); else
    /// a slot someone claimed meanwhile is left alone.
    pub async fn schedule_missed(
        &self,
        orchestration_id: &str,
        slot_ms: i64,
        error: &str,
        claimed: bool,
    ) -> sqlx::Result<()> {
        let now = now_ms();
        let on_conflict = if claimed { "DO UPDATE SET status = 'missed', error = $4" } else { "DO NOTHING" };
        let mut tx = self.pool.begin().await?;
        let recorded = sqlx::query(&format!(
            "INSERT INTO schedule_fires (orchestration_id, slot, fired_at, status, error) VALUES ($1, $2, $3, 'missed', $4) \
             ON CONFLICT (orchestration_id, slot) {on_conflict}"
        ))
        .bind(orchestration_id)
        .bind(slot_ms)
        .bind(now)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        if recorded.rows_affected() == 1 {
            sqlx::query("UPDATE orchestrations SET schedule_error = $2, schedule_error_at = $3 WHERE id = $1")
                .bind(orchestration_id)
                .bind(error)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    /// The latest slot of the orchestration that fired or was recorded.
    pub async fn last_slot(&self, orchestration_id: &str) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar("SELECT MAX(slot) FROM schedule_fires WHERE orchestration_id = $1")
            .bind(orchestration_id)
            .fetch_one(self.reads())
            .await
    }

    /// Clears the orchestration's schedule error after a slot fired.
    pub async fn schedule_fired(&self, orchestration_id: &str) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE orchestrations SET schedule_error = NULL, schedule_error_at = NULL \
             WHERE id = $1 AND schedule_error IS NOT NULL",
        )
        .bind(orchestration_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
