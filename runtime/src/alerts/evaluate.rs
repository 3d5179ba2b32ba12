//! When a rule fires: on an execution's end (`execution_failure`, `consecutive_failures`,
//! `latency_threshold`, `execution_paused`) and periodically (`sla_breach`, `system_down`,
//! `error_rate_spike`); a firing is claimed once per cooldown across nodes.

use super::rules::positive;
use super::*;

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
    if !execution.is_final() && execution.status != ExecutionStatus::Paused {
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

/// The alert `rule` (stored as `row`) raises: `metric` at `value` against `threshold`.
fn new_alert(
    row: &AlertRuleRow,
    rule: &RuleDefinition,
    metric: &str,
    value: f64,
    threshold: f64,
    message: String,
) -> NewAlert {
    NewAlert {
        rule_id: row.id.clone(),
        severity: rule.severity.clone(),
        metric: metric.into(),
        value,
        threshold,
        message,
    }
}

/// Whether an execution ended `failed` or `cancelled`: what the failure rules count.
fn ended_badly(status: ExecutionStatus) -> bool {
    matches!(status, ExecutionStatus::Failed | ExecutionStatus::Cancelled)
}

/// The alert `rule` raises for `execution`, if any.
async fn check(
    ctx: &Alerts,
    rule: &RuleDefinition,
    row: &AlertRuleRow,
    execution: &ExecutionRow,
) -> anyhow::Result<Option<NewAlert>> {
    let alert = |metric: &str, value: f64, threshold: f64, message: String| {
        new_alert(row, rule, metric, value, threshold, message)
    };
    let failed = ended_badly(execution.status);
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
        RuleKind::ExecutionPaused if execution.status == ExecutionStatus::Paused => Some(alert(
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
            let streak = last.iter().take_while(|s| ended_badly(**s)).count() as u64;
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
        let alert = |metric: &str, value: f64, threshold: f64, message: String| {
            new_alert(&row, &rule, metric, value, threshold, message)
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
                        .unwrap_or_else(|| crate::engine::health::target(&orchestration));
                    let successes = mine.iter().filter(|r| crate::engine::health::succeeded(&r.1)).count() as u64;
                    let rate = crate::engine::health::success_rate(successes, mine.len() as u64).unwrap_or(100.0);
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
                let failed = |c: &&&crate::store::ApiCallSample| c.status.is_failure();
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
                    let errors = mine.iter().filter(|c| c.status.is_failure()).count();
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
