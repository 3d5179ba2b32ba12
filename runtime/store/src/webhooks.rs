//! Incoming webhooks.

use crate::paging::List;
use dibop_core::{new_id, now_ms};
use sqlx::FromRow;

use super::{Page, Store};

#[derive(Debug, Clone, FromRow)]
pub struct WebhookRow {
    pub id: String,
    pub enterprise_id: String,
    pub name: String,
    pub orchestration_id: String,
    pub parameters: String,
    pub signature: String,
    /// Sealed secret.
    pub secret: String,
    pub enabled: i64,
    pub created_at: i64,
}

pub struct NewWebhook {
    pub name: String,
    pub orchestration_id: String,
    pub parameters: String,
    pub signature: String,
    pub sealed_secret: String,
}

const COLUMNS: &str = "id, enterprise_id, name, orchestration_id, parameters, signature, secret, enabled, created_at";

impl Store {
    pub async fn create_webhook(&self, enterprise_id: &str, new: NewWebhook) -> sqlx::Result<WebhookRow> {
        sqlx::query_as(&format!(
            "INSERT INTO webhooks (id, enterprise_id, name, orchestration_id, parameters, signature, secret, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
        ))
        .bind(new_id())
        .bind(enterprise_id)
        .bind(new.name)
        .bind(new.orchestration_id)
        .bind(new.parameters)
        .bind(new.signature)
        .bind(new.sealed_secret)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await.and_then(crate::only)
    }

    pub async fn list_webhooks(&self, enterprise_id: &str, page: Page) -> sqlx::Result<(Vec<WebhookRow>, i64)> {
        let list = List {
            columns: COLUMNS,
            table: "webhooks",
            filter: "enterprise_id = $1",
            order: "created_at, id",
            args: vec![enterprise_id.into()],
        };
        self.page_of(list, page).await
    }

    pub async fn delete_webhook(&self, enterprise_id: &str, id: &str) -> sqlx::Result<bool> {
        let done = sqlx::query("DELETE FROM webhooks WHERE enterprise_id = $1 AND id = $2")
            .bind(enterprise_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A webhook by id alone: the trigger endpoint learns the enterprise from it, and then
    /// proves the caller knows its secret.
    pub async fn find_webhook(&self, id: &str) -> sqlx::Result<Option<WebhookRow>> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.reads())
            .await
    }
}
