//! The `window` of a statistics query or an alert condition: how far back to look.

use std::fmt;
use std::str::FromStr;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// A positive span of at most 366 days, written as a whole number and a unit: `30m`, `24h`,
/// `7d`.
///
/// The API's `?window=` parameters and the `condition.window` of alert rules parse into this
/// at the edge; evaluation only ever sees a valid span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    millis: i64,
}

impl Window {
    /// The longest window, 366 days: a year of history, leap day included.
    pub const MAX_MILLIS: i64 = 366 * DAY_MS;

    /// Parses `<n><unit>` where `n` is a positive integer (as Rust parses an `i64`, so a leading
    /// `+` is accepted) and `unit` is `m`, `h` or `d`. Nothing is trimmed.
    pub fn parse(text: &str) -> Result<Self, InvalidWindow> {
        Self::millis_of(text).map(|millis| Self { millis }).ok_or_else(|| InvalidWindow { text: text.to_owned() })
    }

    fn millis_of(text: &str) -> Option<i64> {
        // The unit is the last character (not byte): any other text is refused, never sliced apart.
        let unit = text.chars().next_back()?;
        let number = &text[..text.len() - unit.len_utf8()];
        let n: i64 = number.parse().ok().filter(|n| *n > 0)?;
        let unit_ms = match unit {
            'm' => MINUTE_MS,
            'h' => HOUR_MS,
            'd' => DAY_MS,
            _ => return None,
        };
        n.checked_mul(unit_ms).filter(|ms| *ms <= Self::MAX_MILLIS)
    }

    /// The span in milliseconds, the unit of every stored timestamp.
    pub fn as_millis(self) -> i64 {
        self.millis
    }
}

impl FromStr for Window {
    type Err = InvalidWindow;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// A text that is not a [`Window`]; its message is the one the API answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidWindow {
    text: String,
}

impl fmt::Display for InvalidWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "window must look like 30m, 24h or 7d, got {:?}", self.text)
    }
}

impl std::error::Error for InvalidWindow {}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(text: &str) -> Option<i64> {
        Window::parse(text).ok().map(Window::as_millis)
    }

    #[test]
    fn minutes_hours_and_days() {
        assert_eq!(millis("30m"), Some(30 * 60_000));
        assert_eq!(millis("24h"), Some(86_400_000));
        assert_eq!(millis("7d"), Some(7 * 86_400_000));
        assert_eq!(millis("+2h"), Some(2 * 3_600_000));
        assert_eq!("15m".parse::<Window>().map(Window::as_millis), Ok(15 * 60_000));
    }

    #[test]
    fn at_most_366_days() {
        assert_eq!(millis("366d"), Some(Window::MAX_MILLIS));
        assert_eq!(millis("8784h"), Some(Window::MAX_MILLIS));
        assert_eq!(millis("367d"), None);
        assert_eq!(millis("527041m"), None);
        assert_eq!(millis(&format!("{}d", i64::MAX)), None);
    }

    #[test]
    fn anything_else_is_refused() {
        for text in
            ["", "h", "0h", "-1h", "1", "1s", "1w", "1H", " 1h", "1h ", "1.5h", "1hh", "1 h", "one h", "1é", "١h"]
        {
            assert_eq!(millis(text), None, "{text:?}");
        }
    }

    #[test]
    fn the_error_names_the_text_as_the_api_answers() {
        let err = Window::parse("2y").expect_err("refused");
        assert_eq!(err.to_string(), "window must look like 30m, 24h or 7d, got \"2y\"");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::Window;

    proptest! {
        #[test]
        fn windows_never_panic(text in any::<String>()) {
            let _ = Window::parse(&text);
        }

        #[test]
        fn well_formed_windows_parse(n in 1i64..300, unit in prop_oneof![Just('m'), Just('h'), Just('d')]) {
            let ms = Window::parse(&format!("{n}{unit}")).ok().map(Window::as_millis);
            let unit_ms = match unit { 'm' => 60_000, 'h' => 3_600_000, _ => 86_400_000 };
            prop_assert_eq!(ms, Some(n * unit_ms).filter(|ms| *ms <= 366 * 86_400_000));
        }

        #[test]
        fn a_multi_byte_unit_is_refused(n in 1i64..300, unit in "[^mhd0-9]") {
            let text = format!("{n}{unit}");
            prop_assert!(Window::parse(&text).is_err());
        }
    }
}
