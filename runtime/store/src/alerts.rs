//! Alert rules, fired alerts and their delivery outcomes.

use crate::paging::List;
use dibop_core::{ExecutionStatus, Severity, new_id, now_ms};
use sqlx::FromRow;

use super::{Page, Store};

#[derive(Debug, Clone, FromRow)]
pub struct AlertRuleRow {
    pub id: String,
    pub enterprise_id: String,
    pub name: String,
    pub definition: String,
    pub secret: String,
    pub enabled: i64,
    pub last_fired_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct AlertRow {
    pub id: String,
    pub rule_id: String,
    #[sqlx(try_from = "String")]
    pub severity: Severity,
    pub metric: String,
    pub value: f64,
    pub threshold: f64,
    pub message: String,
    pub fired_at: i64,
    pub deliveries: String,
}

/// An alert to store.
pub struct NewAlert {
    pub rule_id: String,
    pub severity: Severity,
    pub metric: String,
    pub value: f64,
    pub threshold: f64,
    pub message: String,
}

const RULE: &str = "id, enterprise_id, name, definition, secret, enabled, last_fired_at, created_at, updated_at";
const ALERT: &str = "id, rule_id, severity, metric, value, threshold, message, fired_at, deliveries";

impl Store {
    pub async fn create_alert_rule(
        &self,
        enterprise_id: &str,
        name: &str,
        definition: &str,
        sealed_secret: &str,
        enabled: bool,
    ) -> sqlx::Result<AlertRuleRow> {
        let now = now_ms();
        let row = sqlx::query_as(&format!(
            "INSERT INTO alert_rules (id, enterprise_id, name, definition, secret, enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {RULE}"
        ))
        .bind(new_id())
        .bind(enterprise_id)
        .bind(name)
        .bind(definition)
        .bind(sealed_secret)
        .bind(i64::from(enabled))
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .and_then(crate::only);
        self.caches.alert_rules.clear();
        row
    }

    pub async fn replace_alert_rule(
        &self,
        enterprise_id: &str,
        id: &str,
        name: &str,
        definition: &str,
        enabled: bool,
    ) -> sqlx::Result<Option<AlertRuleRow>> {
        let row = sqlx::query_as(&format!(
            "UPDATE alert_rules SET name = $3, definition = $4, enabled = $5, updated_at = $6 \
             WHERE enterprise_id = $1 AND id = $2 RETURNING {RULE}"
        ))
        .bind(enterprise_id)
        .bind(id)
        .bind(name)
        .bind(definition)
        .bind(i64::from(enabled))
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await
        .map(crate::first);
        self.caches.alert_rules.clear();
        row
    }

    pub async fn delete_alert_rule(&self, enterprise_id: &str, id: &str) -> sqlx::Result<bool> {
        let done = sqlx::query("DELETE FROM alert_rules WHERE enterprise_id = $1 AND id = $2")
            .bind(enterprise_id)
            .bind(id)
            .execute(&self.pool)
            .await;
        self.caches.alert_rules.clear();
        Ok(done?.rows_affected() > 0)
    }

    pub async fn get_alert_rule(&self, enterprise_id: &str, id: &str) -> sqlx::Result<Option<AlertRuleRow>> {
        sqlx::query_as(&format!("SELECT {RULE} FROM alert_rules WHERE enterprise_id = $1 AND id = $2"))
            .bind(enterprise_id)
            .bind(id)
            .fetch_optional(self.reads())
            .await
    }

    pub async fn list_alert_rules(&self, enterprise_id: &str, page: Page) -> sqlx::Result<(Vec<AlertRuleRow>, i64)> {
        let list = List {
            columns: RULE,
            table: "alert_rules",
            filter: "enterprise_id = $1",
            order: "created_at, id",
            args: vec![enterprise_id.into()],
        };
        self.page_of(list, page).await
    }

    /// The enterprise's enabled rules (cached for a second: read on every execution's end).
    pub async fn enabled_alert_rules(&self, enterprise_id: &str) -> sqlx::Result<Vec<AlertRuleRow>> {
        if let Some(rows) = self.caches.alert_rules.get(&enterprise_id.to_owned()) {
            return Ok(rows);
        }
        let rows: Vec<AlertRuleRow> = sqlx::query_as(&format!(
            "SELECT {RULE} FROM alert_rules WHERE enterprise_id = $1 AND enabled = 1 ORDER BY created_at"
        ))
        .bind(enterprise_id)
        .fetch_all(self.reads())
        .await?;
        self.caches.alert_rules.insert(enterprise_id.to_owned(), rows.clone());
        Ok(rows)
    }

    /// Every enabled rule of every enterprise (the periodic evaluator's list).
    pub async fn all_enabled_alert_rules(&self) -> sqlx::Result<Vec<AlertRuleRow>> {
        sqlx::query_as(&format!("SELECT {RULE} FROM alert_rules WHERE enabled = 1 ORDER BY created_at"))
            .fetch_all(self.reads())
            .await
    }

    /// Claims a firing of the rule unless it fired within `cooldown_ms`: `true` for the one
    /// caller (on any node) that may fire now.
    pub async fn claim_alert(&self, rule_id: &str, cooldown_ms: i64) -> sqlx::Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE alert_rules SET last_fired_at = $2 WHERE id = $1 AND (last_fired_at IS NULL OR last_fired_at <= $3)",
        )
        .bind(rule_id)
        .bind(now)
        .bind(now - cooldown_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn insert_alert(&self, enterprise_id: &str, alert: NewAlert) -> sqlx::Result<AlertRow> {
        sqlx::query_as(&format!(
            "INSERT INTO alerts (id, enterprise_id, rule_id, severity, metric, value, threshold, message, fired_at, deliveries) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '[]') RETURNING {ALERT}"
        ))
        .bind(new_id())
        .bind(enterprise_id)
        .bind(alert.rule_id)
        .bind(alert.severity.as_str())
        .bind(alert.metric)
        .bind(alert.value)
        .bind(alert.threshold)
        .bind(alert.message)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await.and_then(crate::only)
    }

    pub async fn set_alert_deliveries(&self, id: &str, deliveries: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE alerts SET deliveries = $2 WHERE id = $1")
            .bind(id)
            .bind(deliveries)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn list_alerts(
        &self,
        enterprise_id: &str,
        rule_id: Option<&str>,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        page: Page,
    ) -> sqlx::Result<(Vec<AlertRow>, i64)> {
        let list = List {
            columns: ALERT,
            table: "alerts",
            filter: "enterprise_id = $1 AND ($2 IS NULL OR rule_id = $2) AND ($3 IS NULL OR fired_at >= $3) \
                     AND ($4 IS NULL OR fired_at <= $4)",
            order: "fired_at DESC, id DESC",
            args: vec![enterprise_id.into(), rule_id.into(), from_ms.into(), to_ms.into()],
        };
        self.page_of(list, page).await
    }

    /// Statuses of the orchestration's last `n` finished executions, newest first.
    pub async fn last_statuses(&self, orchestration_id: &str, n: i64) -> sqlx::Result<Vec<ExecutionStatus>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT status FROM executions WHERE orchestration_id = $1 AND finished_at IS NOT NULL \
             ORDER BY finished_at DESC, id DESC LIMIT $2",
        )
        .bind(orchestration_id)
        .bind(n)
        .fetch_all(self.reads())
        .await?;
        names.into_iter().map(|name| name.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))).collect()
    }
}
