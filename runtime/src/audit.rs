//! The audit log: every change a user or API key makes (orchestrations, connections, plugins,
//! users, API keys, settings, webhooks, alert rules, enterprises, replays, cancels and retries,
//! logins) is recorded with who, when, what, and the resource before and after as the API shows
//! it, with secrets removed. Handlers call [`record`] after the change committed; a failing
//! write is logged and does not undo the change.

use serde::Serialize;
use serde_json::Value;

use crate::auth::Principal;
use crate::state::AppState;
use crate::store::AuditRow;

/// Fields whose values never go into the log, at any depth (masked credentials included: the
/// masks carry the last characters).
const SECRET_FIELDS: [&str; 10] = [
    "password",
    "admin_password",
    "secret",
    "key",
    "token",
    "client_secret",
    "access_token",
    "api_key",
    "password_hash",
    "credentials",
];

/// Who a principal is in the log: `user:<id>` or `api_key:<id>`.
pub fn actor(principal: &Principal) -> String {
    match (&principal.api_key_id, &principal.user_id) {
        (Some(key), _) => format!("api_key:{key}"),
        (None, Some(user)) => format!("user:{user}"),
        (None, None) => "unknown".into(),
    }
}

/// `value` as JSON with every secret field's value replaced by `"[removed]"`.
pub fn scrubbed<T: Serialize>(value: &T) -> Value {
    let mut value = serde_json::to_value(value).unwrap_or(Value::Null);
    scrub(&mut value);
    value
}

fn scrub(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if SECRET_FIELDS.contains(&name.as_str()) && !field.is_null() {
                    *field = Value::String("[removed]".into());
                } else {
                    scrub(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub),
        _ => {}
    }
}

dibop_core::kinds! {
    /// What was done (an entry's `action`).
    pub enum Action {
        /// A resource was made.
        Create = "create",
        /// A resource was changed.
        Update = "update",
        /// A resource was removed.
        Delete = "delete",
        /// A plugin version was uploaded.
        Upload = "upload",
        /// A plugin version was disabled.
        Disable = "disable",
        /// An API key was revoked.
        Revoke = "revoke",
        /// A user was deactivated.
        Deactivate = "deactivate",
        /// A connection was tested.
        Test = "test",
        /// A connection's change was tried without saving it.
        DryRun = "dry_run",
        /// An execution was cancelled.
        Cancel = "cancel",
        /// An execution was retried.
        Retry = "retry",
        /// Executions were replayed.
        Replay = "replay",
        /// Paused executions were resumed.
        Resume = "resume",
        /// Someone signed in.
        Login = "login",
        /// A sign-in was refused.
        LoginFailed = "login_failed",
    }
}

dibop_core::kinds! {
    /// What it was done to (an entry's `resource`).
    pub enum Resource {
        /// An orchestration.
        Orchestration = "orchestration",
        /// A connection.
        Connection = "connection",
        /// A plugin version.
        Plugin = "plugin",
        /// A trusted plugin signer.
        PluginSigner = "plugin_signer",
        /// A user.
        User = "user",
        /// An API key.
        ApiKey = "api_key",
        /// The enterprise's settings.
        Settings = "settings",
        /// A webhook.
        Webhook = "webhook",
        /// An alert rule.
        AlertRule = "alert_rule",
        /// An enterprise.
        Enterprise = "enterprise",
        /// An execution.
        Execution = "execution",
        /// A sign-in session.
        Session = "session",
    }
}

/// One change, as a handler reports it.
pub struct Change<'a> {
    pub action: Action,
    pub resource: Resource,
    pub resource_id: Option<&'a str>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Records `change` made by `principal` in its enterprise.
pub async fn record(state: &AppState, principal: &Principal, change: Change<'_>) {
    let enterprise = Some(principal.enterprise_id.clone());
    write(state, enterprise, actor(principal), change).await;
}

/// Records `change` by `actor` in `enterprise_id` (logins, which have no principal yet).
pub async fn write(state: &AppState, enterprise_id: Option<String>, actor: String, change: Change<'_>) {
    let text = |v: Option<Value>| {
        v.map(|mut v| {
            scrub(&mut v);
            dibop_core::bounded::clip(&v.to_string(), MAX_SNAPSHOT).into_owned()
        })
    };
    let row = AuditRow {
        id: dibop_core::new_id(),
        enterprise_id,
        at: dibop_core::now_ms(),
        actor,
        action: change.action.as_str().to_owned(),
        resource: change.resource.as_str().to_owned(),
        resource_id: change.resource_id.map(str::to_owned),
        before: text(change.before),
        after: text(change.after),
    };
    if let Err(e) = state.store().insert_audit(&row).await {
        tracing::error!(error = %e, action = %row.action, resource = %row.resource, "writing the audit log");
    }
}

/// Who a failed login was in the log: `email:<address>` with control and invisible format
/// characters escaped and at most [`dibop_core::MAX_EMAIL_BYTES`] bytes kept, or
/// `email:[not an address]` when the text is not an address (a password typed into the wrong
/// field must not be kept where admins read it).
pub fn failed_login_actor(email: &str) -> String {
    let Ok(address) = dibop_core::Email::parse(email) else { return "email:[not an address]".into() };
    let mut escaped = String::with_capacity(address.as_str().len());
    for c in address.as_str().chars() {
        if c.is_control() || is_invisible(c) {
            escaped.extend(c.escape_unicode());
        } else {
            escaped.push(c);
        }
    }
    format!("email:{}", dibop_core::bounded::clip(&escaped, dibop_core::MAX_EMAIL_BYTES))
}

/// Characters that change how the text around them shows without showing themselves
/// (direction overrides and isolates, zero-width characters, the BOM).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// Longest stored before or after snapshot (a definition can be large); longer ones are cut
/// with a marker.
pub const MAX_SNAPSHOT: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    #[test]
    fn a_failed_login_keeps_an_escaped_address_or_a_marker() {
        use super::failed_login_actor as actor;
        assert_eq!(actor("Ada@Example.com"), "email:ada@example.com");
        assert_eq!(actor("ada\u{1b}[2J@example.com"), "email:ada\\u{1b}[2j@example.com");
        assert_eq!(actor("ada\u{202e}moc@example.com"), "email:ada\\u{202e}moc@example.com");
        for password in ["hunter2", "correct horse battery staple", "p@ss word", "x".repeat(300).as_str()] {
            assert_eq!(actor(password), "email:[not an address]");
        }
        // Escaping lengthens an address; what is kept stays bounded.
        let long = format!("{}@example.com", "\u{1}".repeat(240));
        assert!(actor(&long).len() < 300, "{}", actor(&long));
    }

    #[test]
    fn secrets_are_removed_at_any_depth() {
        let value = serde_json::json!({"name": "x", "secret": "s", "auth": {"type": "basic", "password": "****word"},
                                       "credentials": {"api_key": "****1234"}, "items": [{"token": "t"}], "key": null});
        assert_eq!(
            super::scrubbed(&value),
            serde_json::json!({"name": "x", "secret": "[removed]", "auth": {"type": "basic", "password": "[removed]"},
                               "credentials": "[removed]", "items": [{"token": "[removed]"}], "key": null})
        );
    }
}
