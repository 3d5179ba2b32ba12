//! The queue: admission (bounded per enterprise), claims under a lease, renewals, and the
//! hand-back of executions at shutdown or between parks.

use super::*;

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
    pub(super) async fn queue_full(&self, enterprise_id: &str) -> sqlx::Result<Inserted> {
        let bound: Option<i64> = sqlx::query_scalar("SELECT max_queued_executions FROM enterprises WHERE id = $1")
            .bind(enterprise_id)
            .fetch_optional(self.reads())
            .await?;
        bound.map(|bound| Inserted::QueueFull { bound }).ok_or(sqlx::Error::RowNotFound)
    }

    /// In `tx`, serialized with every other admission of the enterprise until `tx` ends (see
    /// `room`): whether it has fewer than `max_queued_executions` queued.
    pub(super) async fn has_room(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        enterprise_id: &str,
    ) -> sqlx::Result<bool> {
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
}
