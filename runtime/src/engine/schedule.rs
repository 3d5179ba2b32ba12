//! Schedule triggers: cron expressions evaluated in the orchestration's time zone. Every node
//! runs the scheduler; a slot fires once cluster-wide because claiming it is an insert that
//! only one node can win. Slots missed while every node was down are not fired afterwards.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::definition::{self, Definition};
use crate::state::AppState;
use crate::store::NewExecution;

const TICK: Duration = Duration::from_millis(500);

/// Parses a cron expression: the classic five fields (minute hour day month weekday), or six or
/// seven with seconds first (and a year last).
pub fn parse(expression: &str) -> Result<cron::Schedule, String> {
    if expression.len() > 256 {
        return Err("longer than 256 characters".into());
    }
    let fields = expression.split_whitespace().count();
    let expression = if fields == 5 { format!("0 {expression}") } else { expression.to_owned() };
    // The cron crate is third-party code fed tenant text: a panic in it is a refusal here.
    std::panic::catch_unwind(|| cron::Schedule::from_str(&expression))
        .map_err(|_| "not a cron expression".to_owned())?
        .map_err(|e| e.to_string())
}

/// The slots of `schedule` in `(after, until]`, at most 100.
pub fn slots(
    schedule: &cron::Schedule,
    timezone: chrono_tz::Tz,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    schedule
        .after(&after.with_timezone(&timezone))
        .map(|t| t.with_timezone(&Utc))
        .take_while(|t| *t <= until)
        .take(100)
        .collect()
}

/// Fires due slots until `stop` flips. Each orchestration is handled on its own: whatever
/// goes wrong with one (a bad definition, the execution limit, a database error, a panic) is
/// recorded on it and its slot, and the others fire as usual.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut last = Utc::now();
    match crate::guard::catch(record_missed_while_down(&state, last)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %format!("{err:#}"), "recording schedule slots missed while down failed")
        }
        Err(panic) => tracing::error!(panic = %panic, "recording missed schedule slots panicked"),
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
        let now = Utc::now();
        match crate::guard::catch(tick(&state, last, now)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %format!("{err:#}"), "reading the schedules failed"),
            Err(panic) => tracing::error!(panic = %panic, "a schedule tick panicked; the scheduler goes on"),
        }
        last = now;
    }
}

async fn tick(state: &AppState, after: DateTime<Utc>, until: DateTime<Utc>) -> anyhow::Result<()> {
    for (row, cron, timezone) in state.store.scheduled_orchestrations().await? {
        let id = row.id.clone();
        let enterprise = row.enterprise_id.clone();
        match crate::guard::catch(fire_due(state, row, &cron, &timezone, after, until)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(orchestration = %id, enterprise = %enterprise, error = %format!("{err:#}"), "a schedule could not fire");
            }
            Err(panic) => {
                tracing::error!(orchestration = %id, enterprise = %enterprise, panic = %panic, "a schedule panicked");
            }
        }
    }
    Ok(())
}

/// Slots older than this that nobody claimed were not fired by any node (a running node
/// claims a slot within a tick).
const MISSED_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// At start: records as missed the slots that came due while no node ran (since the last slot
/// of each schedule, or its last change), at most 100 per schedule. Slots a running node
/// claimed are left as they are.
async fn record_missed_while_down(state: &AppState, now: DateTime<Utc>) -> anyhow::Result<()> {
    let until = now - MISSED_AFTER;
    for (row, cron, timezone) in state.store.scheduled_orchestrations().await? {
        let (Ok(schedule), Ok(tz)) = (parse(&cron), chrono_tz::Tz::from_str(&timezone)) else { continue };
        let since_ms = state.store.last_slot(&row.id).await?.unwrap_or(row.updated_at).max(row.updated_at);
        let Some(since) = DateTime::from_timestamp_millis(since_ms) else { continue };
        for slot in slots(&schedule, tz, since, until) {
            state.store.schedule_missed(&row.id, slot.timestamp_millis(), "no node was running", false).await?;
        }
    }
    Ok(())
}

/// Fires the slots of one orchestration in `(after, until]`.
async fn fire_due(
    state: &AppState,
    row: crate::store::OrchestrationRow,
    cron: &str,
    timezone: &str,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> anyhow::Result<()> {
    let schedule = parse(cron).map_err(|e| anyhow::anyhow!("cron {cron:?}: {e}"));
    let tz = chrono_tz::Tz::from_str(timezone).map_err(|e| anyhow::anyhow!("time zone {timezone:?}: {e}"));
    let (schedule, tz) = match (schedule, tz) {
        (Ok(schedule), Ok(tz)) => (schedule, tz),
        (Err(e), _) | (_, Err(e)) => {
            // Validated at save, so only a definition stored by an older version gets here.
            state.store.schedule_missed(&row.id, until.timestamp_millis(), &e.to_string(), true).await?;
            return Ok(());
        }
    };
    for slot in slots(&schedule, tz, after, until) {
        let slot_ms = slot.timestamp_millis();
        if !state.store.claim_slot(&row.id, slot_ms).await? {
            continue;
        }
        // The slot is ours: from here it fires or is recorded as missed, never dropped.
        match start(state, &row, slot_ms).await {
            Ok(()) => state.store.schedule_fired(&row.id).await?,
            Err(reason) => {
                tracing::warn!(orchestration = %row.id, slot = %slot, reason = %reason, "schedule slot missed");
                state.store.schedule_missed(&row.id, slot_ms, &reason, true).await?;
            }
        }
    }
    Ok(())
}

/// Starts the execution of one slot, or says why it cannot.
async fn start(state: &AppState, row: &crate::store::OrchestrationRow, slot_ms: i64) -> Result<(), String> {
    let def: Definition = serde_json::from_str(&row.definition).map_err(|e| format!("stored definition: {e}"))?;
    let parameters = definition::bind_parameters(&def, &serde_json::Map::new()).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(|e| format!("{} {}", e.path, e.message)).collect();
        format!("scheduled parameters: {}", list.join("; "))
    })?;
    let new = NewExecution {
        orchestration_id: row.id.clone(),
        orchestration_version: row.version,
        triggered_by: "schedule".into(),
        parameters: parameters.to_string(),
        idempotency_key: Some(format!("schedule:{slot_ms}")),
        steps_total: def.step_count(),
        parent: None,
    };
    super::admission::submit(state, &row.enterprise_id, None, new, false).await.map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn cron_parsing_never_panics(text in any::<String>(), fields in proptest::collection::vec("[0-9*/,?LW#A-Za-zé-]{1,6}", 0..8)) {
            let _ = super::parse(&text);
            let _ = super::parse(&fields.join(" "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_field_expressions_run_on_the_minute_in_their_time_zone() {
        let schedule = parse("30 9 * * Mon-Fri").expect("parses");
        let after = DateTime::parse_from_rfc3339("2026-11-27T00:00:00Z").expect("date").with_timezone(&Utc);
        let until = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").expect("date").with_timezone(&Utc);
        let fired = slots(&schedule, chrono_tz::America::Toronto, after, until);
        // Friday 27th and Monday 30th, 09:30 in Toronto (UTC-5).
        let expected: Vec<String> = fired.iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(expected, ["2026-11-27T14:30:00+00:00", "2026-11-30T14:30:00+00:00"]);
        assert!(parse("not a cron").is_err());
    }
}
