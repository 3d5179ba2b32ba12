//! The log of outbound requests plugins made.

use sqlx::FromRow;

/// Who a request is made for; copied into its API-call row.
#[derive(Debug, Clone, Default)]
pub struct CallOrigin {
    pub enterprise_id: String,
    pub system: String,
    pub connection_id: Option<String>,
    pub connection: Option<String>,
    pub orchestration_id: Option<String>,
    pub execution_id: Option<String>,
    pub step: Option<String>,
}

/// One outbound request as recorded, before it is stored.
#[derive(Debug, Clone)]
pub struct ApiCallRecord {
    pub id: String,
    pub timestamp_ms: i64,
    pub origin: CallOrigin,
    pub method: String,
    pub url: String,
    pub status_code: Option<u16>,
    /// `success`, `error` or `timeout`.
    pub status: &'static str,
    pub duration_ms: i64,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub request_preview: Option<String>,
    pub response_preview: Option<String>,
    pub error: Option<String>,
    /// Response headers (cookies and authentication challenges left out), for step outputs.
    pub response_headers: Vec<(String, String)>,
}

use super::batch::Batch;
use super::{Page, Store};

#[derive(Debug, Clone, FromRow)]
pub struct ApiCallRow {
    pub id: String,
    pub timestamp: i64,
    pub system: String,
    pub connection_id: Option<String>,
    pub connection: Option<String>,
    pub method: String,
    pub url: String,
    pub status_code: Option<i64>,
    pub status: String,
    pub duration_ms: i64,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub request_preview: Option<String>,
    pub response_preview: Option<String>,
    pub error: Option<String>,
    pub orchestration_id: Option<String>,
    pub execution_id: Option<String>,
    pub step: Option<String>,
}

/// Filters of `GET /api-calls`; every one optional.
#[derive(Debug, Default, Clone)]
pub struct ApiCallFilter {
    pub system: Option<String>,
    pub status: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub orchestration_id: Option<String>,
    pub execution_id: Option<String>,
    pub connection_id: Option<String>,
}

/// Duration and outcome of one call, for statistics.
#[derive(Debug, Clone, FromRow)]
pub struct ApiCallSample {
    pub system: String,
    pub timestamp: i64,
    pub status: String,
    pub duration_ms: i64,
}

const COLUMNS: &str = "id, timestamp, system, connection_id, connection, method, url, status_code, status, duration_ms, \
     request_bytes, response_bytes, request_preview, response_preview, error, orchestration_id, execution_id, step";

/// `WHERE` clause of a filter; parameters start at `$1` = enterprise id and follow in field order.
fn where_clause(filter: &ApiCallFilter) -> (String, Vec<String>) {
    let mut clause = String::from("enterprise_id = $1");
    let mut text = Vec::new();
    let mut n = 1;
    let mut add = |column: &str, op: &str, value: Option<&String>, clause: &mut String| {
        if let Some(v) = value {
            n += 1;
            clause.push_str(&format!(" AND {column} {op} ${n}"));
            text.push(v.clone());
        }
    };
    add("system", "=", filter.system.as_ref(), &mut clause);
    add("status", "=", filter.status.as_ref(), &mut clause);
    add("orchestration_id", "=", filter.orchestration_id.as_ref(), &mut clause);
    add("execution_id", "=", filter.execution_id.as_ref(), &mut clause);
    add("connection_id", "=", filter.connection_id.as_ref(), &mut clause);
    if filter.from_ms.is_some() {
        n += 1;
        clause.push_str(&format!(" AND timestamp >= ${n}"));
    }
    if filter.to_ms.is_some() {
        n += 1;
        clause.push_str(&format!(" AND timestamp <= ${n}"));
    }
    (clause, text)
}

impl Store {
    /// Stores the rows of one call, in one transaction.
    pub async fn insert_api_calls(&self, records: &[ApiCallRecord]) -> sqlx::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::default();
        push_api_calls(&mut batch, records);
        batch.run(self).await.map(drop)
    }

    /// The enterprise's API calls by system and outcome.
    pub async fn api_calls_by_outcome(&self, enterprise_id: &str) -> sqlx::Result<Vec<(String, String, i64)>> {
        sqlx::query_as(
            "SELECT system, status, COUNT(*) FROM api_calls WHERE enterprise_id = $1 GROUP BY system, status \
             ORDER BY system, status",
        )
        .bind(enterprise_id)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn list_api_calls(
        &self,
        enterprise_id: &str,
        filter: &ApiCallFilter,
        page: Page,
    ) -> sqlx::Result<(Vec<ApiCallRow>, i64)> {
        let (clause, text) = where_clause(filter);
        let used = 1 + text.len() + usize::from(filter.from_ms.is_some()) + usize::from(filter.to_ms.is_some());
        let sql = format!(
            "SELECT {COLUMNS} FROM api_calls WHERE {clause} ORDER BY timestamp DESC, id DESC LIMIT ${} OFFSET ${}",
            used + 1,
            used + 2
        );
        let mut rows = sqlx::query_as::<_, ApiCallRow>(&sql).bind(enterprise_id);
        let count_sql = format!("SELECT COUNT(*) FROM api_calls WHERE {clause}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql).bind(enterprise_id);
        for value in &text {
            rows = rows.bind(value);
            count = count.bind(value);
        }
        for bound in [filter.from_ms, filter.to_ms].into_iter().flatten() {
            rows = rows.bind(bound);
            count = count.bind(bound);
        }
        let rows = rows.bind(page.limit).bind(page.offset).fetch_all(&self.pool).await?;
        Ok((rows, count.fetch_one(&self.pool).await?))
    }

    /// Outcome and duration of the enterprise's calls since `since_ms`, for statistics.
    pub async fn api_call_samples(&self, enterprise_id: &str, since_ms: i64) -> sqlx::Result<Vec<ApiCallSample>> {
        sqlx::query_as(
            "SELECT system, timestamp, status, duration_ms FROM api_calls WHERE enterprise_id = $1 AND timestamp >= $2 \
             ORDER BY timestamp",
        )
        .bind(enterprise_id)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await
    }
}

/// Adds the inserts of API-call rows to a batch.
pub(super) fn push_api_calls(batch: &mut Batch, records: &[ApiCallRecord]) {
    for r in records {
        batch.push(
            "INSERT INTO api_calls (id, enterprise_id, timestamp, system, connection_id, connection, method, url, \
             status_code, status, duration_ms, request_bytes, response_bytes, request_preview, response_preview, error, \
             orchestration_id, execution_id, step) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
            vec![
                (&r.id).into(),
                (&r.origin.enterprise_id).into(),
                r.timestamp_ms.into(),
                (&r.origin.system).into(),
                (&r.origin.connection_id).into(),
                (&r.origin.connection).into(),
                (&r.method).into(),
                (&r.url).into(),
                r.status_code.map(i64::from).into(),
                r.status.into(),
                r.duration_ms.into(),
                r.request_bytes.into(),
                r.response_bytes.into(),
                (&r.request_preview).into(),
                (&r.response_preview).into(),
                (&r.error).into(),
                (&r.origin.orchestration_id).into(),
                (&r.origin.execution_id).into(),
                (&r.origin.step).into(),
            ],
        );
    }
}
