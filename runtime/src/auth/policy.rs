//! Who may do what: the one place where roles are enforced.
//!
//! Routes fall into three areas by their first path segment:
//! - **platform** (`/enterprises`): platform rights for every method;
//! - **administration** (`/users`, `/settings`, `/plugins`, `/plugin-signers`, `/systems`,
//!   `/observability`): any
//!   role reads, enterprise and platform admins write;
//! - **tenant data** (everything else: orchestrations, executions, connections, canonical data,
//!   API-call logs, webhooks, alerts): any role but `platform_admin` reads, only
//!   `enterprise_admin` writes, because a platform-only account may neither read payloads nor
//!   execute.
//!
//! New routes are tenant data unless listed, so a forgotten entry fails closed. Rules that depend
//! on the request body or on the row being changed are functions here that handlers call:
//! [`require_platform`] (changing rate limits), [`require_grant`] (what a caller may hand out to
//! a new user, a new API key or by a role change) and [`require_may_change`] (users with platform
//! rights are changed only by callers that have them).
//!
//! Rights are ordered viewer < enterprise_admin < platform rights (the role `platform_admin`, or
//! the `platform_access` grant on a user); nobody hands out more than they hold.

use axum::http::Method;
use dibop_core::Role;

use super::Principal;
use crate::error::{AppError, AppResult};
use crate::store::User;

enum Area {
    Platform,
    Administration,
    TenantData,
}

fn area(path: &str) -> Area {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or_default();
    match first {
        "enterprises" => Area::Platform,
        "users" | "settings" | "plugins" | "plugin-signers" | "systems" | "observability" | "alert-rules"
        | "alerts" | "audit-log" => Area::Administration,
        _ => Area::TenantData,
    }
}

/// Whether `principal` may call `method` on `path` (relative to `/api/v1`).
pub fn authorize(principal: &Principal, method: &Method, path: &str) -> AppResult<()> {
    let writes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    match area(path) {
        Area::Platform if !principal.platform => Err(AppError::Forbidden("platform rights required".into())),
        Area::Platform => Ok(()),
        Area::Administration if writes && principal.role == Role::Viewer => {
            Err(AppError::Forbidden("viewers have read-only access".into()))
        }
        Area::Administration => Ok(()),
        Area::TenantData if principal.role == Role::PlatformAdmin => Err(AppError::Forbidden(
            "platform administrators cannot read tenant payloads or execute orchestrations".into(),
        )),
        Area::TenantData if writes && principal.role == Role::Viewer => {
            Err(AppError::Forbidden("viewers have read-only access".into()))
        }
        Area::TenantData => Ok(()),
    }
}

/// For body-dependent rules: fails unless `principal` has platform rights.
pub fn require_platform(principal: &Principal, what: &str) -> AppResult<()> {
    if principal.platform { Ok(()) } else { Err(AppError::Forbidden(format!("{what} needs platform rights"))) }
}

/// The rank of a set of rights: viewer 0, enterprise admin 1, platform rights 2.
fn rank(role: Role, platform: bool) -> u8 {
    match role {
        _ if platform => 2,
        Role::PlatformAdmin => 2,
        Role::EnterpriseAdmin => 1,
        Role::Viewer => 0,
    }
}

/// Whether `principal` may give `role` (with the platform grant when `platform`) to a new user,
/// a new API key, or an existing user: never more than it holds itself, and platform rights only
/// when it has them.
pub fn require_grant(principal: &Principal, role: Role, platform: bool) -> AppResult<()> {
    let platform = platform || role == Role::PlatformAdmin;
    if platform {
        return require_platform(principal, "granting platform rights");
    }
    if rank(role, false) > rank(principal.role, principal.platform) {
        return Err(AppError::Forbidden(format!(
            "a {} cannot grant the role {}",
            principal.role.as_str(),
            role.as_str()
        )));
    }
    Ok(())
}

/// For changing, deactivating or setting the password of `target`: a user with platform rights
/// only by a caller that has them, so an enterprise admin (or its API key) cannot take over a
/// platform account.
pub fn require_may_change(principal: &Principal, target: &User) -> AppResult<()> {
    if target.has_platform_rights() {
        require_platform(principal, "changing a user with platform rights")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, platform: bool) -> Principal {
        Principal {
            enterprise_id: "e".into(),
            user_id: None,
            api_key_id: None,
            role,
            platform,
            executions_per_minute: 60,
        }
    }

    #[test]
    fn viewers_read_but_never_write() {
        let viewer = principal(Role::Viewer, false);
        assert!(authorize(&viewer, &Method::GET, "/users").is_ok());
        assert!(authorize(&viewer, &Method::GET, "/orchestrations").is_ok());
        for path in ["/users", "/settings/api-keys", "/orchestrations/1/execute", "/connections"] {
            assert!(authorize(&viewer, &Method::POST, path).is_err(), "{path}");
        }
        assert!(authorize(&viewer, &Method::DELETE, "/users/1").is_err());
    }

    #[test]
    fn platform_only_accounts_never_see_payloads_or_execute() {
        let platform = principal(Role::PlatformAdmin, true);
        assert!(authorize(&platform, &Method::GET, "/enterprises").is_ok());
        assert!(authorize(&platform, &Method::POST, "/enterprises").is_ok());
        assert!(authorize(&platform, &Method::GET, "/executions/1").is_err());
        assert!(authorize(&platform, &Method::POST, "/orchestrations/1/execute").is_err());
        assert!(authorize(&platform, &Method::GET, "/something-new").is_err());
    }

    #[test]
    fn nobody_grants_more_than_they_hold() {
        let admin = principal(Role::EnterpriseAdmin, false);
        assert!(require_grant(&admin, Role::EnterpriseAdmin, false).is_ok());
        assert!(require_grant(&admin, Role::Viewer, false).is_ok());
        assert!(require_grant(&admin, Role::PlatformAdmin, false).is_err());
        assert!(require_grant(&admin, Role::EnterpriseAdmin, true).is_err());
        let viewer = principal(Role::Viewer, false);
        assert!(require_grant(&viewer, Role::EnterpriseAdmin, false).is_err());
        assert!(require_grant(&viewer, Role::Viewer, false).is_ok());
        let platform = principal(Role::EnterpriseAdmin, true);
        assert!(require_grant(&platform, Role::PlatformAdmin, false).is_ok());
        assert!(require_grant(&platform, Role::EnterpriseAdmin, true).is_ok());
    }

    #[test]
    fn enterprise_admins_need_platform_rights_for_enterprises() {
        assert!(authorize(&principal(Role::EnterpriseAdmin, false), &Method::GET, "/enterprises").is_err());
        assert!(authorize(&principal(Role::EnterpriseAdmin, true), &Method::POST, "/enterprises").is_ok());
        assert!(authorize(&principal(Role::EnterpriseAdmin, false), &Method::POST, "/orchestrations").is_ok());
    }
}
