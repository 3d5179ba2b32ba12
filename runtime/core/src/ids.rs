//! Ids and time as every table stores them: UUID v7 text and unix milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch, the unit of every timestamp column.
///
/// A clock before 1970 reads as 0 rather than failing: nothing stored predates the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

/// A new id: a UUID v7, so ids sort by creation time and index well.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_v7_and_sort_by_creation() {
        let (first, second) = (new_id(), new_id());
        let parsed = uuid::Uuid::parse_str(&first).expect("a uuid");
        assert_eq!(parsed.get_version_num(), 7);
        assert!(first < second);
    }

    #[test]
    fn now_is_after_2024_in_milliseconds() {
        let now = now_ms();
        assert!(now > 1_704_067_200_000, "{now}");
        assert!(now < 32_503_680_000_000, "{now}");
    }
}
