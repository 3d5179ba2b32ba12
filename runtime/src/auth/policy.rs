//! Who may do what: the one place where roles are enforced.
//!
//! Routes fall into three areas by their first path segment:
//! - **platform** (`/enterprises`): platform rights for every method;
//! - **administration** (`/users`, `/settings`, `/plugins`, `/systems`, `/observability`): any
//!   role reads, enterprise and platform admins write;
//! - **tenant data** (everything else: orchestrations, executions, connections, canonical data,
//!   API-call logs, webhooks, alerts): any role but `platform_admin` reads, only
//!   `enterprise_admin` writes, because a platform-only account may neither read payloads nor
//!   execute.
//!
//! New routes are tenant data unless listed, so a forgotten entry fails closed. Rules that depend
//! on the request body (granting `platform_admin`, changing rate limits) call
//! [`require_platform`] from the handler.

use axum::http::Method;

use super::{Principal, Role};
use crate::error::{AppError, AppResult};

enum Area {
    Platform,
    Administration,
    TenantData,
}

fn area(path: &str) -> Area {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or_default();
    match first {
        "enterprises" => Area::Platform,
        "users" | "settings" | "plugins" | "systems" | "observability" | "alert-rules" | "alerts" => {
            Area::Administration
        }
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
    fn enterprise_admins_need_platform_rights_for_enterprises() {
        assert!(authorize(&principal(Role::EnterpriseAdmin, false), &Method::GET, "/enterprises").is_err());
        assert!(authorize(&principal(Role::EnterpriseAdmin, true), &Method::POST, "/enterprises").is_ok());
        assert!(authorize(&principal(Role::EnterpriseAdmin, false), &Method::POST, "/orchestrations").is_ok());
    }
}
