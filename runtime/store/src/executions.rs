//! Executions: the queue and its leases, step results, body steps kept while parked, cancel,
//! retry and the resume of paused executions.

use crate::paging::{Arg, List};
use sqlx::FromRow;
use sqlx::Row;

use dibop_core::{ExecutionStatus, StepStatus, UnknownStatus, new_id, now_ms};

use super::api_calls::ApiCallRecord;
use super::batch::{Batch, Param};
use super::lease::Lease;
use super::{Backend, Page, Store};

#[derive(Debug, Clone, FromRow)]
pub struct ExecutionRow {
    pub id: String,
    pub enterprise_id: String,
    pub orchestration_id: String,
    pub orchestration_version: i64,
    pub status: String,
    pub triggered_by: String,
    pub parameters: String,
    /// Its output when at most [`INLINE_OUTPUT_BYTES`]; a larger one is kept by reference (see
    /// `output_bytes`) and only [`get_execution`](crate::Store::get_execution) reads it.
    pub output: Option<String>,
    pub error: Option<String>,
    pub idempotency_key: Option<String>,
    /// How many step results are committed: where a run resumes.
    pub steps_completed: i64,
    /// How many of them succeeded (the API's `steps_completed`).
    pub steps_succeeded: i64,
    pub steps_total: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Set for executions a `sub_orchestration` step started.
    pub parent_execution_id: Option<String>,
    /// 0 for top-level executions, parent's depth + 1 for sub-orchestrations.
    pub depth: i64,
    /// 1 once someone asked to cancel it.
    pub cancel_requested: i64,
    /// 1 while steps finished inside a container body wait in `body_steps` (a long wait in a
    /// body parked the execution).
    pub body_parked: i64,
    /// Why a failed or cancelled execution ended (see [`Finish::code`]).
    pub error_code: Option<String>,
    /// The execution this one replays from its failed step, and who asked.
    pub replay_of: Option<String>,
    pub replayed_by: Option<String>,
    /// The W3C `traceparent` it came with, if any.
    pub traceparent: Option<String>,
    /// The node that holds its lease (none while queued, parked or final).
    pub lease_owner: Option<String>,
    /// Raised by every claim: with the owner, it names one lease (see [`Lease`]).
    pub lease_epoch: i64,
    /// The size of an output larger than [`INLINE_OUTPUT_BYTES`], kept in `payloads` instead
    /// of this row (the queue, the claims and every list read this row).
    pub output_bytes: Option<i64>,
}

/// An execution's output up to this many bytes is kept in its row; a larger one (up to the
/// engine's 32 MiB) by reference, in `payloads`.
pub const INLINE_OUTPUT_BYTES: usize = 64 * 1024;

/// The output of an execution as its row takes it, with the size of one kept by reference:
/// larger than [`INLINE_OUTPUT_BYTES`], it goes to `payloads` with a statement pushed to
/// `batch` (before the row's `UPDATE`, in the same transaction).
fn by_reference(batch: &mut Batch, execution_id: &str, output: Option<String>) -> (Option<String>, Option<i64>) {
    match output {
        Some(text) if text.len() > INLINE_OUTPUT_BYTES => {
            let bytes = i64::try_from(text.len()).unwrap_or(i64::MAX);
            batch.push(
                "INSERT INTO payloads (execution_id, name, body) VALUES ($1, 'output', $2) \
                 ON CONFLICT (execution_id, name) DO UPDATE SET body = excluded.body",
                vec![execution_id.into(), text.into()],
            );
            (None, Some(bytes))
        }
        inline => (inline, None),
    }
}

impl ExecutionRow {
    /// Its trace id (the caller's, or derived from its id).
    pub fn trace_id(&self) -> String {
        dibop_core::trace::trace_id(&self.id, self.traceparent.as_deref())
    }

    /// Whether it has ended (see [`ExecutionStatus::is_final`]).
    pub fn is_final(&self) -> bool {
        self.execution_status().is_ok_and(ExecutionStatus::is_final)
    }

    /// The lease it was claimed under, when a node holds it.
    pub fn lease(&self) -> Option<Lease> {
        let owner = self.lease_owner.clone()?;
        Some(Lease { execution_id: self.id.clone(), owner, epoch: self.lease_epoch })
    }

    /// Its status; an error for a name no status has (the row was not written by this store).
    pub fn execution_status(&self) -> Result<ExecutionStatus, UnknownStatus> {
        self.status.parse()
    }
}

impl StepResultRow {
    /// Its status; an error for a name no status has.
    pub fn step_status(&self) -> Result<StepStatus, UnknownStatus> {
        self.status.parse()
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct StepResultRow {
    pub position: i64,
    pub name: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub status: String,
    pub system: Option<String>,
    pub operation: Option<String>,
    pub input: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub attempts: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    /// Trace material (JSON): attempts, plugin timings, log lines, stderr.
    pub detail: Option<String>,
}

pub struct NewExecution {
    pub orchestration_id: String,
    pub orchestration_version: i64,
    pub triggered_by: String,
    pub parameters: String,
    pub idempotency_key: Option<String>,
    pub steps_total: i64,
    /// (parent execution id, parent depth) for sub-orchestrations.
    pub parent: Option<(String, i64)>,
    /// The W3C `traceparent` its trace continues from.
    pub traceparent: Option<String>,
}

/// How an execution ended.
#[derive(Debug, Clone)]
pub struct Finish {
    pub status: ExecutionStatus,
    pub output: Option<String>,
    pub error: Option<String>,
    /// For `failed` and `cancelled`: `STEP_FAILED`, `OUTPUT_FAILED`, `CANCELLED` or `INTERNAL`;
    /// `STEP_FAILED` for `paused`.
    pub code: Option<&'static str>,
}

impl Finish {
    /// Ended `failed` with `code` (`STEP_FAILED`, `OUTPUT_FAILED` or `INTERNAL`).
    pub fn failed(code: &'static str, error: String) -> Self {
        Self { status: ExecutionStatus::Failed, output: None, error: Some(error), code: Some(code) }
    }

    /// Ended `cancelled`.
    pub fn cancelled(error: String) -> Self {
        Self { status: ExecutionStatus::Cancelled, output: None, error: Some(error), code: Some("CANCELLED") }
    }

    /// Paused by the step that failed with `error` (not an end: it has no `finished_at`, and a
    /// resume queues it again).
    pub fn paused(error: String) -> Self {
        Self { status: ExecutionStatus::Paused, output: None, error: Some(error), code: Some("STEP_FAILED") }
    }
}

/// An execution that a write just ended: what the engine reports to the metrics.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    pub status: ExecutionStatus,
    pub started_at: Option<i64>,
}

/// What committing a step answers.
#[derive(Debug, Clone, Copy)]
pub struct Recorded {
    /// Someone asked to cancel the execution.
    pub cancel_requested: bool,
    /// Set when this step ended the execution.
    pub ended: Option<Ended>,
}

/// A step that finished inside a `for_each` or `parallel` body, kept while its execution is
/// parked by a long wait in a body.
#[derive(Debug, Clone, FromRow)]
pub struct BodyStepRow {
    /// Where it sits, e.g. `each[2].decode` (unique within the execution).
    pub label: String,
    pub status: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub partial: i64,
    /// Its trace record (JSON) for the container's detail.
    pub record: String,
}

const EXECUTION: &str = "id, enterprise_id, orchestration_id, orchestration_version, status, triggered_by, parameters, output, \
     error, idempotency_key, steps_completed, steps_succeeded, steps_total, created_at, started_at, finished_at, parent_execution_id, depth, cancel_requested, body_parked, error_code, \
     replay_of, replayed_by, traceparent, lease_owner, lease_epoch, output_bytes";

/// The condition of a fenced write's last `UPDATE` (see [`Batch::fence`]): the execution is
/// running under `lease`. Its owner and epoch are appended to `params`, and the condition names
/// them by their places there.
fn held(lease: &Lease, params: &mut Vec<Param>) -> String {
    params.push((&lease.owner).into());
    params.push(lease.epoch.into());
    let owner = params.len() - 1;
    format!("status = 'running' AND lease_owner = ${owner} AND lease_epoch = ${}", owner + 1)
}

const STEP: &str =
    "position, name, type, status, system, operation, input, output, error, attempts, started_at, duration_ms, detail";

/// The places left in the queue of the enterprise `$n` (NULL when it is gone), as an admission
/// reads them. On PostgreSQL, `admission_room` (migration 0024) first takes an advisory lock on
/// the enterprise held until the admission commits, and counts in a snapshot taken after it:
/// admissions of one enterprise are serialized across nodes and each sees those before it. On
/// SQLite the one writer runs admissions one after another anyway.
fn room(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Postgres => format!("admission_room(${n})"),
        Backend::Sqlite => format!(
            "(SELECT e.max_queued_executions - (SELECT COUNT(*) FROM executions q \
             WHERE q.enterprise_id = ${n} AND q.status = 'queued') FROM enterprises e WHERE e.id = ${n})"
        ),
    }
}

/// Whether a new execution must fit under its enterprise's `max_queued_executions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueBound {
    /// Refused while the enterprise has `max_queued_executions` executions queued (status
    /// `queued`): a trigger from outside (execute, webhook, schedule).
    Enforced,
    /// Always inserted: work an admitted execution started (a sub-orchestration's child), which
    /// must not fail for want of room.
    Exempt,
}

/// What admitting an execution into the store did.
#[derive(Debug)]
pub enum Inserted {
    /// A new execution (queued, or running under the claim).
    Created(ExecutionRow),
    /// The execution of the same idempotency key, created within the last 24 h.
    Existing(ExecutionRow),
    /// Nothing was written: the enterprise has `bound` (its `max_queued_executions`) executions
    /// queued or more.
    QueueFull { bound: i64 },
}

impl Store {
    /// Queues an execution. With an idempotency key already used for this orchestration in the
    /// last 24 h, answers that execution instead.
    pub async fn enqueue_execution(
        &self,
        enterprise_id: &str,
        new: NewExecution,
        bound: QueueBound,
    ) -> sqlx::Result<Inserted> {
        self.insert_execution(enterprise_id, new, None, bound).await
    }

    /// Like [`Store::enqueue_execution`], but a new execution starts `running` under a lease of
    /// `owner` (the node runs it at once); an existing one for the key is answered as it is.
    pub async fn start_execution(
        &self,
        enterprise_id: &str,
        new: NewExecution,
        owner: &str,
        lease_ms: i64,
        bound: QueueBound,
    ) -> sqlx::Result<Inserted> {
        self.insert_execution(enterprise_id, new, Some((owner, lease_ms)), bound).await
    }

    async fn insert_execution(
        &self,
        enterprise_id: &str,
        new: NewExecution,
        claim: Option<(&str, i64)>,
        bound: QueueBound,
    ) -> sqlx::Result<Inserted> {
        let now = now_ms();
        if let Some(key) = &new.idempotency_key {
            let existing: Option<ExecutionRow> = sqlx::query_as(&format!(
                "SELECT {EXECUTION} FROM executions WHERE enterprise_id = $1 AND orchestration_id = $2 AND idempotency_key = $3"
            ))
            .bind(enterprise_id)
            .bind(&new.orchestration_id)
            .bind(key)
            .fetch_optional(self.reads())
            .await?;
            if let Some(existing) = existing {
                if existing.created_at > now_ms() - 24 * 3_600_000 {
                    return Ok(Inserted::Existing(existing));
                }
                // An expired key may be used again.
                sqlx::query("UPDATE executions SET idempotency_key = NULL WHERE id = $1")
                    .bind(&existing.id)
                    .execute(&self.pool)
                    .await?;
            }
        }
        const COLUMNS: &str = "id, enterprise_id, orchestration_id, orchestration_version, status, triggered_by, \
             parameters, idempotency_key, steps_total, created_at, parent_execution_id, depth, lease_owner, \
             lease_expires_at, started_at, traceparent, lease_epoch";
        const VALUES: &str = "$1, $2, $3, $4, $12, $5, $6, $7, $8, $9, $10, $11, $13, $14, $15, $16, $17";
        // Through a batch: on SQLite the insert commits with the other writes of the moment.
        let mut batch = Batch::default();
        let sql = match bound {
            QueueBound::Exempt => format!("INSERT INTO executions ({COLUMNS}) VALUES ({VALUES}) RETURNING {EXECUTION}"),
            // The count and the insert are one statement, serialized per enterprise (see
            // `room`): two admissions never both take the last place.
            QueueBound::Enforced => format!(
                "INSERT INTO executions ({COLUMNS}) SELECT {VALUES} WHERE {} > 0 RETURNING {EXECUTION}",
                room(self.backend, 2)
            ),
        };
        batch.push(
            sql,
            vec![
                new_id().into(),
                enterprise_id.into(),
                new.orchestration_id.into(),
                new.orchestration_version.into(),
                new.triggered_by.into(),
                new.parameters.into(),
                new.idempotency_key.into(),
                new.steps_total.into(),
                now.into(),
                new.parent.as_ref().map(|(id, _)| id.clone()).into(),
                new.parent.as_ref().map_or(0, |(_, depth)| depth + 1).into(),
                (if claim.is_some() { "running" } else { "queued" }).into(),
                claim.map(|(owner, _)| owner).into(),
                claim.map(|(_, lease_ms)| now + lease_ms).into(),
                claim.map(|_| now).into(),
                new.traceparent.into(),
                i64::from(claim.is_some()).into(),
            ],
        );
        let rows = batch.run(self).await?;
        if let Some(row) = rows.first() {
            return Ok(Inserted::Created(ExecutionRow::from_row(row)?));
        }
        // Refused by the bound (or the enterprise is gone): say which bound.
        self.queue_full(enterprise_id).await
    }

    /// The refusal of an admission that found no room: the enterprise's bound (`RowNotFound`
    /// when the enterprise is gone).
    async fn queue_full(&self, enterprise_id: &str) -> sqlx::Result<Inserted> {
        let bound: Option<i64> = sqlx::query_scalar("SELECT max_queued_executions FROM enterprises WHERE id = $1")
            .bind(enterprise_id)
            .fetch_optional(self.reads())
            .await?;
        bound.map(|bound| Inserted::QueueFull { bound }).ok_or(sqlx::Error::RowNotFound)
    }

    /// In `tx`, serialized with every other admission of the enterprise until `tx` ends (see
    /// `room`): whether it has fewer than `max_queued_executions` queued.
    async fn has_room(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>, enterprise_id: &str) -> sqlx::Result<bool> {
        let room: Option<i64> = sqlx::query_scalar(&format!("SELECT {}", room(self.backend, 1)))
            .bind(enterprise_id)
            .fetch_one(&mut **tx)
            .await?;
        Ok(room.is_some_and(|room| room > 0))
    }

    /// Claims the oldest queued execution, or a running one whose lease expired, for `owner`.
    ///
    /// Fair share: enterprises in `full` (at their share of this node) are not claimed for,
    /// and enterprises in `busy` (running something here already) come after the others, so
    /// a tenant with a long queue cannot keep the node from everyone else's work.
    pub async fn claim_execution(
        &self,
        owner: &str,
        lease_ms: i64,
        full: &[String],
        busy: &[String],
    ) -> sqlx::Result<Option<ExecutionRow>> {
        let now = now_ms();
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let list =
            |from: usize, count: usize| (from..from + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let exclude =
            if full.is_empty() { String::new() } else { format!("AND enterprise_id NOT IN ({})", list(4, full.len())) };
        let order = if busy.is_empty() {
            "created_at".to_owned()
        } else {
            format!("CASE WHEN enterprise_id IN ({}) THEN 1 ELSE 0 END, created_at", list(4 + full.len(), busy.len()))
        };
        let sql = format!(
            "UPDATE executions SET status = 'running', lease_owner = $1, lease_expires_at = $2, \
             lease_epoch = lease_epoch + 1, started_at = COALESCE(started_at, $3) WHERE id = (SELECT id FROM executions \
             WHERE (status = 'queued' OR (status = 'running' AND lease_expires_at < $3)) {exclude} \
             ORDER BY {order} LIMIT 1 {lock}) RETURNING {EXECUTION}"
        );
        let mut params: Vec<Param> = vec![owner.into(), (now + lease_ms).into(), now.into()];
        params.extend(full.iter().chain(busy).map(Param::from));
        self.claim(sql, params).await
    }

    /// Runs a claiming `UPDATE ... RETURNING` as a batch: its answer comes only after the
    /// claim committed. (Read with `fetch_optional`, sqlx's SQLite driver stops at the first
    /// row and never reports a failed implicit commit, such as a full disk: the claim looked
    /// taken, was not stored, and the same execution was handed out again and again.)
    async fn claim(&self, sql: String, params: Vec<Param>) -> sqlx::Result<Option<ExecutionRow>> {
        let mut batch = Batch::default();
        batch.push(sql, params);
        let rows = batch.run(self).await?;
        rows.first().map(ExecutionRow::from_row).transpose()
    }

    /// Executions this node runs that someone asked to cancel (possibly through another node).
    pub async fn cancel_requested_on(&self, owner: &str) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT id FROM executions WHERE lease_owner = $1 AND status = 'running' AND cancel_requested = 1",
        )
        .bind(owner)
        .fetch_all(self.reads())
        .await
    }

    /// Hands every execution `owner` still holds back to the queue at once (a node that
    /// stops); answers how many.
    pub async fn release_all(&self, owner: &str) -> sqlx::Result<u64> {
        let done = sqlx::query(
            "UPDATE executions SET lease_owner = NULL, lease_expires_at = $2 WHERE lease_owner = $1 AND status = 'running'",
        )
        .bind(owner)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Claims one execution by id when it is queued or its lease expired (a parent running its
    /// sub-orchestration inline).
    pub async fn claim_execution_by_id(
        &self,
        id: &str,
        owner: &str,
        lease_ms: i64,
    ) -> sqlx::Result<Option<ExecutionRow>> {
        let now = now_ms();
        let sql = format!(
            "UPDATE executions SET status = 'running', lease_owner = $1, lease_expires_at = $2, \
             lease_epoch = lease_epoch + 1, started_at = COALESCE(started_at, $3) WHERE id = $4 \
             AND (status = 'queued' OR (status = 'running' AND lease_expires_at < $3)) RETURNING {EXECUTION}"
        );
        self.claim(sql, vec![owner.into(), (now + lease_ms).into(), now.into(), id.into()]).await
    }

    /// Extends the leases `owner` holds on `leases` (execution id and epoch: the executions it is
    /// running now, and no others, so an execution whose run ended without handing it back
    /// expires); answers those that are no longer held, whose runs must stop at once.
    pub async fn renew_leases(
        &self,
        owner: &str,
        leases: &[(String, i64)],
        lease_ms: i64,
    ) -> sqlx::Result<Vec<(String, i64)>> {
        let mut lost = Vec::new();
        // Bounded statements: a node runs at most its slots, but keep each list short anyway.
        for chunk in leases.chunks(200) {
            let held = (0..chunk.len())
                .map(|i| format!("(id = ${} AND lease_epoch = ${})", 3 + 2 * i, 4 + 2 * i))
                .collect::<Vec<_>>()
                .join(" OR ");
            let mut params: Vec<Param> = vec![owner.into(), (now_ms() + lease_ms).into()];
            for (id, epoch) in chunk {
                params.push(id.into());
                params.push((*epoch).into());
            }
            let mut batch = Batch::default();
            batch.push(
                format!(
                    "UPDATE executions SET lease_expires_at = $2 WHERE lease_owner = $1 AND status = 'running' \
                     AND ({held}) RETURNING id"
                ),
                params,
            );
            let renewed: Vec<String> =
                batch.run(self).await?.iter().map(|row| row.try_get::<String, _>(0)).collect::<Result<_, _>>()?;
            lost.extend(chunk.iter().filter(|(id, _)| !renewed.contains(id)).cloned());
        }
        Ok(lost)
    }

    /// Hands a running execution back to the queue after `delay_ms` (its worker hit a transient
    /// error such as a database outage, or it waits): any node may resume it from the last
    /// committed step. Refused when `lease` is no longer held.
    pub async fn release_execution(&self, lease: &Lease, delay_ms: i64) -> sqlx::Result<()> {
        let mut batch = Batch::default();
        batch.independent();
        batch.fence(lease, self.backend);
        // A cancellation asked for meanwhile makes it due at once, so that it ends now.
        let mut params = vec![lease.execution_id.as_str().into(), (now_ms() + delay_ms).into(), now_ms().into()];
        let held = held(lease, &mut params);
        batch.push(
            format!(
                "UPDATE executions SET lease_owner = NULL, lease_expires_at = CASE WHEN cancel_requested = 1 THEN $3 ELSE $2 END \
                 WHERE id = $1 AND {held} RETURNING id"
            ),
            params,
        );
        batch.run(self).await?;
        Ok(())
    }

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
        super::api_calls::push_api_calls(&mut batch, api_calls);
        if clear_body {
            // The container whose body progress was kept has its own result now (and the
            // progress update below clears the flag).
            batch.push("DELETE FROM body_steps WHERE execution_id = $1", vec![execution_id.into()]);
        }
        let unpark = if clear_body { ", body_parked = 0" } else { "" };
        let succeeded = i64::from(step.status == "success");
        batch.push(
            format!(
                "INSERT INTO step_results (execution_id, {STEP}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ),
            vec![
                execution_id.into(),
                step.position.into(),
                (&step.name).into(),
                (&step.kind).into(),
                (&step.status).into(),
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
        super::api_calls::push_api_calls(&mut batch, api_calls);
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
    if row.status == ExecutionStatus::Paused.as_str() {
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
    .bind(&row.status)
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

/// Which executions a list or a replay takes.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub orchestration_id: Option<String>,
    pub status: Option<String>,
    pub triggered_by: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Text the error contains (case-insensitive).
    pub error: Option<String>,
}

impl ExecutionFilter {
    /// The LIKE pattern of `error`: lower-cased, its wildcards escaped.
    fn error_pattern(&self) -> Option<String> {
        self.error.as_ref().map(|text| {
            let escaped = text.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            format!("%{escaped}%")
        })
    }

    /// The WHERE clause over `executions` and its arguments (`$1` is the enterprise).
    fn clause<'a>(&'a self, enterprise_id: &'a str, pattern: Option<&'a str>) -> (String, Vec<Arg<'a>>) {
        let mut clause = String::from("enterprise_id = $1");
        let mut args: Vec<Arg<'a>> = vec![enterprise_id.into()];
        let mut add = |condition: &str, value: Arg<'a>| {
            args.push(value);
            clause.push_str(&condition.replace("$?", &format!("${}", args.len())));
        };
        if let Some(id) = &self.orchestration_id {
            add(" AND orchestration_id = $?", id.as_str().into());
        }
        if let Some(status) = &self.status {
            add(" AND status = $?", status.as_str().into());
        }
        if let Some(trigger) = &self.triggered_by {
            add(" AND triggered_by = $?", trigger.as_str().into());
        }
        if let Some(from) = self.from_ms {
            add(" AND created_at >= $?", Some(from).into());
        }
        if let Some(to) = self.to_ms {
            add(" AND created_at <= $?", Some(to).into());
        }
        if let Some(pattern) = pattern {
            add(" AND LOWER(error) LIKE $? ESCAPE '\\'", pattern.into());
        }
        (clause, args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewEnterprise, NewUser, is_lease_lost};

    /// A store with one enterprise, one orchestration and one queued execution: SQLite in a
    /// temporary directory, or a fresh PostgreSQL database when `DIBOP_TEST_DATABASE_URL` is set.
    async fn queued(name: &str) -> (Store, std::path::PathBuf, String, String) {
        let (store, dir) = crate::testing::fresh_store(crate::testing::postgres().as_deref(), name).await;
        let (enterprise, _) = store
            .create_enterprise_with_admin(
                NewEnterprise { name: "E".into(), slug: format!("e-{name}"), timezone: "UTC".into() },
                NewUser {
                    email: format!("{name}@e.example"),
                    name: "A".into(),
                    role: dibop_core::Role::EnterpriseAdmin,
                    platform_access: false,
                    password_hash: "x".into(),
                },
            )
            .await
            .expect("enterprise");
        let orchestration =
            store.create_orchestration(&enterprise.id, "O", "active", "{}", None).await.expect("orchestration");
        let new = NewExecution {
            orchestration_id: orchestration.id.clone(),
            orchestration_version: 1,
            triggered_by: "api".into(),
            parameters: "{}".into(),
            idempotency_key: None,
            steps_total: 2,
            parent: None,
            traceparent: None,
        };
        let Inserted::Created(execution) =
            store.enqueue_execution(&enterprise.id, new, QueueBound::Enforced).await.expect("queued")
        else {
            panic!("not created")
        };
        (store, dir, enterprise.id, execution.id)
    }

    fn step(position: i64) -> StepResultRow {
        StepResultRow {
            position,
            name: format!("s{position}"),
            kind: "transform".into(),
            status: "success".into(),
            system: None,
            operation: None,
            input: None,
            output: Some("{}".into()),
            error: None,
            attempts: 1,
            started_at: now_ms(),
            duration_ms: 1,
            detail: None,
        }
    }

    fn call(enterprise_id: &str, execution_id: &str) -> ApiCallRecord {
        let origin = crate::CallOrigin {
            enterprise_id: enterprise_id.into(),
            system: "rest".into(),
            connection_id: None,
            connection: None,
            orchestration_id: None,
            execution_id: Some(execution_id.into()),
            step: Some("s0".into()),
            trace_id: None,
        };
        ApiCallRecord::start(origin, "GET".into(), "http://127.0.0.1/x".into())
    }

    async fn count(store: &Store, table: &str, id: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE execution_id = $1"))
            .bind(id)
            .fetch_one(&store.pool)
            .await
            .expect("count")
    }

    /// A node that stalled past its lease (here: claimed with a lease that is already over,
    /// then claimed again by another node) can neither record, park, finish nor release the
    /// execution: each write is refused as a lost lease with nothing of it stored, the
    /// heartbeat reports the lease lost, and the new owner's writes go through.
    #[tokio::test]
    async fn writes_under_a_lease_another_claim_took_are_refused_with_nothing_written() {
        let (store, dir, enterprise, id) = queued("fence").await;
        let stale = store.claim_execution("node-a", -1, &[], &[]).await.expect("claim").expect("claimed");
        let stale = stale.lease().expect("leased");
        assert_eq!(stale.epoch, 1);
        let fresh = store.claim_execution("node-b", 30_000, &[], &[]).await.expect("claim").expect("expired lease");
        let fresh = fresh.lease().expect("leased");
        assert_eq!((fresh.owner.as_str(), fresh.epoch), ("node-b", 2));

        let refused = store.record_step(&stale, &step(0), &[call(&enterprise, &id)], 1, None, false).await;
        assert!(refused.as_ref().is_err_and(is_lease_lost), "{:?}", refused.err());
        let finished = Finish { status: ExecutionStatus::Success, output: None, error: None, code: None };
        assert!(store.finish_execution(&stale, finished).await.is_err_and(|e| is_lease_lost(&e)));
        assert!(store.release_execution(&stale, 0).await.is_err_and(|e| is_lease_lost(&e)));
        let parked = store.park_in_body(&stale, &[], &[call(&enterprise, &id)], 1_000).await;
        assert!(parked.is_err_and(|e| is_lease_lost(&e)));
        assert_eq!(count(&store, "step_results", &id).await, 0);
        assert_eq!(count(&store, "api_calls", &id).await, 0);
        let lost = store.renew_leases("node-a", &[(id.clone(), 1)], 30_000).await.expect("renew");
        assert_eq!(lost, [(id.clone(), 1)]);
        assert!(store.renew_leases("node-b", &[(id.clone(), 2)], 30_000).await.expect("renew").is_empty());

        let row = store.get_execution(&enterprise, &id).await.expect("read").expect("row");
        assert_eq!(
            (row.status.as_str(), row.lease_owner.as_deref(), row.steps_completed),
            ("running", Some("node-b"), 0)
        );
        store.record_step(&fresh, &step(0), &[call(&enterprise, &id)], 1, None, false).await.expect("owner records");
        let finished = Finish { status: ExecutionStatus::Success, output: Some("{}".into()), error: None, code: None };
        store.record_step(&fresh, &step(1), &[], 2, Some(finished), false).await.expect("owner finishes");
        let row = store.get_execution(&enterprise, &id).await.expect("read").expect("row");
        assert_eq!((row.status.as_str(), row.steps_completed), ("success", 2));
        assert_eq!(count(&store, "api_calls", &id).await, 1);
        // A finished execution has no lease to write under any more.
        assert!(store.release_execution(&fresh, 0).await.is_err_and(|e| is_lease_lost(&e)));
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A failed step of `position` and how it pauses its execution.
    fn failed(position: i64) -> (StepResultRow, Finish) {
        let mut row = step(position);
        row.status = "failed".into();
        row.output = None;
        row.error = Some("upstream_error: 503".into());
        (row, Finish::paused(format!("step s{position} failed: upstream_error: 503")))
    }

    /// A paused execution holds no lease and has not ended; no claim takes it (nor a retry),
    /// and a resume queues it again once, here skipping the step that paused it.
    #[tokio::test]
    async fn a_paused_execution_is_claimed_by_no_one_until_it_is_resumed() {
        let (store, dir, enterprise, id) = queued("pause").await;
        let claimed = store.claim_execution("node-a", 30_000, &[], &[]).await.expect("claim").expect("claimed");
        let lease = claimed.lease().expect("leased");
        store.record_step(&lease, &step(0), &[], 1, None, false).await.expect("first step");
        let (row, pause) = failed(1);
        let recorded = store.record_step(&lease, &row, &[], 2, Some(pause), false).await.expect("pauses");
        assert!(recorded.ended.is_none(), "a pause is no end");
        let row = store.get_execution(&enterprise, &id).await.expect("read").expect("row");
        assert_eq!(
            (row.status.as_str(), row.lease_owner.as_deref(), row.finished_at, row.steps_completed),
            ("paused", None, None, 2)
        );
        assert_eq!((row.error_code.as_deref(), row.is_final()), (Some("STEP_FAILED"), false));
        assert!(store.claim_execution("node-b", -1, &[], &[]).await.expect("claim").is_none());
        assert!(store.claim_execution_by_id(&id, "node-b", 30_000).await.expect("claim").is_none());
        assert!(store.retry_execution(&enterprise, &id).await.expect("retry").is_none(), "retries take ended ones");
        assert!(store.resume_execution("another", &id, None, None).await.expect("resume").is_none());

        let resumed = store
            .resume_execution(&enterprise, &id, Some(r#"{"vin":"x"}"#), Some(r#"{"price":1}"#))
            .await
            .expect("resume")
            .expect("it was paused");
        assert_eq!(
            (resumed.status.as_str(), resumed.steps_completed, resumed.steps_succeeded, resumed.parameters.as_str()),
            ("queued", 2, 2, r#"{"vin":"x"}"#)
        );
        assert!(resumed.error.is_none() && resumed.error_code.is_none());
        assert!(store.resume_execution(&enterprise, &id, None, None).await.expect("resume").is_none(), "only once");
        let results = store.step_results(&id).await.expect("results");
        assert_eq!(
            (results[1].status.as_str(), results[1].output.as_deref(), results[1].error.as_deref()),
            ("success", Some(r#"{"price":1}"#), None)
        );
        let again = store.claim_execution("node-b", 30_000, &[], &[]).await.expect("claim").expect("queued again");
        assert_eq!(again.id, id);
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A cancellation asked for while the step that pauses ran ends the execution instead, and
    /// a paused execution is cancelled at once.
    #[tokio::test]
    async fn a_cancelled_execution_does_not_pause_and_a_paused_one_cancels_at_once() {
        let (store, dir, enterprise, id) = queued("pausecancel").await;
        let lease = store.claim_execution("node-a", 30_000, &[], &[]).await.expect("claim").expect("claimed");
        let lease = lease.lease().expect("leased");
        store.cancel_execution(&enterprise, &id).await.expect("cancel asked");
        let (row, pause) = failed(0);
        let recorded = store.record_step(&lease, &row, &[], 1, Some(pause), false).await.expect("ends");
        assert_eq!(recorded.ended.map(|e| e.status), Some(ExecutionStatus::Cancelled));
        let row = store.get_execution(&enterprise, &id).await.expect("read").expect("row");
        assert_eq!((row.status.as_str(), row.error_code.as_deref()), ("cancelled", Some("CANCELLED")));
        assert!(row.finished_at.is_some());

        let (store2, dir2, enterprise, id) = queued("pausedcancel").await;
        let lease = store2.claim_execution("node-a", 30_000, &[], &[]).await.expect("claim").expect("claimed");
        let (row, pause) = failed(0);
        store2.record_step(&lease.lease().expect("leased"), &row, &[], 1, Some(pause), false).await.expect("pauses");
        let row = store2.cancel_execution(&enterprise, &id).await.expect("cancel").expect("row");
        assert_eq!((row.status.as_str(), row.error.as_deref()), ("cancelled", Some("cancelled while paused")));
        assert!(store2.resume_execution(&enterprise, &id, None, None).await.expect("resume").is_none());
        for (store, dir) in [(store, dir), (store2, dir2)] {
            store.close().await;
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Only the leases a node names are renewed: an execution whose run ended without handing
    /// it back (the release failed too) expires and is claimed again.
    #[tokio::test]
    async fn a_lease_the_node_no_longer_names_expires_and_is_claimed_again() {
        let (store, dir, _enterprise, id) = queued("expire").await;
        let first = store.claim_execution("node-a", 300, &[], &[]).await.expect("claim").expect("claimed");
        // The heartbeat of node-a runs, but this execution is no longer in its set.
        assert!(store.renew_leases("node-a", &[], 300).await.expect("renew").is_empty());
        assert!(
            store.claim_execution("node-a", 300, &[], &[]).await.expect("claim").is_none(),
            "held until it expires"
        );
        tokio::time::sleep(std::time::Duration::from_millis(350)).await;
        let again = store.claim_execution("node-a", 300, &[], &[]).await.expect("claim").expect("expired: claimable");
        assert_eq!((again.id.as_str(), again.lease_epoch), (id.as_str(), first.lease_epoch + 1));
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The queue bound holds under concurrent admissions (on PostgreSQL through the advisory
    /// lock of `admission_room`, on SQLite through the one writer): exactly the free places are taken, the others
    /// write nothing; a sub-orchestration's child is inserted past it.
    #[tokio::test]
    async fn concurrent_admissions_take_exactly_the_free_places_of_the_queue() {
        let (store, dir, enterprise, id) = queued("bound").await;
        let orchestration = store.get_execution(&enterprise, &id).await.expect("read").expect("row").orchestration_id;
        sqlx::query("UPDATE enterprises SET max_queued_executions = 4 WHERE id = $1")
            .bind(&enterprise)
            .execute(&store.pool)
            .await
            .expect("bound");
        let new = |parent: Option<(String, i64)>| NewExecution {
            orchestration_id: orchestration.clone(),
            orchestration_version: 1,
            triggered_by: "api".into(),
            parameters: "{}".into(),
            idempotency_key: None,
            steps_total: 1,
            parent,
            traceparent: None,
        };
        // On PostgreSQL through as many connections as tries, so that the admissions race.
        let wide = match store.backend {
            Backend::Postgres => {
                let url = store.pool.connect_options().database_url.to_string();
                Some(Store::connect(Some(&url.into()), &dir, 16, false).await.expect("connects"))
            }
            Backend::Sqlite => None,
        };
        let racing = wide.as_ref().unwrap_or(&store);
        let tries = (0..16).map(|_| racing.enqueue_execution(&enterprise, new(None), QueueBound::Enforced));
        let outcomes = futures_util::future::join_all(tries).await;
        let created = outcomes.iter().filter(|o| matches!(o, Ok(Inserted::Created(_)))).count();
        let full = outcomes.iter().filter(|o| matches!(o, Ok(Inserted::QueueFull { bound: 4 }))).count();
        let errors: Vec<String> = outcomes.iter().filter_map(|o| o.as_ref().err().map(ToString::to_string)).collect();
        assert_eq!((created, full), (3, 13), "one was queued before; errors: {errors:?}");
        assert_eq!(store.queued_executions(Some(&enterprise)).await.expect("count"), 4);
        // A child of an admitted execution is never refused.
        let child = store.enqueue_execution(&enterprise, new(Some((id.clone(), 0))), QueueBound::Exempt).await;
        assert!(matches!(child, Ok(Inserted::Created(_))), "{child:?}");
        assert_eq!(store.queued_executions(Some(&enterprise)).await.expect("count"), 5);
        if let Some(wide) = wide {
            wide.close().await;
        }
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Admission's count reads an index of queued executions, not the table.
    #[tokio::test]
    async fn the_queue_count_reads_the_index_of_queued_executions() {
        let (store, dir, enterprise, _id) = queued("plan").await;
        let count = "SELECT COUNT(*) FROM executions q WHERE q.enterprise_id = $1 AND q.status = 'queued'";
        let plan: Vec<String> = match store.backend {
            Backend::Sqlite => {
                let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {count}"))
                    .bind(&enterprise)
                    .fetch_all(&store.pool)
                    .await
                    .expect("plan");
                rows.iter().map(|r| r.try_get::<String, _>(3).expect("detail")).collect()
            }
            Backend::Postgres => {
                // A table this small is read whole unless the planner is told not to.
                let mut tx = store.pool.begin().await.expect("begin");
                sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await.expect("set");
                let rows =
                    sqlx::query(&format!("EXPLAIN {count}")).bind(&enterprise).fetch_all(&mut *tx).await.expect("plan");
                rows.iter().map(|r| r.try_get::<String, _>(0).expect("line")).collect()
            }
        };
        // An index of the queued executions answers it (the partial one, or the one by status,
        // whichever the planner prefers), never a scan of the table.
        let indexed =
            |line: &String| line.contains("executions_queued_by_enterprise") || line.contains("executions_by_status");
        assert!(plan.iter().any(indexed), "{plan:?}");
        assert!(!plan.iter().any(|line| line.contains("Seq Scan") || line.trim() == "SCAN q"), "{plan:?}");
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
