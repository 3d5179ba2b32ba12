//! Regular expressions in filters: the bounds of a `match()` or `search()` pattern, and the
//! two filter functions themselves, with each pattern compiled once.
//!
//! `serde_json_path`'s own `match` and `search` compile their pattern every time they are called,
//! that is for every node a filter tests (`serde_json_path` 0.7.2,
//! `src/parser/selector/function/registry.rs`, `regex::Regex::new` in `match_func` and `search`),
//! and a function has no state of its own: it is a plain evaluator called with the argument
//! values. Functions registered with `#[serde_json_path::function]` are looked up before the
//! built-in ones when a path is parsed, so these replace them, with the same semantics (RFC 9535
//! I-Regexp, here as the `regex` crate reads it with CRLF mode; an invalid pattern matches
//! nothing) and a bounded cache of compiled expressions by pattern text. A pattern taken from
//! the data (`match(@.code, $.pattern)`) is held to the bounds of a literal one, and one past
//! them matches nothing.

use std::sync::{Arc, LazyLock, Mutex};

use hashlink::LruCache;
use regex::Regex;
use serde_json::Value;
use serde_json_path::functions::{LogicalType, ValueType};

/// Longest regular expression of a `match()` or `search()` filter, and the largest counted
/// repetition in it: a pattern is compiled once per distinct text (see below), but a
/// pattern taken from the data may differ for every node tested, so its cost must stay small.
pub const MAX_REGEX_BYTES: usize = 200;
pub const MAX_REGEX_REPEAT: u32 = 100;

/// Why a filter's regular expressions are too costly, if they are.
pub(super) fn regex_problem(expression: &str) -> Option<String> {
    if !(expression.contains("match(") || expression.contains("search(")) {
        return None;
    }
    // The string literals of the expression (the patterns among them).
    let mut literals = Vec::new();
    let mut current: Option<(char, String)> = None;
    for c in expression.chars() {
        match &mut current {
            Some((quote, text)) if c == *quote => {
                literals.push(std::mem::take(text));
                current = None;
            }
            Some((_, text)) => text.push(c),
            None if c == '\'' || c == '"' => current = Some((c, String::new())),
            None => {}
        }
    }
    literals.iter().find_map(|literal| pattern_problem(literal))
}

/// Why one pattern is too costly, if it is.
fn pattern_problem(pattern: &str) -> Option<String> {
    if pattern.len() > MAX_REGEX_BYTES {
        return Some(format!("a filter pattern may be at most {MAX_REGEX_BYTES} bytes"));
    }
    let mut digits = String::new();
    for c in pattern.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if digits.parse::<u32>().is_ok_and(|n| n > MAX_REGEX_REPEAT) {
                return Some(format!("a filter pattern may repeat at most {MAX_REGEX_REPEAT} times"));
            }
            digits.clear();
        }
    }
    if digits.parse::<u32>().is_ok_and(|n| n > MAX_REGEX_REPEAT) {
        return Some(format!("a filter pattern may repeat at most {MAX_REGEX_REPEAT} times"));
    }
    None
}

/// Compiled patterns kept per function (least recently used dropped first).
const CACHED: usize = 256;

/// Shared as `Arc`s: a cloned `Regex` would allocate its own match state at its first use.
type Cache = LazyLock<Mutex<LruCache<String, Option<Arc<Regex>>>>>;

static MATCHES: Cache = LazyLock::new(|| Mutex::new(LruCache::new(CACHED)));
static SEARCHES: Cache = LazyLock::new(|| Mutex::new(LruCache::new(CACHED)));

#[cfg(test)]
thread_local! {
    /// Patterns compiled by this thread (the evaluation runs on the caller's thread).
    pub static COMPILED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[serde_json_path::function(name = "match")]
fn full_match(value: ValueType, pattern: ValueType) -> LogicalType {
    test(&MATCHES, &value, &pattern, |p| format!("(?R)^({p})$"))
}

#[serde_json_path::function(name = "search")]
fn search(value: ValueType, pattern: ValueType) -> LogicalType {
    test(&SEARCHES, &value, &pattern, |p| format!("(?R)({p})"))
}

fn test(cache: &Cache, value: &ValueType, pattern: &ValueType, anchor: fn(&str) -> String) -> LogicalType {
    let (Some(Value::String(text)), Some(Value::String(pattern))) = (value.as_value(), pattern.as_value()) else {
        return LogicalType::False;
    };
    if pattern_problem(pattern).is_some() {
        return LogicalType::False;
    }
    let cached = cache.lock().ok().and_then(|mut cache| cache.get(pattern.as_str()).cloned());
    let regex = match cached {
        Some(regex) => regex,
        None => {
            #[cfg(test)]
            COMPILED.with(|n| n.set(n.get() + 1));
            let regex = Regex::new(&anchor(pattern)).ok().map(Arc::new);
            if let Ok(mut cache) = cache.lock() {
                cache.insert(pattern.clone(), regex.clone());
            }
            regex
        }
    };
    regex.is_some_and(|regex| regex.is_match(text)).into()
}
