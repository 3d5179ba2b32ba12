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
    let fields = expression.split_whitespace().count();
    let expression = if fields == 5 { format!("0 {expression}") } else { expression.to_owned() };
    cron::Schedule::from_str(&expression).map_err(|e| e.to_string())
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

/// Fires due slots until `stop` flips.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut last = Utc::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
        let now = Utc::now();
        if let Err(err) = tick(&state, last, now).await {
            tracing::warn!(error = %format!("{err:#}"), "schedule tick failed");
        }
        last = now;
    }
}

async fn tick(state: &AppState, after: DateTime<Utc>, until: DateTime<Utc>) -> anyhow::Result<()> {
    for (row, cron, timezone) in state.store.scheduled_orchestrations().await? {
        let (Ok(schedule), Ok(tz)) = (parse(&cron), chrono_tz::Tz::from_str(&timezone)) else { continue };
        for slot in slots(&schedule, tz, after, until) {
            if !state.store.claim_slot(&row.id, slot.timestamp_millis()).await? {
                continue;
            }
            let def: Definition = serde_json::from_str(&row.definition)?;
            let parameters = definition::bind_parameters(&def, &serde_json::Map::new())
                .map_err(|e| anyhow::anyhow!("scheduled parameters: {e:?}"))?;
            let new = NewExecution {
                orchestration_id: row.id.clone(),
                orchestration_version: row.version,
                triggered_by: "schedule".into(),
                parameters: parameters.to_string(),
                idempotency_key: Some(format!("schedule:{}", slot.timestamp_millis())),
                steps_total: def.step_count(),
                parent: None,
            };
            state.store.enqueue_execution(&row.enterprise_id, new).await?;
            state.engine.wake();
        }
    }
    Ok(())
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
