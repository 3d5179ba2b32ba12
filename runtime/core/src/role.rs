//! The roles of the SPEC. What each may do is decided in one place, the runtime's
//! `auth::policy`; this is only the value, as tokens, rows and JSON spell it.
//!
//! `Role`'s doc comments are its schema in the OpenAPI document: change them as API text.

use serde::{Deserialize, Serialize};

/// A role as the SPEC defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages enterprises, the global catalogue and quotas; never reads payloads or executes.
    PlatformAdmin,
    /// Everything inside its enterprise.
    EnterpriseAdmin,
    /// Read-only.
    Viewer,
}

impl Role {
    /// The role's name, as stored in rows and written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PlatformAdmin => "platform_admin",
            Self::EnterpriseAdmin => "enterprise_admin",
            Self::Viewer => "viewer",
        }
    }

    /// The role named exactly `s` (no trimming, no case folding), if there is one.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "platform_admin" => Some(Self::PlatformAdmin),
            "enterprise_admin" => Some(Self::EnterpriseAdmin),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

/// How a stored role column is read (`#[sqlx(try_from = "String")]`).
impl TryFrom<String> for Role {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value).ok_or_else(|| format!("unknown role {value:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    const ALL: [Role; 3] = [Role::PlatformAdmin, Role::EnterpriseAdmin, Role::Viewer];

    #[test]
    fn names_round_trip_through_parse_and_json() {
        for role in ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            let json = serde_json::to_string(&role).expect("serializes");
            assert_eq!(json, format!("\"{}\"", role.as_str()));
            assert_eq!(serde_json::from_str::<Role>(&json).expect("deserializes"), role);
        }
    }

    #[test]
    fn only_exact_names_parse() {
        for text in ["", "Viewer", " viewer", "viewer ", "admin", "platform-admin", "PLATFORM_ADMIN"] {
            assert_eq!(Role::parse(text), None, "{text:?}");
            assert!(serde_json::from_str::<Role>(&format!("\"{text}\"")).is_err(), "{text:?}");
        }
    }

    #[test]
    fn an_unknown_stored_role_names_itself() {
        assert_eq!(Role::try_from("enterprise_admin".to_owned()), Ok(Role::EnterpriseAdmin));
        assert_eq!(Role::try_from("owner".to_owned()), Err("unknown role \"owner\"".to_owned()));
    }
}
