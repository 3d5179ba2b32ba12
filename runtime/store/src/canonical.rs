//! Canonical records with their lineage.

use crate::paging::{Arg, List};
use dibop_core::{new_id, now_ms};
use sqlx::FromRow;

use super::{Backend, Page, Store};

#[derive(Debug, Clone, FromRow)]
pub struct CanonicalRow {
    pub id: String,
    pub domain: String,
    pub natural_key: String,
    pub data: String,
    pub source_kind: String,
    pub source_connection: Option<String>,
    pub source_system: Option<String>,
    pub execution_id: Option<String>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where a record came from.
#[derive(Debug, Clone, Default)]
pub struct Lineage {
    /// api or execution.
    pub kind: &'static str,
    pub connection: Option<String>,
    pub system: Option<String>,
    pub execution_id: Option<String>,
    pub created_by: Option<String>,
}

const COLUMNS: &str = "id, domain, natural_key, data, source_kind, source_connection, source_system, execution_id, \
     created_by, created_at, updated_at";

impl Store {
    /// A new record; a unique violation means its natural key exists.
    pub async fn insert_canonical(
        &self,
        enterprise_id: &str,
        domain: &str,
        key: &str,
        data: &str,
        lineage: Lineage,
    ) -> sqlx::Result<CanonicalRow> {
        self.write_canonical(enterprise_id, domain, key, data, lineage, "").await
    }

    /// Inserts or, for an existing natural key, replaces the data (lineage follows the writer).
    pub async fn upsert_canonical(
        &self,
        enterprise_id: &str,
        domain: &str,
        key: &str,
        data: &str,
        lineage: Lineage,
    ) -> sqlx::Result<CanonicalRow> {
        let on_conflict = "ON CONFLICT (enterprise_id, domain, natural_key) DO UPDATE SET data = excluded.data, \
             source_kind = excluded.source_kind, source_connection = excluded.source_connection, \
             source_system = excluded.source_system, execution_id = excluded.execution_id, updated_at = excluded.updated_at";
        self.write_canonical(enterprise_id, domain, key, data, lineage, on_conflict).await
    }

    /// The insert both share; `on_conflict` is empty or an `ON CONFLICT` clause.
    async fn write_canonical(
        &self,
        enterprise_id: &str,
        domain: &str,
        key: &str,
        data: &str,
        lineage: Lineage,
        on_conflict: &str,
    ) -> sqlx::Result<CanonicalRow> {
        sqlx::query_as(&format!(
            "INSERT INTO canonical_records (id, enterprise_id, domain, natural_key, data, source_kind, source_connection, \
             source_system, execution_id, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) {on_conflict} RETURNING {COLUMNS}"
        ))
        .bind(new_id())
        .bind(enterprise_id)
        .bind(domain)
        .bind(key)
        .bind(data)
        .bind(lineage.kind)
        .bind(lineage.connection)
        .bind(lineage.system)
        .bind(lineage.execution_id)
        .bind(lineage.created_by)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await.and_then(crate::only)
    }

    pub async fn replace_canonical(
        &self,
        enterprise_id: &str,
        domain: &str,
        id: &str,
        key: &str,
        data: &str,
    ) -> sqlx::Result<Option<CanonicalRow>> {
        sqlx::query_as(&format!(
            "UPDATE canonical_records SET natural_key = $4, data = $5, updated_at = $6 \
             WHERE enterprise_id = $1 AND domain = $2 AND id = $3 RETURNING {COLUMNS}"
        ))
        .bind(enterprise_id)
        .bind(domain)
        .bind(id)
        .bind(key)
        .bind(data)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await
        .map(crate::first)
    }

    pub async fn get_canonical(
        &self,
        enterprise_id: &str,
        domain: &str,
        id: &str,
    ) -> sqlx::Result<Option<CanonicalRow>> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM canonical_records WHERE enterprise_id = $1 AND domain = $2 AND id = $3"
        ))
        .bind(enterprise_id)
        .bind(domain)
        .bind(id)
        .fetch_optional(self.reads())
        .await
    }

    /// A page of a domain's records whose fields equal the given values (compared as text).
    pub async fn list_canonical(
        &self,
        enterprise_id: &str,
        domain: &str,
        filters: &[(String, String)],
        page: Page,
    ) -> sqlx::Result<(Vec<CanonicalRow>, i64)> {
        let mut filter = String::from("enterprise_id = $1 AND domain = $2");
        let mut paths = Vec::with_capacity(filters.len());
        for (i, (field, _)) in filters.iter().enumerate() {
            let (at, value) = (3 + 2 * i, 4 + 2 * i);
            filter.push_str(&match self.backend {
                Backend::Sqlite => format!(" AND CAST(json_extract(data, ${at}) AS TEXT) = ${value}"),
                Backend::Postgres => format!(" AND (CAST(data AS jsonb) ->> ${at}) = ${value}"),
            });
            paths.push(match self.backend {
                Backend::Sqlite => format!("$.\"{field}\""),
                Backend::Postgres => field.clone(),
            });
        }
        let mut args = vec![Arg::from(enterprise_id), Arg::from(domain)];
        for (path, (_, value)) in paths.iter().zip(filters) {
            args.push(path.as_str().into());
            args.push(value.as_str().into());
        }
        let list =
            List { columns: COLUMNS, table: "canonical_records", filter: &filter, order: "created_at, id", args };
        self.page_of(list, page).await
    }

    /// Records per domain.
    pub async fn canonical_counts(&self, enterprise_id: &str) -> sqlx::Result<Vec<(String, i64)>> {
        sqlx::query_as("SELECT domain, COUNT(*) FROM canonical_records WHERE enterprise_id = $1 GROUP BY domain")
            .bind(enterprise_id)
            .fetch_all(self.reads())
            .await
    }
}
