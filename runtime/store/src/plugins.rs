//! Plugin versions: the global catalogue (enterprise_id NULL) and enterprises' private ones.

use crate::paging::List;
use dibop_core::{PluginStatus, new_id, now_ms};
use sqlx::FromRow;

use super::{Page, Store};

#[derive(Debug, Clone, FromRow)]
pub struct PluginRow {
    pub id: String,
    pub enterprise_id: Option<String>,
    pub slug: String,
    pub version: String,
    pub world: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub name: String,
    pub description: String,
    /// The `describe()` answer as JSON.
    pub info: String,
    pub bundled: i64,
    #[sqlx(try_from = "String")]
    pub status: PluginStatus,
    pub created_at: i64,
    /// The trusted signer whose key verified the upload.
    pub signed_by: Option<String>,
}

pub struct NewPlugin {
    pub enterprise_id: Option<String>,
    pub slug: String,
    pub version: String,
    pub world: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub name: String,
    pub description: String,
    pub info: String,
    pub bundled: bool,
    pub signed_by: Option<String>,
    /// `Active`, or `Pending` for a version that waits for an admin's approval.
    pub status: PluginStatus,
}

const COLUMNS: &str = "id, enterprise_id, slug, version, world, sha256, size_bytes, name, description, info, bundled, status, created_at, \
     signed_by";

/// Stores a component's bytes once, whichever plugin rows share them.
const KEEP_BYTES: &str =
    "INSERT INTO plugin_blobs (sha256, bytes, created_at) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING";

/// Rows an enterprise may see: the global catalogue and its own.
const VISIBLE: &str = "(enterprise_id IS NULL OR enterprise_id = $1)";

impl Store {
    /// Stores a plugin version with its component's bytes, in one transaction: a node that
    /// sees the row can always read the bytes.
    pub async fn insert_plugin(&self, plugin: NewPlugin, bytes: &[u8]) -> sqlx::Result<PluginRow> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(KEEP_BYTES).bind(&plugin.sha256).bind(bytes).bind(now_ms()).execute(&mut *tx).await?;
        let scope = plugin.enterprise_id.clone().unwrap_or_else(|| "global".into());
        let row: PluginRow = sqlx::query_as(&format!(
            "INSERT INTO plugins (id, enterprise_id, scope, slug, version, world, sha256, size_bytes, name, description, \
             info, bundled, created_at, signed_by, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             RETURNING {COLUMNS}"
        ))
        .bind(new_id())
        .bind(plugin.enterprise_id)
        .bind(scope)
        .bind(plugin.slug)
        .bind(plugin.version)
        .bind(plugin.world)
        .bind(plugin.sha256)
        .bind(plugin.size_bytes)
        .bind(plugin.name)
        .bind(plugin.description)
        .bind(plugin.info)
        .bind(i64::from(plugin.bundled))
        .bind(now_ms())
        .bind(plugin.signed_by)
        .bind(plugin.status.as_str())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        self.caches.plugins.clear();
        Ok(row)
    }

    /// The bytes of the component with this sha256, when a plugin stored them.
    pub async fn plugin_bytes(&self, sha256: &str) -> sqlx::Result<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT bytes FROM plugin_blobs WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(self.reads())
            .await
    }

    /// Stores the bytes of a component registered before its bytes were kept in the database
    /// (a no-op when they are there).
    pub async fn keep_plugin_bytes(&self, sha256: &str, bytes: &[u8]) -> sqlx::Result<()> {
        sqlx::query(KEEP_BYTES).bind(sha256).bind(bytes).bind(now_ms()).execute(&self.pool).await?;
        Ok(())
    }

    /// The sha256 of every registered component whose bytes the database lacks.
    pub async fn plugins_without_bytes(&self) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT DISTINCT sha256 FROM plugins WHERE sha256 NOT IN (SELECT sha256 FROM plugin_blobs) ORDER BY sha256",
        )
        .fetch_all(self.reads())
        .await
    }

    /// The plugin with this slug and version in one scope (`None` = global).
    pub async fn find_plugin_version(
        &self,
        scope: Option<&str>,
        slug: &str,
        version: &str,
    ) -> sqlx::Result<Option<PluginRow>> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM plugins WHERE scope = $1 AND slug = $2 AND version = $3"))
            .bind(scope.unwrap_or("global"))
            .bind(slug)
            .bind(version)
            .fetch_optional(self.reads())
            .await
    }

    /// Plugins in one scope with these bytes.
    pub async fn find_plugin_by_sha(&self, scope: Option<&str>, sha256: &str) -> sqlx::Result<Option<PluginRow>> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM plugins WHERE scope = $1 AND sha256 = $2 ORDER BY created_at LIMIT 1"
        ))
        .bind(scope.unwrap_or("global"))
        .bind(sha256)
        .fetch_optional(self.reads())
        .await
    }

    /// Whether any scope has registered a plugin with these bytes.
    pub async fn plugin_sha_registered(&self, sha256: &str) -> sqlx::Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM plugins WHERE sha256 = $1")
            .bind(sha256)
            .fetch_one(self.reads())
            .await?;
        Ok(n > 0)
    }

    pub async fn get_plugin(&self, enterprise_id: &str, id: &str) -> sqlx::Result<Option<PluginRow>> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM plugins WHERE {VISIBLE} AND id = $2"))
            .bind(enterprise_id)
            .bind(id)
            .fetch_optional(self.reads())
            .await
    }

    pub async fn list_plugins(&self, enterprise_id: &str, page: Page) -> sqlx::Result<(Vec<PluginRow>, i64)> {
        let list = List {
            columns: COLUMNS,
            table: "plugins",
            filter: VISIBLE,
            order: "slug, created_at, id",
            args: vec![enterprise_id.into()],
        };
        self.page_of(list, page).await
    }

    /// Every plugin version the enterprise may use: `active` and `deprecated` ones (callers
    /// pick the newest version per slug, active before deprecated). Cached for a second (see
    /// `cache`).
    pub async fn usable_plugins(&self, enterprise_id: &str) -> sqlx::Result<Vec<PluginRow>> {
        if let Some(rows) = self.caches.plugins.get(&enterprise_id.to_owned()) {
            return Ok(rows);
        }
        let rows: Vec<PluginRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM plugins WHERE {VISIBLE} AND status IN ('active', 'deprecated') ORDER BY slug"
        ))
        .bind(enterprise_id)
        .fetch_all(self.reads())
        .await?;
        self.caches.plugins.insert(enterprise_id.to_owned(), rows.clone());
        Ok(rows)
    }

    /// Every version of `slug` the enterprise sees (the global catalogue's and its own), in any
    /// status; `""` reads the global catalogue alone.
    pub async fn visible_versions(&self, enterprise_id: &str, slug: &str) -> sqlx::Result<Vec<PluginRow>> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM plugins WHERE {VISIBLE} AND slug = $2"))
            .bind(enterprise_id)
            .bind(slug)
            .fetch_all(self.reads())
            .await
    }

    /// The versions of `slug` in `status` (`Disabled`, `Pending`) the enterprise could see: why
    /// a pin admits no usable version.
    pub async fn versions_in_status(
        &self,
        enterprise_id: &str,
        slug: &str,
        status: PluginStatus,
    ) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar(&format!(
            "SELECT version FROM plugins WHERE {VISIBLE} AND slug = $2 AND status = $3 ORDER BY version"
        ))
        .bind(enterprise_id)
        .bind(slug)
        .bind(status.as_str())
        .fetch_all(self.reads())
        .await
    }

    /// Sets a version's status (`Active`, `Deprecated` or `Disabled`). Global ones only with
    /// `global_allowed`. Answers the updated row; `None` when not visible to the caller.
    pub async fn set_plugin_status(
        &self,
        enterprise_id: &str,
        id: &str,
        status: PluginStatus,
        global_allowed: bool,
    ) -> sqlx::Result<Option<PluginRow>> {
        let scope = if global_allowed { VISIBLE } else { "enterprise_id = $1" };
        let done =
            sqlx::query_as(&format!("UPDATE plugins SET status = $3 WHERE {scope} AND id = $2 RETURNING {COLUMNS}"))
                .bind(enterprise_id)
                .bind(id)
                .bind(status.as_str())
                .fetch_all(&self.pool)
                .await
                .map(crate::first);
        self.caches.plugins.clear();
        done
    }
}
