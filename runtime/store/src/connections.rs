//! Connections: an enterprise's configured instance of a system, with sealed credentials.

use crate::paging::List;
use dibop_core::now_ms;
use sqlx::FromRow;

use super::{Page, Store};

#[derive(Debug, Clone, FromRow)]
pub struct ConnectionRow {
    pub id: String,
    pub enterprise_id: String,
    pub name: String,
    pub system: String,
    /// JSON object.
    pub config: String,
    /// Sealed JSON object of the credentials.
    pub credentials: String,
    /// JSON array of strings.
    pub allowed_hosts: String,
    pub memory_limit_mb: i64,
    pub timeout_ms: i64,
    /// JSON object: the circuit breaker and outbound rate limit (see the engine's `resilience`).
    pub resilience: String,
    /// Sealed JSON of the host-managed authentication, `''` for none.
    pub auth: String,
    /// JSON object of headers added to every request to the connection's hosts.
    pub headers: String,
    /// The plugin versions it uses: an exact version or a semver range ('' before pinning).
    pub plugin_version: String,
    /// 1 when calls check their output against the operation's `output_schema`.
    pub validate_output: i64,
    /// The sha256 of the component the credentials were given with; `''` without credentials
    /// (or saved before the binding).
    pub credentials_for: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The stored fields of a connection (create and replace).
#[derive(Clone)]
pub struct ConnectionFields {
    pub name: String,
    pub system: String,
    pub config: String,
    pub credentials: String,
    pub allowed_hosts: String,
    pub memory_limit_mb: i64,
    pub timeout_ms: i64,
    pub resilience: String,
    pub auth: String,
    pub headers: String,
    pub plugin_version: String,
    pub validate_output: bool,
    pub credentials_for: String,
}

impl ConnectionFields {
    /// The row these fields would make of connection `id` (a dry run stores nothing).
    pub fn into_row(self, enterprise_id: &str, id: &str, created_at: i64) -> ConnectionRow {
        ConnectionRow {
            id: id.to_owned(),
            enterprise_id: enterprise_id.to_owned(),
            name: self.name,
            system: self.system,
            config: self.config,
            credentials: self.credentials,
            allowed_hosts: self.allowed_hosts,
            memory_limit_mb: self.memory_limit_mb,
            timeout_ms: self.timeout_ms,
            resilience: self.resilience,
            auth: self.auth,
            headers: self.headers,
            plugin_version: self.plugin_version,
            validate_output: i64::from(self.validate_output),
            credentials_for: self.credentials_for,
            created_at,
            updated_at: now_ms(),
        }
    }
}

const COLUMNS: &str = "id, enterprise_id, name, system, config, credentials, allowed_hosts, memory_limit_mb, timeout_ms, resilience, auth, headers, plugin_version, validate_output, credentials_for, created_at, updated_at";

impl Store {
    /// Creates connection `id` (chosen by the caller: its credentials are sealed for it).
    pub async fn create_connection(
        &self,
        enterprise_id: &str,
        id: &str,
        c: ConnectionFields,
    ) -> sqlx::Result<ConnectionRow> {
        let now = now_ms();
        let row = sqlx::query_as(&format!(
            "INSERT INTO connections (id, enterprise_id, name, system, config, credentials, allowed_hosts, \
             memory_limit_mb, timeout_ms, resilience, auth, headers, plugin_version, validate_output, credentials_for, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $14, $15, $16, $13, $13) \
             RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(enterprise_id)
        .bind(c.name)
        .bind(c.system)
        .bind(c.config)
        .bind(c.credentials)
        .bind(c.allowed_hosts)
        .bind(c.memory_limit_mb)
        .bind(c.timeout_ms)
        .bind(c.resilience)
        .bind(c.auth)
        .bind(c.headers)
        .bind(now)
        .bind(c.plugin_version)
        .bind(i64::from(c.validate_output))
        .bind(c.credentials_for)
        .fetch_all(&self.pool)
        .await.and_then(crate::only);
        self.caches.connections.clear();
        row
    }

    pub async fn replace_connection(
        &self,
        enterprise_id: &str,
        id: &str,
        c: ConnectionFields,
    ) -> sqlx::Result<Option<ConnectionRow>> {
        let row = sqlx::query_as(&format!(
            "UPDATE connections SET name = $3, system = $4, config = $5, credentials = $6, allowed_hosts = $7, \
             memory_limit_mb = $8, timeout_ms = $9, resilience = $10, auth = $11, headers = $12, updated_at = $13, \
             plugin_version = $14, validate_output = $15, credentials_for = $16 WHERE enterprise_id = $1 AND id = $2 \
             RETURNING {COLUMNS}"
        ))
        .bind(enterprise_id)
        .bind(id)
        .bind(c.name)
        .bind(c.system)
        .bind(c.config)
        .bind(c.credentials)
        .bind(c.allowed_hosts)
        .bind(c.memory_limit_mb)
        .bind(c.timeout_ms)
        .bind(c.resilience)
        .bind(c.auth)
        .bind(c.headers)
        .bind(now_ms())
        .bind(c.plugin_version)
        .bind(i64::from(c.validate_output))
        .bind(c.credentials_for)
        .fetch_all(&self.pool)
        .await
        .map(crate::first);
        // Cleared after the write, so no reader caches the old row meanwhile.
        self.caches.connections.clear();
        row
    }

    /// Connections stored before pinning (`plugin_version` ''), every enterprise's.
    pub async fn unpinned_connections(&self) -> sqlx::Result<Vec<ConnectionRow>> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM connections WHERE plugin_version = ''"))
            .fetch_all(&self.pool)
            .await
    }

    /// Pins an unpinned connection (a pin set meanwhile by another node or a `PUT` stays).
    pub async fn pin_connection(&self, id: &str, version: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE connections SET plugin_version = $2 WHERE id = $1 AND plugin_version = ''")
            .bind(id)
            .bind(version)
            .execute(&self.pool)
            .await?;
        self.caches.connections.clear();
        Ok(())
    }

    pub async fn get_connection(&self, enterprise_id: &str, id: &str) -> sqlx::Result<Option<ConnectionRow>> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM connections WHERE enterprise_id = $1 AND id = $2"))
            .bind(enterprise_id)
            .bind(id)
            .fetch_optional(self.reads())
            .await
    }

    /// A connection by id or, failing that, by name.
    /// Cached for a second (see `cache`): the engine looks connections up on every step.
    pub async fn find_connection(&self, enterprise_id: &str, id_or_name: &str) -> sqlx::Result<Option<ConnectionRow>> {
        let key = (enterprise_id.to_owned(), id_or_name.to_owned());
        if let Some(row) = self.caches.connections.get(&key) {
            return Ok(row);
        }
        let row: Option<ConnectionRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM connections WHERE enterprise_id = $1 AND (id = $2 OR name = $2) \
             ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END LIMIT 1"
        ))
        .bind(enterprise_id)
        .bind(id_or_name)
        .fetch_optional(self.reads())
        .await?;
        self.caches.connections.insert(key, row.clone());
        Ok(row)
    }

    /// The enterprise's first connection of a system (oldest first).
    pub async fn connection_for_system(
        &self,
        enterprise_id: &str,
        system: &str,
    ) -> sqlx::Result<Option<ConnectionRow>> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM connections WHERE enterprise_id = $1 AND system = $2 ORDER BY created_at, id LIMIT 1"
        ))
        .bind(enterprise_id)
        .bind(system)
        .fetch_optional(self.reads())
        .await
    }

    pub async fn list_connections(&self, enterprise_id: &str, page: Page) -> sqlx::Result<(Vec<ConnectionRow>, i64)> {
        let list = List {
            columns: COLUMNS,
            table: "connections",
            filter: "enterprise_id = $1",
            order: "name, id",
            args: vec![enterprise_id.into()],
        };
        self.page_of(list, page).await
    }

    pub async fn delete_connection(&self, enterprise_id: &str, id: &str) -> sqlx::Result<bool> {
        let done = sqlx::query("DELETE FROM connections WHERE enterprise_id = $1 AND id = $2")
            .bind(enterprise_id)
            .bind(id)
            .execute(&self.pool)
            .await;
        self.caches.connections.clear();
        let deleted = done?.rows_affected() > 0;
        if deleted {
            self.forget_permits(id).await?;
        }
        Ok(deleted)
    }
}
