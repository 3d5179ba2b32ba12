//! Enterprises, users and API keys.

use crate::paging::List;
use dibop_core::{Role, UserStatus, new_id, now_ms};
use sqlx::FromRow;

use super::{Page, Store};

/// A tenant and its settings.
#[derive(Debug, Clone, FromRow)]
pub struct Enterprise {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub timezone: String,
    pub session_duration_minutes: i64,
    pub retention_days: i64,
    pub api_requests_per_minute: i64,
    pub executions_per_minute: i64,
    /// Calls a minute of each connection that sets no rate limit of its own.
    pub outbound_requests_per_minute: i64,
    /// Queued executions past which execute and webhook triggers are refused (429).
    pub max_queued_executions: i64,
    /// 1 when plugin uploads must carry a signature of a trusted signer.
    pub require_signed_plugins: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What creating an enterprise needs.
pub struct NewEnterprise {
    pub name: String,
    pub slug: String,
    pub timezone: String,
}

/// A person who logs in.
#[derive(Debug, Clone, FromRow)]
pub struct User {
    pub id: String,
    pub enterprise_id: String,
    pub email: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// The explicit grant of platform rights on top of `role` (the bootstrap admin has it); see
    /// [`User::has_platform_rights`].
    pub platform_access: i64,
    #[sqlx(try_from = "String")]
    pub status: UserStatus,
    pub password_hash: String,
    /// Moves on when the password changes or the user is deactivated; access tokens carry the
    /// generation they were issued under and are refused once it moved on.
    pub token_generation: i64,
    pub last_login_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl User {
    pub fn is_active(&self) -> bool {
        self.status == UserStatus::Active
    }

    /// Platform rights: the role `platform_admin`, or the explicit `platform_access` grant.
    pub fn has_platform_rights(&self) -> bool {
        self.platform_access != 0 || self.role == Role::PlatformAdmin
    }
}

/// What creating a user needs; `password_hash` is already an Argon2id PHC string.
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub role: Role,
    pub platform_access: bool,
    pub password_hash: String,
}

/// Changes to a user; `None` keeps the current value. A new password or a deactivation also
/// moves the user's token generation on, which ends every token issued before.
#[derive(Default)]
pub struct UserPatch {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub platform_access: Option<bool>,
    pub status: Option<UserStatus>,
    pub password_hash: Option<String>,
}

/// Whether an update may touch a user with platform rights (only a caller with platform
/// rights may). Checked in the `UPDATE` itself, so a grant racing the update cannot slip by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformUsers {
    MayChange,
    Untouchable,
}

/// Changes to an enterprise's settings; `None` keeps the current value.
#[derive(Default)]
pub struct SettingsPatch {
    pub name: Option<String>,
    pub timezone: Option<String>,
    pub session_duration_minutes: Option<i64>,
    pub retention_days: Option<i64>,
    pub api_requests_per_minute: Option<i64>,
    pub executions_per_minute: Option<i64>,
    pub outbound_requests_per_minute: Option<i64>,
    pub max_queued_executions: Option<i64>,
    pub require_signed_plugins: Option<bool>,
}

/// An API key as listed (never the key itself).
#[derive(Debug, Clone, FromRow)]
pub struct ApiKey {
    pub id: String,
    pub enterprise_id: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub prefix: String,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// After this instant (unix ms) the key no longer authenticates; `None`: it never expires.
    pub expires_at: Option<i64>,
}

/// What creating an API key stores: the hash, never the key.
pub struct NewApiKey {
    pub name: String,
    pub role: Role,
    pub prefix: String,
    pub key_hash: String,
    pub created_by: Option<String>,
    pub expires_at: Option<i64>,
}

/// An active API key with its enterprise, as authentication needs it.
pub struct ApiKeyWithEnterprise {
    pub key: ApiKey,
    pub enterprise: Enterprise,
}

const ENTERPRISE_COLUMNS: &str = "id, name, slug, timezone, session_duration_minutes, retention_days, \
     api_requests_per_minute, executions_per_minute, outbound_requests_per_minute, max_queued_executions, require_signed_plugins, \
     created_at, updated_at";
const USER_COLUMNS: &str = "id, enterprise_id, email, name, role, platform_access, status, password_hash, \
     token_generation, last_login_at, created_at, updated_at";
const API_KEY_COLUMNS: &str =
    "id, enterprise_id, name, role, prefix, created_by, created_at, last_used_at, revoked_at, expires_at";
/// More accounts than this behind one address are not considered at login (one per enterprise
/// at most; a bound on the work of one login).
const MAX_ACCOUNTS_PER_ADDRESS: i64 = 64;

impl Store {
    pub async fn count_enterprises(&self) -> sqlx::Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM enterprises").fetch_one(self.reads()).await
    }

    /// Creates an enterprise and its first user in one transaction.
    pub async fn create_enterprise_with_admin(
        &self,
        enterprise: NewEnterprise,
        admin: NewUser,
    ) -> sqlx::Result<(Enterprise, User)> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let enterprise_id = new_id();
        let ent: Enterprise = sqlx::query_as(&format!(
            "INSERT INTO enterprises (id, name, slug, timezone, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING {ENTERPRISE_COLUMNS}"
        ))
        .bind(&enterprise_id)
        .bind(&enterprise.name)
        .bind(&enterprise.slug)
        .bind(&enterprise.timezone)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let user = insert_user(&mut tx, &enterprise_id, &admin).await?;
        tx.commit().await?;
        Ok((ent, user))
    }

    /// The enterprise's `outbound_requests_per_minute` (60 when it is gone). Cached for a
    /// second (see `cache`): every step that calls a connection reads it.
    pub async fn outbound_limit(&self, enterprise_id: &str) -> sqlx::Result<i64> {
        if let Some(limit) = self.caches.outbound_limits.get(&enterprise_id.to_owned()) {
            return Ok(limit);
        }
        let limit: Option<i64> =
            sqlx::query_scalar("SELECT outbound_requests_per_minute FROM enterprises WHERE id = $1")
                .bind(enterprise_id)
                .fetch_optional(self.reads())
                .await?;
        let limit = limit.unwrap_or(60);
        self.caches.outbound_limits.insert(enterprise_id.to_owned(), limit);
        Ok(limit)
    }

    pub async fn get_enterprise(&self, id: &str) -> sqlx::Result<Option<Enterprise>> {
        sqlx::query_as(&format!("SELECT {ENTERPRISE_COLUMNS} FROM enterprises WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.reads())
            .await
    }

    pub async fn list_enterprises(&self, page: Page) -> sqlx::Result<(Vec<Enterprise>, i64)> {
        let rows = sqlx::query_as(&format!(
            "SELECT {ENTERPRISE_COLUMNS} FROM enterprises ORDER BY created_at, id LIMIT $1 OFFSET $2"
        ))
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(self.reads())
        .await?;
        Ok((rows, self.count_enterprises().await?))
    }

    pub async fn update_settings(&self, enterprise_id: &str, patch: SettingsPatch) -> sqlx::Result<Option<Enterprise>> {
        let row = sqlx::query_as(&format!(
            "UPDATE enterprises SET name = COALESCE($2, name), timezone = COALESCE($3, timezone), \
             session_duration_minutes = COALESCE($4, session_duration_minutes), \
             retention_days = COALESCE($5, retention_days), \
             api_requests_per_minute = COALESCE($6, api_requests_per_minute), \
             executions_per_minute = COALESCE($7, executions_per_minute), \
             outbound_requests_per_minute = COALESCE($9, outbound_requests_per_minute), \
             require_signed_plugins = COALESCE($10, require_signed_plugins), \
             max_queued_executions = COALESCE($11, max_queued_executions), updated_at = $8 \
             WHERE id = $1 RETURNING {ENTERPRISE_COLUMNS}"
        ))
        .bind(enterprise_id)
        .bind(patch.name)
        .bind(patch.timezone)
        .bind(patch.session_duration_minutes)
        .bind(patch.retention_days)
        .bind(patch.api_requests_per_minute)
        .bind(patch.executions_per_minute)
        .bind(now_ms())
        .bind(patch.outbound_requests_per_minute)
        .bind(patch.require_signed_plugins.map(i64::from))
        .bind(patch.max_queued_executions)
        .fetch_all(&self.pool)
        .await
        .map(crate::first);
        // Cleared after the write, so no reader caches the old limit meanwhile.
        self.caches.outbound_limits.clear();
        row
    }

    pub async fn create_user(&self, enterprise_id: &str, user: &NewUser) -> sqlx::Result<User> {
        let mut tx = self.pool.begin().await?;
        let user = insert_user(&mut tx, enterprise_id, user).await?;
        tx.commit().await?;
        Ok(user)
    }

    pub async fn get_user(&self, enterprise_id: &str, id: &str) -> sqlx::Result<Option<User>> {
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE enterprise_id = $1 AND id = $2"))
            .bind(enterprise_id)
            .bind(id)
            .fetch_optional(self.reads())
            .await
    }

    /// A user with its enterprise in one query (authentication does this on every request).
    pub async fn user_with_enterprise(
        &self,
        enterprise_id: &str,
        user_id: &str,
    ) -> sqlx::Result<Option<(User, Enterprise)>> {
        #[derive(FromRow)]
        struct Joined {
            #[sqlx(flatten)]
            user: User,
            e_name: String,
            e_slug: String,
            e_timezone: String,
            e_session_duration_minutes: i64,
            e_retention_days: i64,
            e_api_requests_per_minute: i64,
            e_executions_per_minute: i64,
            e_outbound_requests_per_minute: i64,
            e_max_queued_executions: i64,
            e_require_signed_plugins: i64,
            e_created_at: i64,
            e_updated_at: i64,
        }
        let user_columns: String =
            USER_COLUMNS.split(',').map(|c| format!("u.{}", c.trim())).collect::<Vec<_>>().join(", ");
        let joined: Option<Joined> = sqlx::query_as(&format!(
            "SELECT {user_columns}, e.name AS e_name, e.slug AS e_slug, e.timezone AS e_timezone, \
             e.session_duration_minutes AS e_session_duration_minutes, e.retention_days AS e_retention_days, \
             e.api_requests_per_minute AS e_api_requests_per_minute, e.executions_per_minute AS e_executions_per_minute, \
             e.outbound_requests_per_minute AS e_outbound_requests_per_minute, \
             e.max_queued_executions AS e_max_queued_executions, \
             e.require_signed_plugins AS e_require_signed_plugins, e.created_at AS e_created_at, e.updated_at AS e_updated_at \
             FROM users u JOIN enterprises e ON e.id = u.enterprise_id WHERE u.enterprise_id = $1 AND u.id = $2"
        ))
        .bind(enterprise_id)
        .bind(user_id)
        .fetch_optional(self.reads())
        .await?;
        Ok(joined.map(|j| {
            let enterprise = Enterprise {
                id: j.user.enterprise_id.clone(),
                name: j.e_name,
                slug: j.e_slug,
                timezone: j.e_timezone,
                session_duration_minutes: j.e_session_duration_minutes,
                retention_days: j.e_retention_days,
                api_requests_per_minute: j.e_api_requests_per_minute,
                executions_per_minute: j.e_executions_per_minute,
                outbound_requests_per_minute: j.e_outbound_requests_per_minute,
                max_queued_executions: j.e_max_queued_executions,
                require_signed_plugins: j.e_require_signed_plugins,
                created_at: j.e_created_at,
                updated_at: j.e_updated_at,
            };
            (j.user, enterprise)
        }))
    }

    /// The accounts of an address across enterprises, oldest first (at most one per
    /// enterprise), or only the one of the enterprise with slug `enterprise`: only login does this.
    pub async fn find_users_by_email(&self, email: &str, enterprise: Option<&str>) -> sqlx::Result<Vec<User>> {
        let user_columns: String =
            USER_COLUMNS.split(',').map(|c| format!("u.{}", c.trim())).collect::<Vec<_>>().join(", ");
        sqlx::query_as(&format!(
            "SELECT {user_columns} FROM users u JOIN enterprises e ON e.id = u.enterprise_id \
             WHERE u.email = $1 AND ($2 = '' OR e.slug = $2) ORDER BY u.created_at, u.id LIMIT $3"
        ))
        .bind(email)
        .bind(enterprise.unwrap_or_default())
        .bind(MAX_ACCOUNTS_PER_ADDRESS)
        .fetch_all(self.reads())
        .await
    }

    /// The password hash of the oldest account of an address, in any enterprise: new passwords
    /// of the address are hashed with its salt (see `auth::password`). Never leaves the server.
    pub async fn address_password_hash(&self, email: &str) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1 ORDER BY created_at, id LIMIT 1")
            .bind(email)
            .fetch_optional(self.reads())
            .await
    }

    /// Replaces a password hash by an equivalent one (same password, the address's salt).
    pub async fn rehash_password(&self, user_id: &str, old_hash: &str, new_hash: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2")
            .bind(user_id)
            .bind(old_hash)
            .bind(new_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn list_users(&self, enterprise_id: &str, page: Page) -> sqlx::Result<(Vec<User>, i64)> {
        let list = List {
            columns: USER_COLUMNS,
            table: "users",
            filter: "enterprise_id = $1",
            order: "created_at, id",
            args: vec![enterprise_id.into()],
        };
        self.page_of(list, page).await
    }

    /// Applies `patch`; `None` when the enterprise has no such user, or when it has platform
    /// rights and `platform_users` is [`PlatformUsers::Untouchable`].
    pub async fn update_user(
        &self,
        enterprise_id: &str,
        id: &str,
        patch: UserPatch,
        platform_users: PlatformUsers,
    ) -> sqlx::Result<Option<User>> {
        let ends_tokens = patch.password_hash.is_some() || patch.status == Some(UserStatus::Deactivated);
        sqlx::query_as(&format!(
            "UPDATE users SET name = COALESCE($3, name), role = COALESCE($4, role), \
             status = COALESCE($5, status), password_hash = COALESCE($6, password_hash), updated_at = $7, \
             platform_access = COALESCE($8, platform_access), token_generation = token_generation + $9 \
             WHERE enterprise_id = $1 AND id = $2 \
             AND ($10 = 1 OR (platform_access = 0 AND role <> 'platform_admin')) RETURNING {USER_COLUMNS}"
        ))
        .bind(enterprise_id)
        .bind(id)
        .bind(patch.name)
        .bind(patch.role.map(|r| r.as_str()))
        .bind(patch.status.map(UserStatus::as_str))
        .bind(patch.password_hash)
        .bind(now_ms())
        .bind(patch.platform_access.map(i64::from))
        .bind(i64::from(ends_tokens))
        .bind(i64::from(platform_users == PlatformUsers::MayChange))
        .fetch_all(&self.pool)
        .await
        .map(crate::first)
    }

    pub async fn record_login(&self, user_id: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1")
            .bind(user_id)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn create_api_key(&self, enterprise_id: &str, key: NewApiKey) -> sqlx::Result<ApiKey> {
        sqlx::query_as(&format!(
            "INSERT INTO api_keys (id, enterprise_id, name, role, prefix, key_hash, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {API_KEY_COLUMNS}"
        ))
        .bind(new_id())
        .bind(enterprise_id)
        .bind(key.name)
        .bind(key.role.as_str())
        .bind(key.prefix)
        .bind(key.key_hash)
        .bind(key.created_by)
        .bind(now_ms())
        .bind(key.expires_at)
        .fetch_all(&self.pool)
        .await.and_then(crate::only)
    }

    pub async fn list_api_keys(&self, enterprise_id: &str, page: Page) -> sqlx::Result<(Vec<ApiKey>, i64)> {
        let list = List {
            columns: API_KEY_COLUMNS,
            table: "api_keys",
            filter: "enterprise_id = $1",
            order: "created_at, id",
            args: vec![enterprise_id.into()],
        };
        self.page_of(list, page).await
    }

    /// The user who created an API key of the enterprise (`None`: no such key, or made without
    /// a user).
    pub async fn api_key_creator(&self, enterprise_id: &str, id: &str) -> sqlx::Result<Option<String>> {
        let creator: Option<Option<String>> =
            sqlx::query_scalar("SELECT created_by FROM api_keys WHERE enterprise_id = $1 AND id = $2")
                .bind(enterprise_id)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(creator.flatten())
    }

    /// Revokes a key; `false` when the enterprise has no such key. Revoking twice is harmless.
    pub async fn revoke_api_key(&self, enterprise_id: &str, id: &str) -> sqlx::Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) WHERE enterprise_id = $1 AND id = $2",
        )
        .bind(enterprise_id)
        .bind(id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Finds an unrevoked, unexpired key by the hash of its plaintext, with its enterprise.
    pub async fn find_active_api_key(&self, key_hash: &str) -> sqlx::Result<Option<ApiKeyWithEnterprise>> {
        let Some(key): Option<ApiKey> = sqlx::query_as(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)"
        ))
        .bind(key_hash)
        .bind(now_ms())
        .fetch_optional(self.reads())
        .await?
        else {
            return Ok(None);
        };
        let enterprise = self.get_enterprise(&key.enterprise_id).await?;
        Ok(enterprise.map(|enterprise| ApiKeyWithEnterprise { key, enterprise }))
    }

    /// Records a use of a key, at most once a minute so reads do not become writes.
    pub async fn touch_api_key(&self, id: &str) -> sqlx::Result<()> {
        let now = now_ms();
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(id)
        .bind(now)
        .bind(now - 60_000)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

async fn insert_user(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    enterprise_id: &str,
    user: &NewUser,
) -> sqlx::Result<User> {
    let now = now_ms();
    sqlx::query_as(&format!(
        "INSERT INTO users (id, enterprise_id, email, name, role, platform_access, password_hash, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING {USER_COLUMNS}"
    ))
    .bind(new_id())
    .bind(enterprise_id)
    .bind(&user.email)
    .bind(&user.name)
    .bind(user.role.as_str())
    .bind(i64::from(user.platform_access))
    .bind(&user.password_hash)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
}
