//! Cron expressions: parsing tenant text into a schedule, and the slots a schedule has in a
//! span of time in the enterprise's time zone. Definition validation and the scheduler both
//! read them.

use std::str::FromStr;

use chrono::{DateTime, Utc};

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
