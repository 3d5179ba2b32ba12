//! Circuit breakers of connections, in the database so that every node sharing it sees the same
//! state. Each transition is one conditional statement, so nodes racing on one circuit agree:
//! failures count atomically, and only one caller claims the trial call of a half-open circuit.

use sqlx::FromRow;

use super::Store;
use dibop_core::CircuitState;

/// The stored state of one connection's circuit (no row: closed, no failures).
#[derive(Debug, Clone, FromRow)]
pub struct CircuitRow {
    pub connection_id: String,
    #[sqlx(try_from = "String")]
    pub state: CircuitState,
    /// Consecutive failed calls.
    pub failures: i64,
    /// When it opened, or when the trial call of a half-open circuit began (unix ms).
    pub opened_at: Option<i64>,
    pub updated_at: i64,
}

const COLUMNS: &str = "connection_id, state, failures, opened_at, updated_at";

impl Store {
    /// A connection's circuit as stored (`None`: closed, no failures).
    pub async fn circuit(&self, connection_id: &str) -> sqlx::Result<Option<CircuitRow>> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM circuits WHERE connection_id = $1"))
            .bind(connection_id)
            .fetch_optional(self.reads())
            .await
    }

    /// A connection's circuit for a call: as [`Store::circuit`], but one this node saw closed
    /// without failures is not read again for a second (see `cache`), so another node's opening
    /// shows here within that second, or at this node's next failure.
    pub async fn circuit_for_call(&self, connection_id: &str) -> sqlx::Result<Option<CircuitRow>> {
        let key = connection_id.to_owned();
        if self.caches.healthy_circuits.get(&key).is_some() {
            return Ok(None);
        }
        let row = self.circuit(connection_id).await?;
        if row.as_ref().is_none_or(|r| r.state == CircuitState::Closed && r.failures == 0) {
            self.caches.healthy_circuits.insert(key, ());
        }
        Ok(row)
    }

    /// The circuits of an enterprise's connections, with each connection's system.
    pub async fn circuits(&self, enterprise_id: &str) -> sqlx::Result<Vec<(String, CircuitRow)>> {
        let rows: Vec<(String, String, String, i64, Option<i64>, i64)> = sqlx::query_as(
            "SELECT c.system, k.connection_id, k.state, k.failures, k.opened_at, k.updated_at \
             FROM circuits k JOIN connections c ON c.id = k.connection_id WHERE k.enterprise_id = $1",
        )
        .bind(enterprise_id)
        .fetch_all(self.reads())
        .await?;
        rows.into_iter()
            .map(|(system, connection_id, state, failures, opened_at, updated_at)| {
                let state = state.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                Ok((system, CircuitRow { connection_id, state, failures, opened_at, updated_at }))
            })
            .collect()
    }

    /// Claims the trial call of a circuit that has been open (or whose last trial began) at
    /// least `open_ms` ago; true for the one caller that wins it.
    pub async fn claim_circuit_trial(&self, connection_id: &str, open_ms: i64, now: i64) -> sqlx::Result<bool> {
        let done = sqlx::query(
            "UPDATE circuits SET state = 'half_open', opened_at = $2, updated_at = $2 \
             WHERE connection_id = $1 AND state IN ('open', 'half_open') AND opened_at <= $3",
        )
        .bind(connection_id)
        .bind(now)
        .bind(now - open_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Hands back a trial claimed by a call that did not run: the circuit is open again with its
    /// open time over, so the next caller claims the trial.
    pub async fn release_circuit_trial(&self, connection_id: &str) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE circuits SET state = 'open', opened_at = 0 WHERE connection_id = $1 AND state = 'half_open'",
        )
        .bind(connection_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Counts a failed call: the circuit opens at `threshold` consecutive failures, and a failed
    /// trial opens a half-open one again. Answers the state after the write.
    pub async fn circuit_failed(
        &self,
        enterprise_id: &str,
        connection_id: &str,
        threshold: i64,
        now: i64,
    ) -> sqlx::Result<CircuitRow> {
        self.caches.healthy_circuits.remove(&connection_id.to_owned());
        sqlx::query_as(&format!(
            "INSERT INTO circuits (connection_id, enterprise_id, state, failures, opened_at, updated_at) \
             VALUES ($1, $2, CASE WHEN $3 <= 1 THEN 'open' ELSE 'closed' END, 1, \
                     CASE WHEN $3 <= 1 THEN $4 ELSE NULL END, $4) \
             ON CONFLICT (connection_id) DO UPDATE SET \
               failures = circuits.failures + 1, \
               state = CASE WHEN circuits.state = 'half_open' OR circuits.failures + 1 >= $3 THEN 'open' \
                            ELSE circuits.state END, \
               opened_at = CASE WHEN circuits.state = 'half_open' \
                                  OR (circuits.state = 'closed' AND circuits.failures + 1 >= $3) THEN $4 \
                                ELSE circuits.opened_at END, \
               updated_at = $4 \
             RETURNING {COLUMNS}"
        ))
        .bind(connection_id)
        .bind(enterprise_id)
        .bind(threshold)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .and_then(crate::only)
    }

    /// Counts a call the system answered: the circuit closes and its failures start over.
    /// Writes only when there is something to reset.
    pub async fn circuit_succeeded(&self, connection_id: &str, now: i64) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE circuits SET state = 'closed', failures = 0, opened_at = NULL, updated_at = $2 \
             WHERE connection_id = $1 AND (state <> 'closed' OR failures <> 0)",
        )
        .bind(connection_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
