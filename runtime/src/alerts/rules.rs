//! What an alert rule is: its type, scope, condition and channels, and their validation.

use super::*;

dibop_core::kinds! {
    /// Rule types this runtime evaluates: the first three and `execution_paused` when a run of
    /// an execution is over, the others periodically.
    pub enum RuleKind {
        /// An execution ended `failed` or `cancelled`.
        ExecutionFailure = "execution_failure",
        /// The orchestration's last `threshold` executions ended badly.
        ConsecutiveFailures = "consecutive_failures",
        /// An execution took longer than `threshold_ms`.
        LatencyThreshold = "latency_threshold",
        /// An orchestration's success rate over a window fell below its target.
        SlaBreach = "sla_breach",
        /// A system's last `threshold` calls failed.
        SystemDown = "system_down",
        /// The share of failed calls over a window passed `threshold_percent`.
        ErrorRateSpike = "error_rate_spike",
        /// An execution paused: a step ran out of attempts with `on_exhausted: pause`, and the
        /// execution waits for a resume.
        ExecutionPaused = "execution_paused",
    }
}

dibop_core::kinds! {
    /// Where a notification goes.
    pub enum ChannelKind {
        /// A JSON POST signed with the rule's secret.
        Webhook = "webhook",
        /// A Slack-compatible `{"text"}` POST.
        Slack = "slack",
        /// A warning in the server log.
        Log = "log",
    }
}

/// What a rule applies to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Only this orchestration (absent: every orchestration of the enterprise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestration_id: Option<String>,
    /// Only this system (system_down needs one; error_rate_spike may have one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

/// One notification channel.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// webhook (signed JSON), slack (Slack-compatible `{"text"}`) or log.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: ChannelKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Channel {
    /// Whether its URL carries a secret: a Slack webhook URL (the path is the credential), or a
    /// URL with user info or a credential-named query parameter (`?token=`, `?key=`).
    pub fn url_is_secret(&self) -> bool {
        let Some(url) = self.url.as_deref() else { return false };
        let Ok(parsed) = reqwest::Url::parse(url) else { return true };
        let slack = self.kind == ChannelKind::Slack
            || parsed.host_str().is_some_and(|h| h == "hooks.slack.com" || h.ends_with(".slack.com"));
        let userinfo = !parsed.username().is_empty() || parsed.password().is_some();
        let query = parsed.query_pairs().any(|(name, _)| dibop_plugin_host::redact::is_sensitive_name(&name));
        slack || userinfo || query
    }

    /// Its URL as answers show it: one that carries a secret is masked down to its scheme and
    /// host and the last four characters (`https://hooks.slack.com/****Xk9z`), so that a `PUT`
    /// can send it back unchanged to keep the stored one.
    pub fn shown_url(&self) -> Option<String> {
        let url = self.url.as_deref()?;
        if !self.url_is_secret() {
            return Some(url.to_owned());
        }
        let origin = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| Some(format!("{}://{}", u.scheme(), u.host_str()?)))
            .unwrap_or_default();
        let chars: Vec<char> = url.chars().collect();
        let last: String = chars[chars.len().saturating_sub(4)..].iter().collect();
        Some(format!("{origin}/****{last}"))
    }
}

/// An alert rule as sent and shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleDefinition {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// execution_failure, consecutive_failures, latency_threshold, sla_breach, system_down,
    /// error_rate_spike or execution_paused.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: RuleKind,
    #[serde(default)]
    pub scope: Scope,
    /// consecutive_failures: `{"threshold": N}`; latency_threshold: `{"threshold_ms": N}`;
    /// null for the types that take none.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub condition: Value,
    #[serde(default)]
    pub notification: Notification,
    #[serde(default = "fifteen")]
    pub cooldown_minutes: u32,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// info, warning (default) or critical.
    #[serde(default = "warning")]
    #[schema(value_type = String)]
    pub severity: Severity,
}

fn fifteen() -> u32 {
    15
}

fn yes() -> bool {
    true
}

fn warning() -> Severity {
    Severity::Warning
}

pub(super) fn positive(condition: &Value, key: &str) -> Option<u64> {
    condition.get(key).and_then(Value::as_u64).filter(|n| *n >= 1)
}

/// Every problem of a rule, by field.
pub fn validate(rule: &RuleDefinition) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut err = |path: &str, message: String| errors.push(FieldError { path: path.into(), message });
    if rule.name.trim().is_empty() || rule.name.len() > 200 {
        err("name", "must be 1 to 200 characters".into());
    }
    match &rule.kind {
        RuleKind::ExecutionFailure | RuleKind::ExecutionPaused => {}
        RuleKind::ConsecutiveFailures if positive(&rule.condition, "threshold").is_none() => {
            err("condition.threshold", "consecutive_failures needs a threshold of at least 1".into());
        }
        RuleKind::LatencyThreshold if positive(&rule.condition, "threshold_ms").is_none() => {
            err("condition.threshold_ms", "latency_threshold needs threshold_ms of at least 1".into());
        }
        RuleKind::ConsecutiveFailures | RuleKind::LatencyThreshold => {}
        RuleKind::SlaBreach => {}
        RuleKind::SystemDown if rule.scope.system.is_none() => {
            err("scope.system", "system_down needs scope.system".into())
        }
        RuleKind::SystemDown => {}
        RuleKind::ErrorRateSpike
            if !rule
                .condition
                .get("threshold_percent")
                .and_then(Value::as_f64)
                .is_some_and(|p| p > 0.0 && p <= 100.0) =>
        {
            err("condition.threshold_percent", "error_rate_spike needs threshold_percent from 0 to 100".into());
        }
        RuleKind::ErrorRateSpike => {}
        RuleKind::Unknown(other) => {
            err("type", format!("{other:?} is not evaluated by this runtime; supported: {}", RuleKind::names()));
        }
    }
    if rule.condition.get("window").is_some_and(|w| w.as_str().is_none_or(|w| Window::parse(w).is_err())) {
        err("condition.window", "must look like 15m, 24h or 7d".into());
    }
    if rule.condition.get("target").is_some_and(|t| !t.as_f64().is_some_and(|t| (0.0..=100.0).contains(&t))) {
        err("condition.target", "must be a percentage from 0 to 100".into());
    }
    if let Severity::Unknown(_) = &rule.severity {
        err("severity", "must be info, warning or critical".into());
    }
    if rule.cooldown_minutes > 10_080 {
        err("cooldown_minutes", "must be at most 10080 (a week)".into());
    }
    if rule.notification.channels.is_empty() {
        err("notification.channels", "needs at least one channel".into());
    }
    if rule.notification.channels.len() > MAX_CHANNELS {
        err("notification.channels", format!("at most {MAX_CHANNELS} channels"));
    }
    for (i, channel) in rule.notification.channels.iter().enumerate() {
        let at = |field: &str| format!("notification.channels[{i}].{field}");
        match (&channel.kind, channel.url.as_deref()) {
            (ChannelKind::Log, _) => {}
            (ChannelKind::Webhook | ChannelKind::Slack, Some(url))
                if url.starts_with("http://") || url.starts_with("https://") => {}
            (ChannelKind::Webhook | ChannelKind::Slack, _) => err(&at("url"), "needs an http(s) URL".into()),
            (ChannelKind::Unknown(other), _) => err(&at("type"), format!("{other:?} is not webhook, slack or log")),
        }
    }
    errors
}

/// Channels one rule may have (each gets up to three attempts per alert).
pub const MAX_CHANNELS: usize = 5;

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    #[serde(default)]
    pub channels: Vec<Channel>,
}
