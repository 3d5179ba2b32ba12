//! The log of outbound requests plugins made.

use crate::paging::{Arg, List};
use dibop_core::ApiCallStatus;
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
    /// The trace of the execution: outbound requests carry it in `traceparent`.
    pub trace_id: Option<String>,
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
    pub status: ApiCallStatus,
    pub duration_ms: i64,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub request_preview: Option<String>,
    pub response_preview: Option<String>,
    pub error: Option<String>,
    /// Response headers (cookies and authentication challenges left out), for step outputs.
    pub response_headers: Vec<(String, String)>,
}

impl ApiCallRecord {
    /// A row for a request of `origin` starting now: `error` until its outcome is known.
    pub fn start(origin: CallOrigin, method: String, url: String) -> Self {
        Self {
            id: dibop_core::new_id(),
            timestamp_ms: dibop_core::now_ms(),
            origin,
            method,
            url,
            status_code: None,
            status: ApiCallStatus::Error,
            duration_ms: 0,
            request_bytes: 0,
            response_bytes: 0,
            request_preview: None,
            response_preview: None,
            error: None,
            response_headers: Vec::new(),
        }
    }
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
    #[sqlx(try_from = "String")]
    pub status: ApiCallStatus,
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
    pub status: Option<ApiCallStatus>,
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
    #[sqlx(try_from = "String")]
    pub status: ApiCallStatus,
    pub duration_ms: i64,
}

const COLUMNS: &str = "id, timestamp, system, connection_id, connection, method, url, status_code, status, duration_ms, \
     request_bytes, response_bytes, request_preview, response_preview, error, orchestration_id, execution_id, step";

/// `WHERE` clause of a filter; parameters start at `$1` = enterprise id and follow in field order.
fn where_clause(filter: &ApiCallFilter) -> (String, Vec<Arg<'_>>) {
    let conditions = [
        ("system = ", filter.system.as_deref().map(|v| Arg::Text(Some(v)))),
        ("status = ", filter.status.map(|v| Arg::Text(Some(v.as_str())))),
        ("orchestration_id = ", filter.orchestration_id.as_deref().map(|v| Arg::Text(Some(v)))),
        ("execution_id = ", filter.execution_id.as_deref().map(|v| Arg::Text(Some(v)))),
        ("connection_id = ", filter.connection_id.as_deref().map(|v| Arg::Text(Some(v)))),
        ("timestamp >= ", filter.from_ms.map(|v| Arg::Int(Some(v)))),
        ("timestamp <= ", filter.to_ms.map(|v| Arg::Int(Some(v)))),
    ];
    let mut clause = String::from("enterprise_id = $1");
    let mut args = Vec::new();
    for (condition, value) in conditions {
        if let Some(value) = value {
            args.push(value);
            // $1 is the enterprise.
            clause.push_str(&format!(" AND {condition}${}", args.len() + 1));
        }
    }
    (clause, args)
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
    pub async fn api_calls_by_outcome(&self, enterprise_id: &str) -> sqlx::Result<Vec<(String, ApiCallStatus, i64)>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT system, status, COUNT(*) FROM api_calls WHERE enterprise_id = $1 GROUP BY system, status \
             ORDER BY system, status",
        )
        .bind(enterprise_id)
        .fetch_all(self.reads())
        .await?;
        rows.into_iter()
            .map(|(system, status, count)| {
                let status = status.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                Ok((system, status, count))
            })
            .collect()
    }

    pub async fn list_api_calls(
        &self,
        enterprise_id: &str,
        filter: &ApiCallFilter,
        page: Page,
    ) -> sqlx::Result<(Vec<ApiCallRow>, i64)> {
        let (filter, args) = where_clause(filter);
        let args = std::iter::once(Arg::from(enterprise_id)).chain(args).collect();
        let list =
            List { columns: COLUMNS, table: "api_calls", filter: &filter, order: "timestamp DESC, id DESC", args };
        self.page_of(list, page).await
    }

    /// Outcome and duration of the enterprise's calls since `since_ms`, for statistics.
    pub async fn api_call_samples(&self, enterprise_id: &str, since_ms: i64) -> sqlx::Result<Vec<ApiCallSample>> {
        sqlx::query_as(
            "SELECT system, timestamp, status, duration_ms FROM api_calls WHERE enterprise_id = $1 AND timestamp >= $2 \
             ORDER BY timestamp",
        )
        .bind(enterprise_id)
        .bind(since_ms)
        .fetch_all(self.reads())
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
                r.status.as_str().into(),
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
