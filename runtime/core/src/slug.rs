//! Slugs: the short lowercase names of enterprises (in logins) and of plugins (the `system` a
//! connection and a step name).

use std::fmt;

/// 1 to 63 ASCII lowercase letters, digits or dashes, never starting with a dash.
///
/// The two kinds of slug differ in one rule, on purpose: an enterprise slug may not end with a
/// dash either ([`Slug::parse_enterprise`], a DNS label), while a plugin slug may
/// ([`Slug::parse_plugin`]), as it always could, so that every plugin that uploads today
/// still uploads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slug(String);

impl Slug {
    /// An enterprise's slug: 1-63 of `a-z`, `0-9`, `-`, neither starting nor ending with `-`.
    pub fn parse_enterprise(text: &str) -> Result<Self, InvalidSlug> {
        Self::parse_with(text, !text.ends_with('-'))
    }

    /// A plugin's slug, as its `describe()` names it: 1-63 of `a-z`, `0-9`, `-`, not starting
    /// with `-` (a trailing `-` is accepted).
    pub fn parse_plugin(text: &str) -> Result<Self, InvalidSlug> {
        Self::parse_with(text, true)
    }

    fn parse_with(text: &str, end_ok: bool) -> Result<Self, InvalidSlug> {
        let ok = (1..=63).contains(&text.len())
            && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !text.starts_with('-')
            && end_ok;
        if ok { Ok(Self(text.to_owned())) } else { Err(InvalidSlug { text: text.to_owned() }) }
    }

    /// The slug's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Slug {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Slug> for String {
    fn from(slug: Slug) -> Self {
        slug.0
    }
}

/// A text that is not a [`Slug`] of the kind asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSlug {
    text: String,
}

impl fmt::Display for InvalidSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not 1-63 lowercase letters, digits or dashes", self.text)
    }
}

impl std::error::Error for InvalidSlug {}

#[cfg(test)]
mod tests {
    use super::Slug;

    #[test]
    fn both_kinds_accept_lowercase_digits_and_inner_dashes() {
        let longest = "a".repeat(63);
        for text in ["a", "a-1", "northside-motors", "0", "9-lives", "a--b", longest.as_str()] {
            assert_eq!(Slug::parse_enterprise(text).map(String::from), Ok(text.to_owned()));
            assert_eq!(Slug::parse_plugin(text).map(String::from), Ok(text.to_owned()));
        }
    }

    #[test]
    fn both_kinds_refuse_the_rest() {
        let too_long = "a".repeat(64);
        for text in ["", "-a", "-", "A", "a_b", "a.b", "a b", " a", "é", too_long.as_str()] {
            assert!(Slug::parse_enterprise(text).is_err(), "{text:?}");
            assert!(Slug::parse_plugin(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn only_a_plugin_slug_may_end_with_a_dash() {
        assert!(Slug::parse_enterprise("a-").is_err());
        assert!(Slug::parse_enterprise("ab--").is_err());
        assert_eq!(Slug::parse_plugin("a-").map(String::from), Ok("a-".to_owned()));
    }

    #[test]
    fn the_error_quotes_the_text() {
        let err = Slug::parse_plugin("Bad Slug").expect_err("refused");
        assert_eq!(err.to_string(), "\"Bad Slug\" is not 1-63 lowercase letters, digits or dashes");
    }
}
