//! Orchestrations: the current definition of each, and every earlier version.

use crate::paging::List;
use sqlx::FromRow;

use dibop_core::{OrchestrationStatus, new_id, now_ms};

use super::{Page, Store};

#[derive(Debug, Clone, FromRow)]
pub struct OrchestrationRow {
    pub id: String,
    pub enterprise_id: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub status: OrchestrationStatus,
    pub version: i64,
    pub definition: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Why the last schedule slot could not fire (cleared when one fires again).
    pub schedule_error: Option<String>,
    pub schedule_error_at: Option<i64>,
}

/// One kept version of an orchestration.
#[derive(Debug, Clone, FromRow)]
pub struct VersionRow {
    pub version: i64,
    pub created_at: i64,
}

pub(super) const ORCHESTRATION: &str =
    "id, enterprise_id, name, status, version, definition, created_at, updated_at, schedule_error, schedule_error_at";

impl Store {
    pub async fn create_orchestration(
        &self,
        enterprise_id: &str,
        name: &str,
        status: &str,
        definition: &str,
        schedule: Option<(&str, &str)>,
    ) -> sqlx::Result<OrchestrationRow> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let row: OrchestrationRow = sqlx::query_as(&format!(
            "INSERT INTO orchestrations (id, enterprise_id, name, status, version, definition, created_at, updated_at, \
             cron, timezone) VALUES ($1, $2, $3, $4, 1, $5, $6, $6, $7, $8) RETURNING {ORCHESTRATION}"
        ))
        .bind(new_id())
        .bind(enterprise_id)
        .bind(name)
        .bind(status)
        .bind(definition)
        .bind(now)
        .bind(schedule.map(|s| s.0))
        .bind(schedule.map(|s| s.1))
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO orchestration_versions (orchestration_id, version, definition, created_at) VALUES ($1, 1, $2, $3)")
            .bind(&row.id)
            .bind(definition)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Replaces the definition, incrementing the version and keeping the old one.
    pub async fn update_orchestration(
        &self,
        enterprise_id: &str,
        id: &str,
        name: &str,
        status: &str,
        definition: &str,
        schedule: Option<(&str, &str)>,
    ) -> sqlx::Result<Option<OrchestrationRow>> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let row: Option<OrchestrationRow> = sqlx::query_as(&format!(
            "UPDATE orchestrations SET name = $3, status = $4, definition = $5, version = version + 1, updated_at = $6, \
             cron = $7, timezone = $8 WHERE enterprise_id = $1 AND id = $2 AND deleted = 0 RETURNING {ORCHESTRATION}"
        ))
        .bind(enterprise_id)
        .bind(id)
        .bind(name)
        .bind(status)
        .bind(definition)
        .bind(now)
        .bind(schedule.map(|s| s.0))
        .bind(schedule.map(|s| s.1))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = &row {
            sqlx::query("INSERT INTO orchestration_versions (orchestration_id, version, definition, created_at) VALUES ($1, $2, $3, $4)")
                .bind(&row.id)
                .bind(row.version)
                .bind(definition)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    pub async fn get_orchestration(&self, enterprise_id: &str, id: &str) -> sqlx::Result<Option<OrchestrationRow>> {
        sqlx::query_as(&format!(
            "SELECT {ORCHESTRATION} FROM orchestrations WHERE enterprise_id = $1 AND id = $2 AND deleted = 0"
        ))
        .bind(enterprise_id)
        .bind(id)
        .fetch_optional(self.reads())
        .await
    }

    /// An orchestration by id, or else by name (the newest of that name).
    pub async fn find_orchestration(
        &self,
        enterprise_id: &str,
        name_or_id: &str,
    ) -> sqlx::Result<Option<OrchestrationRow>> {
        sqlx::query_as(&format!(
            "SELECT {ORCHESTRATION} FROM orchestrations WHERE enterprise_id = $1 AND (id = $2 OR name = $2) AND deleted = 0 \
             ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END, created_at DESC LIMIT 1"
        ))
        .bind(enterprise_id)
        .bind(name_or_id)
        .fetch_optional(self.reads())
        .await
    }

    /// A version's definition (versions never change, so they are cached).
    pub async fn orchestration_version(&self, orchestration_id: &str, version: i64) -> sqlx::Result<Option<String>> {
        let key = (orchestration_id.to_owned(), version);
        if let Some(text) = self.caches.versions.get(&key) {
            return Ok(Some(text));
        }
        let text: Option<String> = sqlx::query_scalar(
            "SELECT definition FROM orchestration_versions WHERE orchestration_id = $1 AND version = $2",
        )
        .bind(orchestration_id)
        .bind(version)
        .fetch_optional(self.reads())
        .await?;
        if let Some(text) = &text {
            self.caches.versions.insert(key, text.clone());
        }
        Ok(text)
    }

    /// The versions of an orchestration, newest first (without their definitions). The caller
    /// has checked that the orchestration belongs to its enterprise.
    pub async fn list_orchestration_versions(
        &self,
        orchestration_id: &str,
        page: Page,
    ) -> sqlx::Result<(Vec<VersionRow>, i64)> {
        let list = List {
            columns: "version, created_at",
            table: "orchestration_versions",
            filter: "orchestration_id = $1",
            order: "version DESC",
            args: vec![orchestration_id.into()],
        };
        self.page_of(list, page).await
    }

    /// A version's definition and when it was saved.
    pub async fn orchestration_version_saved(
        &self,
        orchestration_id: &str,
        version: i64,
    ) -> sqlx::Result<Option<(String, i64)>> {
        sqlx::query_as(
            "SELECT definition, created_at FROM orchestration_versions WHERE orchestration_id = $1 AND version = $2",
        )
        .bind(orchestration_id)
        .bind(version)
        .fetch_optional(self.reads())
        .await
    }

    pub async fn list_orchestrations(
        &self,
        enterprise_id: &str,
        page: Page,
    ) -> sqlx::Result<(Vec<OrchestrationRow>, i64)> {
        let list = List {
            columns: ORCHESTRATION,
            table: "orchestrations",
            filter: "enterprise_id = $1 AND deleted = 0",
            order: "created_at, id",
            args: vec![enterprise_id.into()],
        };
        self.page_of(list, page).await
    }

    /// Deletes an orchestration (soft: its executions stay readable).
    pub async fn delete_orchestration(&self, enterprise_id: &str, id: &str) -> sqlx::Result<bool> {
        let done = sqlx::query("UPDATE orchestrations SET deleted = 1, updated_at = $3 WHERE enterprise_id = $1 AND id = $2 AND deleted = 0")
            .bind(enterprise_id)
            .bind(id)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
