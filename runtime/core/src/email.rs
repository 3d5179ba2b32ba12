//! E-mail addresses of users: compared and stored in one form, whatever case a form sent.

use std::fmt;

/// Longest address accepted (the SMTP path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// An e-mail address, trimmed and lower-cased, checked the way a sign-up form checks one: one
/// `@` with something before it, a dotted domain that neither starts nor ends with a dot, no
/// whitespace, at most [`MAX_EMAIL_BYTES`].
///
/// ```
/// use dibop_core::Email;
///
/// assert_eq!(Email::parse("  Anna@Northside.Example ")?.as_str(), "anna@northside.example");
/// assert!(Email::parse("anna@localhost").is_err());
/// # Ok::<(), dibop_core::InvalidEmail>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Parses `text` into its stored form.
    pub fn parse(text: &str) -> Result<Self, InvalidEmail> {
        let email = text.trim().to_lowercase();
        let Some((local, domain)) = email.split_once('@') else { return Err(InvalidEmail) };
        let ok = !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && email.len() <= MAX_EMAIL_BYTES
            && !email.chars().any(char::is_whitespace);
        if ok { Ok(Self(email)) } else { Err(InvalidEmail) }
    }

    /// The address's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address's text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A text that is not an acceptable e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEmail;

impl fmt::Display for InvalidEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("must be a valid email address")
    }
}

impl std::error::Error for InvalidEmail {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_kept_in_one_form() {
        assert_eq!(Email::parse("Anna@Example.COM").expect("valid").as_str(), "anna@example.com");
        assert_eq!(Email::parse("\tb@x.y\n").expect("valid").to_string(), "b@x.y");
    }

    #[test]
    fn malformed_addresses_are_refused() {
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "anna",
            "@example.com",
            "anna@example",
            "anna@.example.com",
            "anna@example.com.",
            "a b@x.y",
            "a@b@x.y",
            long.as_str(),
        ] {
            assert_eq!(Email::parse(bad), Err(InvalidEmail), "{bad:?}");
        }
    }
}
