//! Several statements written as one unit. On SQLite they travel as one multi-statement command
//! (`BEGIN; ...; COMMIT;`), one round trip to the connection's thread instead of one per
//! statement, and the batches of concurrent callers commit together (group commit: see
//! [`Group`]); on PostgreSQL they run in a transaction, one by one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures_util::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{Acquire, Executor};
use tokio::sync::oneshot;

use super::{Backend, Store};

/// Values bound in one group commit at most (SQLite allows 32,766 per command).
const GROUP_PARAMS: usize = 16_000;
/// Batches in one group commit at most.
const GROUP_BATCHES: usize = 256;

/// A bound value.
#[derive(Clone)]
pub enum Param {
    Text(Option<String>),
    Int(Option<i64>),
}

impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_owned()))
    }
}
impl From<Option<&str>> for Param {
    fn from(v: Option<&str>) -> Self {
        Self::Text(v.map(str::to_owned))
    }
}
impl From<String> for Param {
    fn from(v: String) -> Self {
        Self::Text(Some(v))
    }
}
impl From<&String> for Param {
    fn from(v: &String) -> Self {
        Self::Text(Some(v.clone()))
    }
}
impl From<&Option<String>> for Param {
    fn from(v: &Option<String>) -> Self {
        Self::Text(v.clone())
    }
}
impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        Self::Text(v)
    }
}
impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}
impl From<Option<i64>> for Param {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}

/// Statements with `$1..$n` placeholders each, and their values.
#[derive(Default)]
pub struct Batch {
    statements: Vec<(String, Vec<Param>)>,
    /// See [`Batch::independent`].
    independent: bool,
    /// See [`Batch::fence`].
    fenced: bool,
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind(query: AnyQuery<'_>, param: Param) -> AnyQuery<'_> {
    match param {
        Param::Text(v) => query.bind(v),
        Param::Int(v) => query.bind(v),
    }
}

/// `sql` with each `$k` placeholder moved to `$k+offset`.
fn renumber(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '$' {
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            match digits.parse::<usize>() {
                Ok(k) => out.push_str(&(k + offset).to_string()),
                Err(_) => out.push_str(&digits),
            }
        }
    }
    out
}

impl Batch {
    pub fn push(&mut self, sql: impl Into<String>, params: Vec<Param>) {
        self.statements.push((sql.into(), params));
    }

    /// Makes the whole batch conditional on `lease` still being held, so a lost lease aborts
    /// the transaction with nothing written and [`is_lease_lost`](crate::is_lease_lost)
    /// recognizes the error. The fence tries to insert a NULL into `lease_fence` (whose column
    /// is NOT NULL) when the lease is not held:
    ///
    /// - on SQLite, as the first statement, when the execution is not `running` under that
    ///   owner and epoch (the one writer serializes every claim against it);
    /// - on PostgreSQL, after the batch's last statement, which must be an `UPDATE` of the
    ///   execution that names the owner and epoch in its `WHERE` and has a `RETURNING` clause,
    ///   when it updated nothing: that `UPDATE` locks the row and re-reads it past a claim that
    ///   committed meanwhile, so no claim slips between the check and the writes.
    ///
    /// A fenced batch is [`independent`](Batch::independent): one statement on PostgreSQL.
    pub fn fence(&mut self, lease: &crate::lease::Lease, backend: Backend) {
        self.independent = true;
        self.fenced = true;
        if backend == Backend::Sqlite {
            let guard = "INSERT INTO lease_fence (held) SELECT NULL WHERE NOT EXISTS (SELECT 1 FROM executions \
                         WHERE id = $1 AND lease_owner = $2 AND lease_epoch = $3 AND status = 'running')";
            let params = vec![(&lease.execution_id).into(), (&lease.owner).into(), lease.epoch.into()];
            self.statements.insert(0, (guard.to_owned(), params));
        }
    }

    /// Declares that no statement touches a row another one touches or reads what another one
    /// wrote, and that only the last statement's rows are wanted. On PostgreSQL the batch then
    /// travels as one statement (the others as data-modifying `WITH` clauses): one round trip,
    /// atomic without `BEGIN` and `COMMIT`.
    pub fn independent(&mut self) {
        self.independent = true;
    }

    fn params(&self) -> usize {
        self.statements.iter().map(|(_, params)| params.len()).sum()
    }

    /// Runs every statement in one transaction; answers the rows the statements returned. The
    /// answer comes only after the transaction committed.
    pub async fn run(self, store: &Store) -> sqlx::Result<Vec<AnyRow>> {
        match store.backend {
            Backend::Sqlite => store.group.commit(store, self).await,
            Backend::Postgres => self.run_alone(store).await,
        }
    }

    /// Runs the statements in a transaction of their own.
    async fn run_alone(self, store: &Store) -> sqlx::Result<Vec<AnyRow>> {
        let mut conn = store.pool.acquire().await?;
        match store.backend {
            Backend::Sqlite => {
                let (text, values) = sqlite_command(&[&self]);
                let mut query = sqlx::query(&text);
                for value in values {
                    query = bind(query, value);
                }
                let rows = query.fetch_all(&mut *conn).await;
                if rows.is_err() {
                    // A failed statement leaves the transaction open: end it.
                    let _ = conn.execute("ROLLBACK").await;
                }
                rows
            }
            // One statement is atomic by itself: no BEGIN and COMMIT round trips.
            Backend::Postgres if self.independent || self.statements.len() == 1 => {
                let (text, values) = postgres_statement(&self);
                let mut query = sqlx::query(&text);
                for value in values {
                    query = bind(query, value);
                }
                query.fetch_all(&mut *conn).await
            }
            Backend::Postgres => {
                let mut tx = conn.begin().await?;
                let mut rows = Vec::new();
                for (sql, params) in self.statements {
                    let mut query = sqlx::query(&sql);
                    for value in params {
                        query = bind(query, value);
                    }
                    rows.extend(query.fetch_all(&mut *tx).await?);
                }
                tx.commit().await?;
                Ok(rows)
            }
        }
    }
}

/// `BEGIN;`, the statements of `batches` renumbered one after the other, `COMMIT;`, and the
/// values in their order.
fn sqlite_command(batches: &[&Batch]) -> (String, Vec<Param>) {
    let mut text = String::from("BEGIN;\n");
    let mut values = Vec::new();
    for batch in batches {
        for (sql, params) in &batch.statements {
            text.push_str(&renumber(sql, values.len()));
            text.push_str(";\n");
            values.extend(params.iter().cloned());
        }
    }
    text.push_str("COMMIT;");
    (text, values)
}

/// The statements of an independent batch as one PostgreSQL statement: `WITH w0 AS (first),
/// w1 AS (second) last`.
fn postgres_statement(batch: &Batch) -> (String, Vec<Param>) {
    let mut text = String::new();
    let mut values = Vec::new();
    let last = batch.statements.len().saturating_sub(1);
    for (i, (sql, params)) in batch.statements.iter().enumerate() {
        let sql = renumber(sql, values.len());
        text.push_str(&match i {
            _ if batch.fenced => format!("{} w{i} AS ({sql})", if i == 0 { "WITH" } else { "," }),
            _ if i == last && i == 0 => sql,
            _ if i == last => format!(" {sql}"),
            0 => format!("WITH w0 AS ({sql})"),
            _ => format!(", w{i} AS ({sql})"),
        });
        values.extend(params.iter().cloned());
    }
    if batch.fenced {
        text.push_str(&format!(
            ", fence AS (INSERT INTO lease_fence (held) SELECT NULL WHERE NOT EXISTS (SELECT 1 FROM w{last})) \
             SELECT * FROM w{last}"
        ));
    }
    (text, values)
}

/// A batch waiting for a group commit, and where its answer goes.
struct Pending {
    batch: Batch,
    answer: oneshot::Sender<sqlx::Result<Vec<AnyRow>>>,
}

/// Group commit on SQLite's one writer connection. A caller queues its batch and waits for the
/// turn to write; whoever gets the turn takes every batch queued by then (up to a bound) and
/// commits them in one transaction: while one group commits, the next one gathers, so under
/// load a commit carries many executions' steps and each page of the write-ahead log is
/// written once for all of them. Each caller gets its own rows, after the commit. When the
/// group fails, each batch runs again on its own, so one bad batch fails only its caller.
#[derive(Default)]
pub(crate) struct Group {
    queue: Mutex<VecDeque<Pending>>,
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Transactions committed together, for the tests.
    together: std::sync::atomic::AtomicUsize,
}

impl Group {
    async fn commit(&self, store: &Store, batch: Batch) -> sqlx::Result<Vec<AnyRow>> {
        let (answer, mut answered) = oneshot::channel();
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_back(Pending { batch, answer });
        loop {
            let turn = self.turn.clone().lock_owned().await;
            match answered.try_recv() {
                Ok(rows) => return rows,
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(sqlx::Error::Protocol("the group commit carrying this write failed".into()));
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let group = self.take();
            // The group commits on its own task: a caller that goes away does not stop the
            // writes of the others, and the turn passes on only when the commit is over.
            let store = store.clone();
            let _ = tokio::spawn(async move {
                run_group(&store, group).await;
                drop(turn);
            })
            .await;
        }
    }

    /// The oldest queued batches, within the bounds (at least one).
    fn take(&self) -> Vec<Pending> {
        let mut queue = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut group = Vec::new();
        let mut params = 0;
        while let Some(next) = queue.front() {
            let more = next.batch.params();
            if !group.is_empty() && (params + more > GROUP_PARAMS || group.len() >= GROUP_BATCHES) {
                break;
            }
            params += more;
            group.extend(queue.pop_front());
        }
        group
    }
}

async fn run_group(store: &Store, group: Vec<Pending>) {
    if group.len() > 1 {
        let batches: Vec<&Batch> = group.iter().map(|p| &p.batch).collect();
        if let Ok(rows) = run_together(store, &batches).await {
            store.group.together.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for (pending, rows) in group.into_iter().zip(rows) {
                let _ = pending.answer.send(Ok(rows));
            }
            return;
        }
    }
    for pending in group {
        let _ = pending.answer.send(pending.batch.run_alone(store).await);
    }
}

/// The batches in one SQLite transaction; answers each batch's rows.
async fn run_together(store: &Store, batches: &[&Batch]) -> sqlx::Result<Vec<Vec<AnyRow>>> {
    // Statement k of the command (0 is BEGIN) belongs to batch `owner[k]`.
    let mut owner = vec![None];
    for (i, batch) in batches.iter().enumerate() {
        owner.extend(std::iter::repeat_n(Some(i), batch.statements.len()));
    }
    let (text, values) = sqlite_command(batches);
    let mut conn = store.pool.acquire().await?;
    let mut query = sqlx::query(&text);
    for value in values {
        query = bind(query, value);
    }
    let mut rows: Vec<Vec<AnyRow>> = batches.iter().map(|_| Vec::new()).collect();
    let outcome = async {
        // Only SQLite runs several statements in one command, and its driver ends each
        // statement's rows with the statement's result: that is how rows find their batch.
        #[allow(deprecated)]
        let mut stream = query.fetch_many(&mut *conn);
        let mut statement = 0;
        while let Some(step) = stream.try_next().await? {
            match step {
                sqlx::Either::Left(_) => statement += 1,
                sqlx::Either::Right(row) => {
                    if let Some(Some(i)) = owner.get(statement) {
                        rows[*i].push(row);
                    }
                }
            }
        }
        Ok::<_, sqlx::Error>(())
    }
    .await;
    if outcome.is_err() {
        let _ = conn.execute("ROLLBACK").await;
    }
    outcome.map(|()| rows)
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;

    async fn store(name: &str) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("dibop-batch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let store = Store::connect(None, &dir, 2, false).await.expect("connects");
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)")
            .execute(&store.pool)
            .await
            .expect("table");
        (store, dir)
    }

    /// Queues one insert per value while the writer's turn is held, then lets them commit.
    async fn queued_inserts(store: &Store, values: &[&str]) -> Vec<sqlx::Result<Vec<AnyRow>>> {
        let turn = store.group.turn.clone().lock_owned().await;
        let tasks: Vec<_> = values
            .iter()
            .map(|v| {
                let (store, v) = (store.clone(), (*v).to_owned());
                tokio::spawn(async move {
                    let mut batch = Batch::default();
                    batch.push("INSERT INTO t (v) VALUES ($1) RETURNING v", vec![v.as_str().into()]);
                    batch.push("SELECT COUNT(*) FROM t WHERE v = $1", vec![v.as_str().into()]);
                    batch.run(&store).await
                })
            })
            .collect();
        while store.group.queue.lock().expect("queue").len() < values.len() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        drop(turn);
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.expect("task"));
        }
        answers
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_batches_commit_together_and_each_gets_its_own_rows() {
        let (store, dir) = store("group").await;
        let values: Vec<String> = (0..50).map(|i| format!("v{i}")).collect();
        let answers = queued_inserts(&store, &values.iter().map(String::as_str).collect::<Vec<_>>()).await;
        for (value, answer) in values.iter().zip(answers) {
            let rows = answer.expect("committed");
            assert_eq!(rows.len(), 2, "the insert's row and the count's");
            assert_eq!(rows[0].try_get::<String, _>(0).expect("v"), *value);
            assert_eq!(rows[1].try_get::<i64, _>(0).expect("count"), 1);
        }
        assert_eq!(store.group.together.load(std::sync::atomic::Ordering::Relaxed), 1, "one transaction for all");
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_batch_in_a_group_fails_alone() {
        let (store, dir) = store("failing").await;
        let answers = queued_inserts(&store, &["a", "b", "a", "c"]).await;
        // Which of the two "a" batches came first in the queue is up to the scheduler.
        let failed: Vec<bool> = answers.iter().map(Result::is_err).collect();
        assert!(failed == [false, false, true, false] || failed == [true, false, false, false], "{failed:?}");
        assert!(answers.iter().flat_map(|a| a.as_ref().err()).all(crate::is_unique_violation));
        let stored: Vec<String> =
            sqlx::query_scalar("SELECT v FROM t ORDER BY v").fetch_all(&store.pool).await.expect("rows");
        assert_eq!(stored, ["a", "b", "c"]);
        assert_eq!(store.group.together.load(std::sync::atomic::Ordering::Relaxed), 0, "the group was undone");
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_independent_batch_is_one_postgres_statement() {
        let mut batch = Batch::default();
        batch.push("INSERT INTO a (x) VALUES ($1)", vec!["1".into()]);
        batch.push("DELETE FROM b WHERE y = $1", vec!["2".into()]);
        batch.push("UPDATE c SET z = $2 WHERE id = $1 RETURNING z", vec!["3".into(), 4_i64.into()]);
        let (text, values) = postgres_statement(&batch);
        assert_eq!(
            text,
            "WITH w0 AS (INSERT INTO a (x) VALUES ($1)), w1 AS (DELETE FROM b WHERE y = $2) \
             UPDATE c SET z = $4 WHERE id = $3 RETURNING z"
        );
        assert_eq!(values.len(), 4);
    }

    #[test]
    fn a_fenced_batch_fails_on_postgres_when_its_last_update_found_nothing() {
        let lease = crate::Lease { execution_id: "e".into(), owner: "n".into(), epoch: 2 };
        let mut batch = Batch::default();
        batch.push("INSERT INTO a (x) VALUES ($1)", vec!["1".into()]);
        batch.push(
            "UPDATE executions SET z = 1 WHERE id = $1 AND lease_epoch = $2 RETURNING z",
            vec!["e".into(), 2_i64.into()],
        );
        batch.fence(&lease, Backend::Postgres);
        let (text, _) = postgres_statement(&batch);
        assert_eq!(
            text,
            "WITH w0 AS (INSERT INTO a (x) VALUES ($1)), w1 AS (UPDATE executions SET z = 1 WHERE id = $2 AND lease_epoch = $3 RETURNING z), \
             fence AS (INSERT INTO lease_fence (held) SELECT NULL WHERE NOT EXISTS (SELECT 1 FROM w1)) SELECT * FROM w1"
        );
        // On SQLite the check goes first, on the lease itself.
        let mut batch = Batch::default();
        batch.push("UPDATE executions SET z = 1 WHERE id = $1", vec!["e".into()]);
        batch.fence(&lease, Backend::Sqlite);
        let (text, values) = sqlite_command(&[&batch]);
        assert!(text.starts_with("BEGIN;\nINSERT INTO lease_fence"), "{text}");
        assert!(text.contains("UPDATE executions SET z = 1 WHERE id = $4"), "{text}");
        assert_eq!(values.len(), 4);
    }

    #[test]
    fn placeholders_move_by_the_offset() {
        assert_eq!(
            renumber("UPDATE t SET a = $1, b = $12 WHERE id = $2", 19),
            "UPDATE t SET a = $20, b = $31 WHERE id = $21"
        );
        assert_eq!(renumber("SELECT 1", 5), "SELECT 1");
    }
}
