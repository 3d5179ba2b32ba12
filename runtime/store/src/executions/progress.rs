//! A run's writes, each fenced by its lease: a step's result, the end of the execution, and
//! the body steps kept as a `for_each` goes or while a body is parked.

use super::*;

impl Store {
    /// Commits one step's result, the API calls it made and the execution's progress together
    /// (and, for the last step or one that pauses it, how the execution ended or paused);
    /// answers whether a cancellation was requested and whether the execution ended.
    pub async fn record_step(
        &self,
        lease: &Lease,
        step: &StepResultRow,
        api_calls: &[ApiCallRecord],
        completed: i64,
        finish: Option<Finish>,
        clear_body: bool,
    ) -> sqlx::Result<Recorded> {
        let execution_id = lease.execution_id.as_str();
        let mut batch = Batch::default();
        batch.independent();
        batch.fence(lease, self.backend);
        crate::api_calls::push_api_calls(&mut batch, api_calls);
        if clear_body {
            // The container whose body progress was kept has its own result now (and the
            // progress update below clears the flag).
            batch.push("DELETE FROM body_steps WHERE execution_id = $1", vec![execution_id.into()]);
        }
        let unpark = if clear_body { ", body_parked = 0" } else { "" };
        let succeeded = i64::from(step.status == StepStatus::Success);
        batch.push(
            format!(
                "INSERT INTO step_results (execution_id, {STEP}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ),
            vec![
                execution_id.into(),
                step.position.into(),
                (&step.name).into(),
                step.kind.as_str().into(),
                step.status.as_str().into(),
                (&step.system).into(),
                (&step.operation).into(),
                (&step.input).into(),
                (&step.output).into(),
                (&step.error).into(),
                step.attempts.into(),
                step.started_at.into(),
                step.duration_ms.into(),
                (&step.detail).into(),
            ],
        );
        // The progress update also reads whether someone asked to cancel, saving a query per step.
        let ended = finish.as_ref().map(|f| f.status);
        match finish {
            None => {
                let mut params = vec![execution_id.into(), completed.into(), succeeded.into()];
                let held = held(lease, &mut params);
                batch.push(
                    format!(
                        "UPDATE executions SET steps_completed = $2, steps_succeeded = steps_succeeded + $3{unpark} \
                         WHERE id = $1 AND {held} RETURNING cancel_requested"
                    ),
                    params,
                );
            }
            Some(finish) => {
                let (output, output_bytes) = by_reference(&mut batch, execution_id, finish.output);
                let mut params = vec![
                    execution_id.into(),
                    completed.into(),
                    finish.status.as_str().into(),
                    output.into(),
                    finish.error.into(),
                    now_ms().into(),
                    finish.code.into(),
                    succeeded.into(),
                    output_bytes.into(),
                ];
                let held = held(lease, &mut params);
                // A pause is no end: no `finished_at`. A cancellation asked for while the step
                // ran ends the execution `cancelled` instead (a paused one would wait for a
                // resume nobody means to send).
                let (status, finished_at, code) = if finish.status == ExecutionStatus::Paused {
                    (
                        "CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE $3 END",
                        "CASE WHEN cancel_requested = 1 THEN $6 END",
                        "CASE WHEN cancel_requested = 1 THEN 'CANCELLED' ELSE $7 END",
                    )
                } else {
                    ("$3", "$6", "$7")
                };
                batch.push(
                    format!(
                        "UPDATE executions SET steps_completed = $2, status = {status}, output = $4, error = $5, \
                         finished_at = {finished_at}, error_code = {code}, steps_succeeded = steps_succeeded + $8, \
                         output_bytes = $9, \
                         lease_owner = NULL, lease_expires_at = NULL{unpark} \
                         WHERE id = $1 AND {held} RETURNING cancel_requested, started_at, status"
                    ),
                    params,
                );
            }
        }
        let rows = batch.run(self).await?;
        let cancel: i64 = rows.last().map(|row| row.try_get(0)).transpose()?.unwrap_or(0);
        let ended = match ended {
            Some(_) => {
                let started_at: Option<i64> = rows.last().map(|row| row.try_get(1)).transpose()?.flatten();
                let status: Option<String> = rows.last().map(|row| row.try_get(2)).transpose()?;
                // A paused execution has not ended (see `Events::execution_ended`).
                status
                    .and_then(|s| s.parse::<ExecutionStatus>().ok())
                    .filter(|s| s.is_final())
                    .map(|status| Ended { status, started_at })
            }
            None => None,
        };
        Ok(Recorded { cancel_requested: cancel != 0, ended })
    }

    /// Ends an execution this node holds the `lease` of.
    pub async fn finish_execution(&self, lease: &Lease, finish: Finish) -> sqlx::Result<Ended> {
        let status = finish.status;
        let mut batch = Batch::default();
        batch.independent();
        batch.fence(lease, self.backend);
        let (output, output_bytes) = by_reference(&mut batch, &lease.execution_id, finish.output);
        let mut params = vec![
            lease.execution_id.as_str().into(),
            finish.status.as_str().into(),
            output.into(),
            finish.error.into(),
            now_ms().into(),
            finish.code.into(),
            output_bytes.into(),
        ];
        let held = held(lease, &mut params);
        batch.push(
            format!(
                "UPDATE executions SET status = $2, output = $3, error = $4, finished_at = $5, error_code = $6, \
                 output_bytes = $7, lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND {held} RETURNING started_at"
            ),
            params,
        );
        let rows = batch.run(self).await?;
        let started_at: Option<i64> = rows.first().map(|row| row.try_get(0)).transpose()?.flatten();
        Ok(Ended { status, started_at })
    }

    /// When a parked execution (handed back until a wait is due, no owner) is due again.
    pub async fn parked_until(&self, id: &str) -> sqlx::Result<Option<i64>> {
        let due: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT lease_expires_at FROM executions WHERE id = $1 AND status = 'running' AND lease_owner IS NULL",
        )
        .bind(id)
        .fetch_optional(self.reads())
        .await?;
        Ok(due.flatten())
    }

    /// Cancels the unfinished executions `parent_id` started (see [`Store::cancel_execution`]).
    pub async fn cancel_children(&self, enterprise_id: &str, parent_id: &str) -> sqlx::Result<()> {
        let children: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM executions WHERE parent_execution_id = $1 AND status IN ('queued', 'running')",
        )
        .bind(parent_id)
        .fetch_all(self.reads())
        .await?;
        for child in children {
            self.cancel_execution(enterprise_id, &child).await?;
        }
        Ok(())
    }

    /// The body steps kept for a parked execution (see [`BodyStepRow`]).
    pub async fn body_steps(&self, execution_id: &str) -> sqlx::Result<Vec<BodyStepRow>> {
        sqlx::query_as("SELECT label, status, output, error, partial, record FROM body_steps WHERE execution_id = $1")
            .bind(execution_id)
            .fetch_all(self.reads())
            .await
    }

    /// Parks an execution whose container step waits in a body (or whose step waits for a
    /// permit of a rate limit): the body steps that finished since it last ran and the API calls
    /// they made are committed with the hand-back, and it is due again after `delay_ms`. The
    /// parked step itself has no result yet. A kept row with status `permit` (a step holding a
    /// permit) is replaced by what the step holds or answered later; finished rows stay.
    pub async fn park_in_body(
        &self,
        lease: &Lease,
        steps: &[BodyStepRow],
        api_calls: &[ApiCallRecord],
        delay_ms: i64,
    ) -> sqlx::Result<()> {
        let mut batch = self.keeping(lease, steps, api_calls);
        let mut params = vec![lease.execution_id.as_str().into(), (now_ms() + delay_ms).into(), now_ms().into()];
        let held = held(lease, &mut params);
        batch.push(
            format!(
                "UPDATE executions SET body_parked = 1, lease_owner = NULL, \
                 lease_expires_at = CASE WHEN cancel_requested = 1 THEN $3 ELSE $2 END WHERE id = $1 AND {held} RETURNING id"
            ),
            params,
        );
        batch.run(self).await?;
        Ok(())
    }

    /// Commits body steps that finished while their container runs on (the items a `for_each`
    /// finished) and the API calls they made, as [`park_in_body`](Self::park_in_body) does
    /// without handing the execution back: if it resumes elsewhere, they are replayed.
    pub async fn keep_body_steps(
        &self,
        lease: &Lease,
        steps: &[BodyStepRow],
        api_calls: &[ApiCallRecord],
    ) -> sqlx::Result<()> {
        let mut batch = self.keeping(lease, steps, api_calls);
        let mut params = vec![lease.execution_id.as_str().into()];
        let held = held(lease, &mut params);
        batch.push(format!("UPDATE executions SET body_parked = 1 WHERE id = $1 AND {held} RETURNING id"), params);
        batch.run(self).await?;
        Ok(())
    }

    /// A fenced batch that keeps `steps` (see [`park_in_body`](Self::park_in_body)) and
    /// stores `api_calls`.
    fn keeping(&self, lease: &Lease, steps: &[BodyStepRow], api_calls: &[ApiCallRecord]) -> Batch {
        let mut batch = Batch::default();
        batch.independent();
        batch.fence(lease, self.backend);
        crate::api_calls::push_api_calls(&mut batch, api_calls);
        for step in steps {
            batch.push(
                "INSERT INTO body_steps (execution_id, label, status, output, error, partial, record) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (execution_id, label) DO UPDATE SET \
                 status = excluded.status, output = excluded.output, error = excluded.error, \
                 partial = excluded.partial, record = excluded.record WHERE body_steps.status = 'permit'",
                vec![
                    lease.execution_id.as_str().into(),
                    (&step.label).into(),
                    (&step.status).into(),
                    (&step.output).into(),
                    (&step.error).into(),
                    step.partial.into(),
                    (&step.record).into(),
                ],
            );
        }
        batch
    }
}
