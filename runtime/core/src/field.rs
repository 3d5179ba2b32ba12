//! A problem with one field of an input, the unit of every "what is wrong" list.

use serde::Serialize;

/// One invalid field of a request, reported in `details` of a 422 answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// Where the problem is, as a dotted path into the request body (`rate_limits.api_requests_per_minute`).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

/// Collects every problem of an input before one answer lists them all (a 422 in the HTTP API).
#[derive(Debug, Default)]
pub struct Validator(Vec<FieldError>);

impl Validator {
    /// No problem yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `message` at `path` unless `ok`.
    pub fn check(&mut self, ok: bool, path: &str, message: impl Into<String>) -> &mut Self {
        if !ok {
            self.0.push(FieldError::new(path, message));
        }
        self
    }

    /// Records the problems of a name at `path`: empty, or longer than 200 characters.
    pub fn check_name(&mut self, path: &str, name: &str) -> &mut Self {
        self.check(!name.trim().is_empty(), path, "must not be empty");
        self.check(name.chars().count() <= 200, path, "must be at most 200 characters")
    }

    /// The value `parsed` holds, or `None` with its error recorded at `path`: parse at the edge
    /// into a domain type and keep collecting the other fields' problems.
    pub fn parse<T, E: std::fmt::Display>(&mut self, parsed: Result<T, E>, path: &str) -> Option<T> {
        parsed.map_err(|err| self.0.push(FieldError::new(path, err.to_string()))).ok()
    }

    /// Every problem recorded, or nothing.
    pub fn finish(&mut self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() { Ok(()) } else { Err(std::mem::take(&mut self.0)) }
    }

    /// [`Validator::finish`], then the value of a [`Validator::parse`] (present whenever no
    /// problem was recorded, since a failed parse records one).
    pub fn finish_with<T>(&mut self, parsed: Option<T>) -> Result<T, Vec<FieldError>> {
        self.finish()?;
        parsed.ok_or_else(|| vec![FieldError::new("", "a parsed field has no value and no problem")])
    }
}

#[cfg(test)]
mod tests {
    use super::Validator;

    #[test]
    fn every_problem_is_kept_in_order_and_a_clean_input_passes() {
        let mut v = Validator::new();
        v.check(true, "a", "fine").check(false, "b", "wrong");
        v.check_name("name", " ");
        let number: Option<u32> = v.parse("x".parse::<u32>(), "count");
        assert_eq!(number, None);
        let problems = v.finish().expect_err("three problems");
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["b", "name", "count"]);
        assert!(v.finish().is_ok(), "finish takes the problems");
        assert_eq!(v.finish_with(Some(3)), Ok(3));
        assert_eq!(Validator::new().check_name("name", &"x".repeat(201)).finish().map_err(|p| p.len()), Err(1));
    }
}
