//! Reads of executions: one, lists and counts, and the candidates of replays and bulk
//! resumes.

use super::*;

impl Store {
    /// Queued executions of every enterprise (the queue depth), or of one.
    pub async fn queued_executions(&self, enterprise_id: Option<&str>) -> sqlx::Result<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM executions WHERE status = 'queued' AND ($1 IS NULL OR enterprise_id = $1)",
        )
        .bind(enterprise_id)
        .fetch_one(self.reads())
        .await
    }

    /// The enterprise's executions that finished since `since_ms`: (orchestration id, status,
    /// duration in ms, finished at), oldest first.
    pub async fn finished_executions(
        &self,
        enterprise_id: &str,
        since_ms: i64,
    ) -> sqlx::Result<Vec<(String, String, i64, i64)>> {
        sqlx::query_as(
            "SELECT orchestration_id, status, finished_at - COALESCE(started_at, created_at), finished_at FROM executions \
             WHERE enterprise_id = $1 AND finished_at >= $2 AND status IN ('success', 'failed', 'partial', 'cancelled') \
             ORDER BY finished_at",
        )
        .bind(enterprise_id)
        .bind(since_ms)
        .fetch_all(self.reads())
        .await
    }

    /// Finished executions since `since_ms` counted by hour (of `finished_at`, in hours since
    /// the epoch) and status, for the console's chart.
    pub async fn executions_per_hour(
        &self,
        enterprise_id: &str,
        since_ms: i64,
    ) -> sqlx::Result<Vec<(i64, String, i64)>> {
        sqlx::query_as(
            "SELECT finished_at / 3600000, status, COUNT(*) FROM executions \
             WHERE enterprise_id = $1 AND finished_at >= $2 AND status IN ('success', 'failed', 'partial', 'cancelled') \
             GROUP BY finished_at / 3600000, status ORDER BY 1",
        )
        .bind(enterprise_id)
        .bind(since_ms)
        .fetch_all(self.reads())
        .await
    }

    /// The enterprise's executions by status.
    pub async fn executions_by_status(&self, enterprise_id: &str) -> sqlx::Result<Vec<(String, i64)>> {
        sqlx::query_as(
            "SELECT status, COUNT(*) FROM executions WHERE enterprise_id = $1 GROUP BY status ORDER BY status",
        )
        .bind(enterprise_id)
        .fetch_all(self.reads())
        .await
    }

    /// One execution of `enterprise_id`, with its output also when it is kept by reference.
    pub async fn get_execution(&self, enterprise_id: &str, id: &str) -> sqlx::Result<Option<ExecutionRow>> {
        let row: Option<ExecutionRow> =
            sqlx::query_as(&format!("SELECT {EXECUTION} FROM executions WHERE enterprise_id = $1 AND id = $2"))
                .bind(enterprise_id)
                .bind(id)
                .fetch_optional(self.reads())
                .await?;
        let Some(mut row) = row else { return Ok(None) };
        if row.output.is_none() && row.output_bytes.is_some() {
            row.output = sqlx::query_scalar("SELECT body FROM payloads WHERE execution_id = $1 AND name = 'output'")
                .bind(id)
                .fetch_optional(self.reads())
                .await?;
        }
        Ok(Some(row))
    }

    pub async fn step_results(&self, execution_id: &str) -> sqlx::Result<Vec<StepResultRow>> {
        sqlx::query_as(&format!("SELECT {STEP} FROM step_results WHERE execution_id = $1 ORDER BY position"))
            .bind(execution_id)
            .fetch_all(self.reads())
            .await
    }

    /// Up to `limit` paused executions matching `filter` (its status aside), oldest first, and
    /// how many there are in all.
    pub async fn paused_executions(
        &self,
        enterprise_id: &str,
        filter: &ExecutionFilter,
        limit: i64,
    ) -> sqlx::Result<(Vec<String>, i64)> {
        let filter = ExecutionFilter { status: Some(ExecutionStatus::Paused.as_str().into()), ..filter.clone() };
        let pattern = filter.error_pattern();
        let (clause, args) = filter.clause(enterprise_id, pattern.as_deref());
        let list = List { columns: "id", table: "executions", filter: &clause, order: "created_at, id", args };
        let (ids, total): (Vec<(String,)>, i64) = self.page_of(list, Page { limit, offset: 0 }).await?;
        Ok((ids.into_iter().map(|(id,)| id).collect(), total))
    }

    /// Executions of the enterprise matching `filter`, newest first (one orchestration's when
    /// the filter names it).
    pub async fn list_executions(
        &self,
        enterprise_id: &str,
        filter: &ExecutionFilter,
        page: Page,
    ) -> sqlx::Result<(Vec<ExecutionRow>, i64)> {
        let pattern = filter.error_pattern();
        let (clause, args) = filter.clause(enterprise_id, pattern.as_deref());
        let list =
            List { columns: EXECUTION, table: "executions", filter: &clause, order: "created_at DESC, id DESC", args };
        self.page_of(list, page).await
    }

    /// Up to `limit` replayable executions matching `filter` that were not replayed yet, oldest
    /// first, and how many such executions there are in all.
    pub async fn replay_candidates(
        &self,
        enterprise_id: &str,
        filter: &ExecutionFilter,
        limit: i64,
    ) -> sqlx::Result<(Vec<String>, i64)> {
        let pattern = filter.error_pattern();
        let (clause, args) = filter.clause(enterprise_id, pattern.as_deref());
        let clause = format!(
            "{clause} AND status IN ('failed', 'partial', 'cancelled') \
             AND NOT EXISTS (SELECT 1 FROM executions r WHERE r.replay_of = executions.id)"
        );
        let list = List { columns: "id", table: "executions", filter: &clause, order: "created_at, id", args };
        let (ids, total): (Vec<(String,)>, i64) = self.page_of(list, Page { limit, offset: 0 }).await?;
        Ok((ids.into_iter().map(|(id,)| id).collect(), total))
    }
}
