//! Schedule triggers: cron expressions evaluated in the orchestration's time zone. Every node
//! runs the scheduler; a slot fires once cluster-wide because claiming it is an insert that
//! only one node can win. Slots missed while every node was down are not fired afterwards.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::calendar::{parse, slots};
use crate::{Engine, executions};

const TICK: Duration = Duration::from_millis(500);

/// Fires due slots until `stop` flips. Each orchestration is handled on its own: whatever
/// goes wrong with one (a bad definition, the execution limit, a database error, a panic) is
/// recorded on it and its slot, and the others fire as usual.
pub async fn run(engine: Engine, mut stop: watch::Receiver<bool>) {
    let mut last = Utc::now();
    match dibop_core::guard::catch(record_missed_while_down(&engine, last)).await {
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
        match dibop_core::guard::catch(tick(&engine, last, now)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %format!("{err:#}"), "reading the schedules failed"),
            Err(panic) => tracing::error!(panic = %panic, "a schedule tick panicked; the scheduler goes on"),
        }
        last = now;
    }
}

async fn tick(engine: &Engine, after: DateTime<Utc>, until: DateTime<Utc>) -> anyhow::Result<()> {
    for (row, cron, timezone) in engine.store.scheduled_orchestrations().await? {
        let id = row.id.clone();
        let enterprise = row.enterprise_id.clone();
        match dibop_core::guard::catch(fire_due(engine, row, &cron, &timezone, after, until)).await {
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
async fn record_missed_while_down(engine: &Engine, now: DateTime<Utc>) -> anyhow::Result<()> {
    let until = now - MISSED_AFTER;
    for (row, cron, timezone) in engine.store.scheduled_orchestrations().await? {
        let (Ok(schedule), Ok(tz)) = (parse(&cron), chrono_tz::Tz::from_str(&timezone)) else { continue };
        let since_ms = engine.store.last_slot(&row.id).await?.unwrap_or(row.updated_at).max(row.updated_at);
        let Some(since) = DateTime::from_timestamp_millis(since_ms) else { continue };
        for slot in slots(&schedule, tz, since, until) {
            engine.store.schedule_missed(&row.id, slot.timestamp_millis(), "no node was running", false).await?;
        }
    }
    Ok(())
}

/// Fires the slots of one orchestration in `(after, until]`.
async fn fire_due(
    engine: &Engine,
    row: dibop_store::OrchestrationRow,
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
            engine.store.schedule_missed(&row.id, until.timestamp_millis(), &e.to_string(), true).await?;
            return Ok(());
        }
    };
    for slot in slots(&schedule, tz, after, until) {
        let slot_ms = slot.timestamp_millis();
        if !engine.store.claim_slot(&row.id, slot_ms).await? {
            continue;
        }
        // The slot is ours: from here it fires or is recorded as missed, never dropped.
        match start(engine, &row, slot_ms).await {
            Ok(()) => engine.store.schedule_fired(&row.id).await?,
            Err(reason) => {
                tracing::warn!(orchestration = %row.id, slot = %slot, reason = %reason, "schedule slot missed");
                engine.store.schedule_missed(&row.id, slot_ms, &reason, true).await?;
            }
        }
    }
    Ok(())
}

/// Starts the execution of one slot, or says why it cannot.
async fn start(engine: &Engine, row: &dibop_store::OrchestrationRow, slot_ms: i64) -> Result<(), String> {
    let start = executions::Start {
        enterprise_id: &row.enterprise_id,
        orchestration: executions::Target::Row(row),
        trigger: executions::Trigger::Schedule { slot_ms },
        parameters: &serde_json::Map::new(),
        idempotency_key: None,
        traceparent: None,
        per_minute: None,
    };
    // A full queue refuses the slot like the rate limit does: it is recorded as missed (with a
    // warning in the log), nothing fails, and the next slot tries again.
    match executions::start(engine, start).await {
        Ok(_) => Ok(()),
        Err(executions::ExecutionError::Invalid(errors)) => {
            let list: Vec<String> = errors.iter().map(|e| format!("{} {}", e.path, e.message)).collect();
            Err(format!("scheduled parameters: {}", list.join("; ")))
        }
        Err(e) => Err(e.to_string()),
    }
}
