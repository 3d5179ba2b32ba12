//! Alert rules: their definition and validation, evaluation when an execution ends, and the
//! delivery of notifications (signed webhook, Slack-compatible webhook, log) with retries.
//!
//! Deliveries leave through the [`Outbox`]: a bounded queue drained by a background task
//! ([`send_queued`], started by `serve`), so neither an evaluation nor a request waits on a
//! receiver, and a full queue records `dropped` instead of blocking. The client follows no
//! redirects, connects only to checked addresses and stores outcomes in its own words.
//!
//! Evaluated on execution completion: `execution_failure`, `consecutive_failures`,
//! `latency_threshold`, and `execution_paused` when a run ends with its execution paused. A
//! rule fires at most once per cooldown, across nodes (the firing is claimed with one
//! conditional update of the rule row).

use std::sync::Arc;
use std::time::Duration;

use dibop_core::crypto::Sealer;
use dibop_core::{ExecutionStatus, FieldError, Window};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use utoipa::ToSchema;

use crate::store::{AlertRow, AlertRuleRow, ExecutionRow, NewAlert, Store};

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

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    #[serde(default)]
    pub channels: Vec<Channel>,
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
    pub severity: String,
}

fn fifteen() -> u32 {
    15
}
fn yes() -> bool {
    true
}
fn warning() -> String {
    "warning".into()
}

fn positive(condition: &Value, key: &str) -> Option<u64> {
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
    if !["info", "warning", "critical"].contains(&rule.severity.as_str()) {
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

/// The JSON body of a notification (the fired alert, as `GET /alerts` shows it).
pub fn alert_json(rule: &AlertRuleRow, alert: &AlertRow) -> Value {
    json!({
        "id": alert.id, "rule_id": alert.rule_id, "rule_name": rule.name, "severity": alert.severity,
        "metric": alert.metric, "value": alert.value, "threshold": alert.threshold, "message": alert.message,
        "fired_at": chrono::DateTime::from_timestamp_millis(alert.fired_at).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("sha256={}", crate::crypto::hex(&digest))
}

/// After an execution ended: evaluates the enterprise's rules against it and fires those that
/// hold (outside their cooldown). Runs off the worker's path.
pub async fn execution_ended(ctx: Alerts, enterprise_id: String, execution_id: String) {
    if let Err(err) = evaluate(&ctx, &enterprise_id, &execution_id).await {
        tracing::warn!(execution = %execution_id, error = %format!("{err:#}"), "evaluating alert rules failed");
    }
}

async fn evaluate(ctx: &Alerts, enterprise_id: &str, execution_id: &str) -> anyhow::Result<()> {
    // Rules first (cached): most enterprises have none, and then nothing is read.
    let rules = ctx.store.enabled_alert_rules(enterprise_id).await?;
    if rules.is_empty() {
        return Ok(());
    }
    let Some(execution) = ctx.store.get_execution(enterprise_id, execution_id).await? else { return Ok(()) };
    if !execution.is_final() && execution.status != ExecutionStatus::Paused.as_str() {
        return Ok(());
    }
    for row in rules {
        let Ok(rule) = serde_json::from_str::<RuleDefinition>(&row.definition) else { continue };
        if rule.scope.orchestration_id.as_ref().is_some_and(|id| id != &execution.orchestration_id) {
            continue;
        }
        if let Some(alert) = check(ctx, &rule, &row, &execution).await? {
            fire(ctx, &row, &rule, alert).await?;
        }
    }
    Ok(())
}

/// Whether an execution ended `failed` or `cancelled`: what the failure rules count.
fn ended_badly(status: &str) -> bool {
    matches!(status.parse(), Ok(ExecutionStatus::Failed | ExecutionStatus::Cancelled))
}

/// The alert `rule` raises for `execution`, if any.
async fn check(
    ctx: &Alerts,
    rule: &RuleDefinition,
    row: &AlertRuleRow,
    execution: &ExecutionRow,
) -> anyhow::Result<Option<NewAlert>> {
    let alert = |metric: &str, value: f64, threshold: f64, message: String| NewAlert {
        rule_id: row.id.clone(),
        severity: rule.severity.clone(),
        metric: metric.into(),
        value,
        threshold,
        message,
    };
    let failed = ended_badly(&execution.status);
    Ok(match rule.kind {
        RuleKind::ExecutionFailure if failed => Some(alert(
            "execution_failed",
            1.0,
            1.0,
            format!(
                "execution {} of orchestration {} ended {}: {}",
                execution.id,
                execution.orchestration_id,
                execution.status,
                execution.error.as_deref().unwrap_or("no error given")
            ),
        )),
        RuleKind::ExecutionPaused if execution.status == ExecutionStatus::Paused.as_str() => Some(alert(
            "execution_paused",
            1.0,
            1.0,
            format!(
                "execution {} of orchestration {} paused: {}",
                execution.id,
                execution.orchestration_id,
                execution.error.as_deref().unwrap_or("no error given")
            ),
        )),
        RuleKind::ConsecutiveFailures if failed => {
            let n = positive(&rule.condition, "threshold").unwrap_or(1);
            let last = ctx.store.last_statuses(&execution.orchestration_id, i64::try_from(n)?).await?;
            let streak = last.iter().take_while(|s| ended_badly(s)).count() as u64;
            (streak >= n).then(|| {
                alert(
                    "consecutive_failures",
                    streak as f64,
                    n as f64,
                    format!("the last {streak} executions of orchestration {} failed", execution.orchestration_id),
                )
            })
        }
        RuleKind::LatencyThreshold => {
            let limit = positive(&rule.condition, "threshold_ms").unwrap_or(u64::MAX);
            let took = execution.finished_at.zip(execution.started_at).map(|(f, s)| f - s).unwrap_or(0);
            (u64::try_from(took).unwrap_or(0) > limit).then(|| {
                alert(
                    "execution_duration_ms",
                    took as f64,
                    limit as f64,
                    format!("execution {} took {took} ms (threshold {limit} ms)", execution.id),
                )
            })
        }
        _ => None,
    })
}

/// The periodic rules: `sla_breach` (an orchestration's success rate over `condition.window`,
/// default 24h, below `condition.target`, else its `sla_target`, else 99.0), `system_down` (the
/// last `condition.threshold` calls of the system, default 3, all failed within the window,
/// default 15m; pings count) and `error_rate_spike` (failed calls of the system, or of all, at
/// or above `condition.threshold_percent` of at least `condition.min_calls`, default 10).
pub async fn evaluate_periodic(ctx: &Alerts) -> anyhow::Result<()> {
    let now = dibop_core::now_ms();
    for row in ctx.store.all_enabled_alert_rules().await? {
        let Ok(rule) = serde_json::from_str::<RuleDefinition>(&row.definition) else { continue };
        let window = |default: &str| {
            rule.condition
                .get("window")
                .and_then(Value::as_str)
                .and_then(|w| Window::parse(w).ok())
                .or_else(|| Window::parse(default).ok())
                .map_or(3_600_000, Window::as_millis)
        };
        let alert = |metric: &str, value: f64, threshold: f64, message: String| NewAlert {
            rule_id: row.id.clone(),
            severity: rule.severity.clone(),
            metric: metric.into(),
            value,
            threshold,
            message,
        };
        let fired = match rule.kind {
            RuleKind::SlaBreach => {
                let since = now - window("24h");
                let runs = ctx.store.finished_executions(&row.enterprise_id, since).await?;
                let (orchestrations, _) = ctx
                    .store
                    .list_orchestrations(&row.enterprise_id, crate::store::Page { limit: 10_000, offset: 0 })
                    .await?;
                let mut found = None;
                for orchestration in orchestrations {
                    if rule.scope.orchestration_id.as_ref().is_some_and(|id| id != &orchestration.id) {
                        continue;
                    }
                    let mine: Vec<_> = runs.iter().filter(|r| r.0 == orchestration.id).collect();
                    if mine.is_empty() {
                        continue;
                    }
                    let target = rule
                        .condition
                        .get("target")
                        .and_then(Value::as_f64)
                        .unwrap_or_else(|| crate::sla::target(&orchestration));
                    let successes = mine.iter().filter(|r| crate::sla::succeeded(&r.1)).count() as u64;
                    let rate = crate::sla::success_rate(successes, mine.len() as u64).unwrap_or(100.0);
                    if rate < target {
                        found = Some(alert(
                            "success_rate",
                            (rate * 100.0).round() / 100.0,
                            target,
                            format!(
                                "orchestration {} succeeded in {rate:.2}% of {} runs (target {target}%)",
                                orchestration.name,
                                mine.len()
                            ),
                        ));
                        break;
                    }
                }
                found
            }
            RuleKind::SystemDown | RuleKind::ErrorRateSpike => {
                let since = now - window("15m");
                let calls = ctx.store.api_call_samples(&row.enterprise_id, since).await?;
                let mine: Vec<_> =
                    calls.iter().filter(|c| rule.scope.system.as_ref().is_none_or(|s| &c.system == s)).collect();
                let failed = |c: &&&crate::store::ApiCallSample| c.status != "success";
                if rule.kind == RuleKind::SystemDown {
                    let n = positive(&rule.condition, "threshold").unwrap_or(3) as usize;
                    let last: Vec<_> = mine.iter().rev().take(n).collect();
                    (last.len() == n && last.iter().all(failed)).then(|| {
                        let system = rule.scope.system.clone().unwrap_or_default();
                        alert(
                            "consecutive_failed_calls",
                            n as f64,
                            n as f64,
                            format!("system {system}: the last {n} calls failed"),
                        )
                    })
                } else {
                    let min = positive(&rule.condition, "min_calls").unwrap_or(10) as usize;
                    let threshold = rule.condition.get("threshold_percent").and_then(Value::as_f64).unwrap_or(100.0);
                    let errors = mine.iter().filter(|c| c.status != "success").count();
                    let rate = if mine.is_empty() { 0.0 } else { errors as f64 * 100.0 / mine.len() as f64 };
                    (mine.len() >= min && rate >= threshold).then(|| {
                        alert(
                            "error_rate_percent",
                            (rate * 100.0).round() / 100.0,
                            threshold,
                            format!("{errors} of {} calls failed ({rate:.2}%)", mine.len()),
                        )
                    })
                }
            }
            _ => None,
        };
        if let Some(alert) = fired {
            fire(ctx, &row, &rule, alert).await?;
        }
    }
    Ok(())
}

/// Stores the alert and queues its notifications, unless the rule is cooling down.
async fn fire(ctx: &Alerts, row: &AlertRuleRow, rule: &RuleDefinition, alert: NewAlert) -> anyhow::Result<()> {
    let cooldown_ms = i64::from(rule.cooldown_minutes) * 60_000;
    if !ctx.store.claim_alert(&row.id, cooldown_ms).await? {
        return Ok(());
    }
    let alert = ctx.store.insert_alert(&row.enterprise_id, alert).await?;
    ctx.queue(row, rule, &alert, None).await.map(drop)
}

/// Alerts the background sender delivers at once (each to its channels concurrently).
pub const CONCURRENT_DELIVERIES: usize = 8;

/// Channels one rule may have (each gets up to three attempts per alert).
pub const MAX_CHANNELS: usize = 5;

/// Attempts per channel and alert.
const ATTEMPTS: u32 = 3;

/// Timeout of one attempt (connect, TLS, request and response head).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `POST /alert-rules/{id}/test` waits for its own deliveries: three attempts with
/// their pauses, plus room for a queue that is busy.
pub const TEST_WAIT: Duration = Duration::from_secs(45);

/// One alert to deliver; `reply` hears its outcomes.
pub struct Delivery {
    row: AlertRuleRow,
    rule: RuleDefinition,
    alert: AlertRow,
    reply: Option<tokio::sync::oneshot::Sender<Value>>,
}

/// The queue of alert deliveries and the HTTP client they go out with: no redirects, no proxy,
/// connections only to addresses that passed [`crate::egress`]'s check, TLS with the
/// configured roots.
pub struct Outbox {
    queue: tokio::sync::mpsc::Sender<Delivery>,
    client: reqwest::Client,
    allow_private: bool,
}

/// The receiving end of the [`Outbox`], for [`send_queued`].
pub struct Queued(tokio::sync::mpsc::Receiver<Delivery>);

impl Outbox {
    /// An outbox holding at most `capacity` alerts (at least one) besides the
    /// [`CONCURRENT_DELIVERIES`] being delivered. Beyond that, a new alert's notifications are
    /// recorded as `dropped` instead of queued: a flood of firings never blocks the request or
    /// the evaluation that raised them, nor grows memory without bound.
    pub fn new(tls: &rustls::ClientConfig, allow_private: bool, capacity: usize) -> anyhow::Result<(Self, Queued)> {
        let resolver =
            Arc::new(crate::egress::CheckedDns { resolver: Arc::new(crate::egress::SystemResolver), allow_private });
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(resolver)
            .use_preconfigured_tls(tls.clone())
            .connect_timeout(Duration::from_secs(5))
            .timeout(ATTEMPT_TIMEOUT)
            .build()?;
        let (queue, receiver) = tokio::sync::mpsc::channel(capacity.max(1));
        Ok((Self { queue, client, allow_private }, Queued(receiver)))
    }
}

/// What alert evaluation and delivery need: the store, the sealer that opens channel secrets
/// and the delivery queue. Cheap to clone; the engine's events reach it without the server's
/// whole state.
#[derive(Clone)]
pub struct Alerts {
    pub store: Store,
    pub sealer: Arc<Sealer>,
    pub outbox: Arc<Outbox>,
}

impl Alerts {
    /// Queues the alert's notifications without waiting. When the queue is full, records them
    /// as `dropped` and answers those outcomes; otherwise answers `None` and `reply` (if any)
    /// hears the outcomes once delivered.
    pub async fn queue(
        &self,
        row: &AlertRuleRow,
        rule: &RuleDefinition,
        alert: &AlertRow,
        reply: Option<tokio::sync::oneshot::Sender<Value>>,
    ) -> anyhow::Result<Option<Value>> {
        let delivery = Delivery { row: row.clone(), rule: rule.clone(), alert: alert.clone(), reply };
        match self.outbox.queue.try_send(delivery) {
            Ok(()) => Ok(None),
            Err(_) => {
                tracing::warn!(rule = %row.name, alert = %alert.id, "alert delivery queue full; notifications dropped");
                let outcomes = Value::Array(
                    channels(rule)
                        .map(|c| {
                            json!({"type": c.kind, "url": c.shown_url(), "attempts": 0, "status": "dropped",
                                        "error": "delivery queue full"})
                        })
                        .collect(),
                );
                self.store.set_alert_deliveries(&alert.id, &outcomes.to_string()).await?;
                Ok(Some(outcomes))
            }
        }
    }

    /// Queues the alert and waits (at most `wait`) for its outcomes; answers `pending` ones
    /// for channels it stopped waiting for.
    pub async fn deliver_and_wait(
        &self,
        row: &AlertRuleRow,
        rule: &RuleDefinition,
        alert: &AlertRow,
        wait: Duration,
    ) -> anyhow::Result<Value> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Some(dropped) = self.queue(row, rule, alert, Some(tx)).await? {
            return Ok(dropped);
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(outcomes)) => Ok(outcomes),
            Ok(Err(_)) => anyhow::bail!("delivering alert {} failed", alert.id),
            Err(_) => Ok(Value::Array(
                channels(rule).map(|c| json!({"type": c.kind, "url": c.shown_url(), "status": "pending"})).collect(),
            )),
        }
    }
}

/// The channels delivered to: at most [`MAX_CHANNELS`] (rules stored before the limit too).
fn channels(rule: &RuleDefinition) -> impl Iterator<Item = &Channel> {
    rule.notification.channels.iter().take(MAX_CHANNELS)
}

/// The background sender: delivers queued alerts, [`CONCURRENT_DELIVERIES`] at a time, until
/// `stopped` flips (deliveries in flight then are abandoned).
pub async fn send_queued(ctx: Alerts, queued: Queued, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let Queued(mut receiver) = queued;
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_DELIVERIES));
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        while in_flight.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            _ = stopped.changed() => return,
        };
        let Ok(slot) = slot else { return };
        let delivery = tokio::select! {
            delivery = receiver.recv() => delivery,
            _ = stopped.changed() => return,
        };
        let Some(Delivery { row, rule, alert, reply }) = delivery else { return };
        let ctx = ctx.clone();
        in_flight.spawn(async move {
            let _slot = slot;
            match deliver(&ctx, &row, &rule, &alert).await {
                Ok(outcomes) => {
                    if let Some(reply) = reply {
                        let _ = reply.send(outcomes);
                    }
                }
                Err(err) => {
                    tracing::warn!(alert = %alert.id, error = %format!("{err:#}"), "delivering an alert failed");
                }
            }
        });
    }
}

/// Sends the alert to every channel of the rule at once, each with up to three attempts
/// (0.5 s, then 1 s apart), and stores how each went; answers that record. Outcomes name what
/// happened in our words (`http 500`, `redirect refused`, `address refused`, `tls failed`,
/// `connection failed`, `timeout`), never the system's error text: a receiver URL must not turn
/// the server into a scanner of what it can reach.
async fn deliver(ctx: &Alerts, row: &AlertRuleRow, rule: &RuleDefinition, alert: &AlertRow) -> anyhow::Result<Value> {
    let secret = ctx.sealer.open(&row.secret)?;
    let body = serde_json::to_vec(&alert_json(row, alert))?;
    let text = format!("[{}] {}: {}", alert.severity, row.name, alert.message);
    let slack = serde_json::to_vec(&json!({"text": text}))?;
    let sends = channels(rule).map(|channel| {
        let (payload, signed) = match channel.kind {
            ChannelKind::Slack => (slack.clone(), false),
            _ => (body.clone(), true),
        };
        let signed = signed.then(|| signature(&secret, &payload));
        async move {
            if channel.kind == ChannelKind::Log {
                tracing::warn!(rule = %row.name, severity = %alert.severity, message = %alert.message, "alert fired");
                return json!({"type": "log", "status": "delivered", "attempts": 1});
            }
            let url = channel.url.clone().unwrap_or_default();
            let (attempts, error) = post(&ctx.outbox, &url, payload, signed).await;
            json!({
                "type": channel.kind, "url": channel.shown_url(), "attempts": attempts,
                "status": if error.is_none() { "delivered" } else { "failed" }, "error": error,
            })
        }
    });
    let outcomes = Value::Array(futures_util::future::join_all(sends).await);
    ctx.store.set_alert_deliveries(&alert.id, &outcomes.to_string()).await?;
    Ok(outcomes)
}

/// POSTs `payload` to `url` with retries; answers the attempts made and the last failure.
async fn post(outbox: &Outbox, url: &str, payload: Vec<u8>, signed: Option<String>) -> (u32, Option<String>) {
    let Ok(parsed) = reqwest::Url::parse(url) else { return (0, Some("invalid url".into())) };
    // reqwest asks no resolver about IP-literal hosts: those are judged here.
    let literal = parsed
        .host_str()
        .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().ok());
    if literal.is_some_and(|ip| !outbox.allow_private && crate::egress::is_blocked(ip)) {
        return (0, Some(ADDRESS_REFUSED.into()));
    }
    let mut attempts = 0;
    let mut delay = Duration::from_millis(500);
    loop {
        attempts += 1;
        let mut request =
            outbox.client.post(parsed.clone()).header("content-type", "application/json").body(payload.clone());
        if let Some(signature) = &signed {
            request = request.header("x-dibop-signature", signature);
        }
        let failure = match request.send().await {
            Ok(response) if response.status().is_success() => return (attempts, None),
            // A redirect could lead anywhere (and a 307 would carry the signed body along).
            Ok(response) if response.status().is_redirection() => return (attempts, Some("redirect refused".into())),
            Ok(response) => format!("http {}", response.status().as_u16()),
            Err(err) => match failure(&err) {
                ADDRESS_REFUSED => return (attempts, Some(ADDRESS_REFUSED.into())),
                other => other.to_owned(),
            },
        };
        if attempts >= ATTEMPTS {
            return (attempts, Some(failure));
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
}

const ADDRESS_REFUSED: &str = "address refused";

/// What went wrong with a request, in the outcome vocabulary (never the system's error text).
fn failure(err: &reqwest::Error) -> &'static str {
    if caused_by::<crate::egress::Refusal>(err) {
        ADDRESS_REFUSED
    } else if caused_by::<rustls::Error>(err) {
        "tls failed"
    } else if err.is_timeout() {
        "timeout"
    } else {
        "connection failed"
    }
}

/// Whether a `T` is among the causes of `err`, looking inside wrapping `io::Error`s too (their
/// `source()` skips the error they wrap, and hyper-rustls wraps rustls' one twice).
fn caused_by<T: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<T>() {
            return true;
        }
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && caused_by::<T>(inner)
        {
            return true;
        }
        next = e.source();
    }
    false
}
