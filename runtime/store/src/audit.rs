//! The audit log: one row per change a user or API key made.

use sqlx::FromRow;

use crate::paging::{Arg, List};

use super::{Page, Store};

#[derive(Debug, Clone, FromRow)]
pub struct AuditRow {
    pub id: String,
    pub enterprise_id: Option<String>,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub resource_id: Option<String>,
    /// JSON, secrets removed.
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Which rows a list takes; `enterprise_id` `None` takes every enterprise's (platform rights).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub enterprise_id: Option<String>,
    pub actor: Option<String>,
    pub resource: Option<String>,
    pub action: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

const COLUMNS: &str = "id, enterprise_id, at, actor, action, resource, resource_id, before, after";

impl Store {
    /// Who uploaded a plugin version (the actor of its `upload` row), if the log still has it.
    pub async fn plugin_uploader(&self, plugin_id: &str) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT actor FROM audit_log WHERE resource = 'plugin' AND action = 'upload' AND resource_id = $1 \
             ORDER BY at LIMIT 1",
        )
        .bind(plugin_id)
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn insert_audit(&self, row: &AuditRow) -> sqlx::Result<()> {
        sqlx::query(&format!("INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
            .bind(&row.id)
            .bind(&row.enterprise_id)
            .bind(row.at)
            .bind(&row.actor)
            .bind(&row.action)
            .bind(&row.resource)
            .bind(&row.resource_id)
            .bind(&row.before)
            .bind(&row.after)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Rows matching `filter`, newest first.
    pub async fn list_audit(&self, filter: &AuditFilter, page: Page) -> sqlx::Result<(Vec<AuditRow>, i64)> {
        let mut clause = String::from("1 = 1");
        let mut args: Vec<Arg<'_>> = Vec::new();
        for (column, value) in [
            ("enterprise_id", &filter.enterprise_id),
            ("actor", &filter.actor),
            ("resource", &filter.resource),
            ("action", &filter.action),
        ] {
            if let Some(value) = value {
                args.push(value.as_str().into());
                clause.push_str(&format!(" AND {column} = ${}", args.len()));
            }
        }
        if let Some(from) = filter.from_ms {
            args.push(Some(from).into());
            clause.push_str(&format!(" AND at >= ${}", args.len()));
        }
        if let Some(to) = filter.to_ms {
            args.push(Some(to).into());
            clause.push_str(&format!(" AND at <= ${}", args.len()));
        }
        let list = List { columns: COLUMNS, table: "audit_log", filter: &clause, order: "at DESC, id DESC", args };
        self.page_of(list, page).await
    }
}
