//! What an operator does to an execution that stopped: cancel it, retry or replay it from its
//! first failed step, resume it from the step that paused it.

use super::*;

impl Store {
    /// Cancels a queued or paused execution at once, or asks the worker of a running one to
    /// stop before its next step. Returns the row, or `None` when there is no such execution.
    pub async fn cancel_execution(&self, enterprise_id: &str, id: &str) -> sqlx::Result<Option<ExecutionRow>> {
        let now = now_ms();
        sqlx::query(
            "UPDATE executions SET status = 'cancelled', finished_at = $3, error_code = 'CANCELLED', \
             error = CASE WHEN status = 'paused' THEN 'cancelled while paused' ELSE 'cancelled before it started' END \
             WHERE enterprise_id = $1 AND id = $2 AND status IN ('queued', 'paused')",
        )
        .bind(enterprise_id)
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        // A parked execution (a long wait, no lease owner) becomes due at once, so it ends now.
        sqlx::query(
            "UPDATE executions SET cancel_requested = 1, \
             lease_expires_at = CASE WHEN lease_owner IS NULL THEN $3 ELSE lease_expires_at END \
             WHERE enterprise_id = $1 AND id = $2 AND status = 'running'",
        )
        .bind(enterprise_id)
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.get_execution(enterprise_id, id).await
    }

    /// Queues a failed, partial or cancelled execution again from its first failed (or missing)
    /// step; results before it are kept. `None` when it is not in such a state; refused with
    /// nothing changed while the enterprise's queue is full.
    pub async fn retry_execution(&self, enterprise_id: &str, id: &str) -> sqlx::Result<Option<Inserted>> {
        let mut tx = self.pool.begin().await?;
        if !self.has_room(&mut tx, enterprise_id).await? {
            drop(tx);
            return self.queue_full(enterprise_id).await.map(Some);
        }
        let Some((row, keep)) = resumable(&mut tx, enterprise_id, id, ENDED_UNWELL).await? else { return Ok(None) };
        let Some(row) = requeue(&mut tx, &row, keep, None, None).await? else { return Ok(None) };
        tx.commit().await?;
        Ok(Some(Inserted::Created(row)))
    }

    /// Queues a paused execution again from the step that paused it (the results before it are
    /// kept, those steps are not run again), with `parameters` when given. With `skip`, that
    /// step is not run again either: its result becomes `success` with `skip` as its output
    /// (JSON text), and the execution goes on after it. `None` when it is not paused (any
    /// more: of two resumes at once, one queues it).
    pub async fn resume_execution(
        &self,
        enterprise_id: &str,
        id: &str,
        parameters: Option<&str>,
        skip: Option<&str>,
    ) -> sqlx::Result<Option<ExecutionRow>> {
        let mut tx = self.pool.begin().await?;
        let Some((row, keep)) = resumable(&mut tx, enterprise_id, id, PAUSED).await? else { return Ok(None) };
        let row = requeue(&mut tx, &row, keep, parameters, skip).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Starts a new execution that replays a failed, partial or cancelled one from its first
    /// failed (or missing) step: the results before it are copied (those steps are not called
    /// again), on the same orchestration version, with `parameters`. `None` when the execution
    /// is not in such a state; refused with nothing written while the enterprise's queue is full.
    pub async fn replay_execution(
        &self,
        enterprise_id: &str,
        id: &str,
        parameters: Option<&str>,
        triggered_by: &str,
        replayed_by: &str,
    ) -> sqlx::Result<Option<Inserted>> {
        let mut tx = self.pool.begin().await?;
        if !self.has_room(&mut tx, enterprise_id).await? {
            drop(tx);
            return self.queue_full(enterprise_id).await.map(Some);
        }
        let Some((original, keep)) = resumable(&mut tx, enterprise_id, id, ENDED_UNWELL).await? else {
            return Ok(None);
        };
        let new_id = new_id();
        sqlx::query(
            "INSERT INTO executions (id, enterprise_id, orchestration_id, orchestration_version, status, triggered_by, \
             parameters, steps_total, steps_completed, created_at, depth, replay_of, replayed_by) \
             VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, 0, $10, $11)",
        )
        .bind(&new_id)
        .bind(enterprise_id)
        .bind(&original.orchestration_id)
        .bind(original.orchestration_version)
        .bind(triggered_by)
        .bind(parameters.unwrap_or(&original.parameters))
        .bind(original.steps_total)
        .bind(keep)
        .bind(now_ms())
        .bind(&original.id)
        .bind(replayed_by)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "INSERT INTO step_results (execution_id, {STEP}) SELECT $1, {STEP} FROM step_results \
             WHERE execution_id = $2 AND position < $3"
        ))
        .bind(&new_id)
        .bind(&original.id)
        .bind(keep)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE executions SET steps_succeeded = \
             (SELECT COUNT(*) FROM step_results s WHERE s.execution_id = $1 AND s.status = 'success') WHERE id = $1",
        )
        .bind(&new_id)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query_as(&format!("SELECT {EXECUTION} FROM executions WHERE id = $1"))
            .bind(&new_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(Inserted::Created(row)))
    }
}

/// The statuses a retry and a replay take.
const ENDED_UNWELL: &str = "('failed', 'partial', 'cancelled')";

/// The status a resume takes.
const PAUSED: &str = "('paused')";

/// An execution of the enterprise in one of `statuses` (an SQL list), read in `tx`, and the
/// position it resumes from (its first failed step, or its first missing one): what a retry, a
/// replay and a resume share.
async fn resumable(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    enterprise_id: &str,
    id: &str,
    statuses: &str,
) -> sqlx::Result<Option<(ExecutionRow, i64)>> {
    let row: Option<ExecutionRow> = sqlx::query_as(&format!(
        "SELECT {EXECUTION} FROM executions WHERE enterprise_id = $1 AND id = $2 AND status IN {statuses}"
    ))
    .bind(enterprise_id)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    if row.status == ExecutionStatus::Paused {
        // The step that paused it is its last committed result (an earlier step may have
        // failed with `on_error: continue`).
        let keep = (row.steps_completed - 1).max(0);
        return Ok(Some((row, keep)));
    }
    let first_failed: Option<i64> =
        sqlx::query_scalar("SELECT MIN(position) FROM step_results WHERE execution_id = $1 AND status = 'failed'")
            .bind(&row.id)
            .fetch_one(&mut **tx)
            .await?;
    let keep = first_failed.unwrap_or(row.steps_completed);
    Ok(Some((row, keep)))
}

/// Queues `row` again in `tx` from position `keep`: the results from there on are dropped
/// (with `skip`, the result at `keep` becomes `success` with that output, JSON text, and the
/// run goes on after it), the end it had is cleared, and `parameters` replace its own when
/// given. The status is checked again by the update itself, so that of two requests at once
/// only one queues it; `None` for the other.
async fn requeue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    row: &ExecutionRow,
    keep: i64,
    parameters: Option<&str>,
    skip: Option<&str>,
) -> sqlx::Result<Option<ExecutionRow>> {
    let resume_at = keep + i64::from(skip.is_some());
    // First the execution row (it locks it on PostgreSQL), then its results.
    let queued = sqlx::query(
        "UPDATE executions SET status = 'queued', output = NULL, output_bytes = NULL, error = NULL, error_code = NULL, finished_at = NULL, \
         cancel_requested = 0, steps_completed = $2, parameters = COALESCE($4, parameters) \
         WHERE id = $1 AND status = $3",
    )
    .bind(&row.id)
    .bind(resume_at)
    .bind(row.status.as_str())
    .bind(parameters)
    .execute(&mut **tx)
    .await?;
    if queued.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query("DELETE FROM step_results WHERE execution_id = $1 AND position >= $2")
        .bind(&row.id)
        .bind(resume_at)
        .execute(&mut **tx)
        .await?;
    if let Some(output) = skip {
        sqlx::query(
            "UPDATE step_results SET status = 'success', output = $3, error = NULL \
             WHERE execution_id = $1 AND position = $2",
        )
        .bind(&row.id)
        .bind(keep)
        .bind(output)
        .execute(&mut **tx)
        .await?;
    }
    let row = sqlx::query_as(&format!(
        "UPDATE executions SET \
         steps_succeeded = (SELECT COUNT(*) FROM step_results s WHERE s.execution_id = $1 AND s.status = 'success') \
         WHERE id = $1 RETURNING {EXECUTION}"
    ))
    .bind(&row.id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Some(row))
}
