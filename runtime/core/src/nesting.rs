//! Bounds on nesting: everything recursive that a tenant, a plugin or an upstream system
//! controls is measured here, without recursion, before it is parsed further, built on or
//! stored.
//!
//! A stack overflow is not a panic: it aborts the process and every tenant's work with it, and
//! nothing can catch it. Parsers, serializers and `Drop` of nested values recurse once per
//! level, so the only defence is to refuse depth before anything recursive sees it. The bounds
//! are far below what a 2 MiB worker stack holds even in a debug build (a `serde_json::Value`
//! costs a few hundred bytes of stack per level to drop or serialize):
//!
//! - [`MAX_VALUE_DEPTH`] (100) nested arrays and objects in any JSON value the runtime accepts,
//!   builds or stores: request and webhook bodies, definitions, mappings, step outputs and
//!   resolved values, canonical records, plugin answers. A stored value nests less than
//!   `serde_json`'s own limit of 128, so whatever is stored can always be read back.
//! - [`MAX_EXPRESSION_DEPTH`] (32) nested brackets, parentheses and braces in one `${...}`
//!   reference (JSONPath filters included) or condition.
//! - [`MAX_FILTER_DEPTH`] (4) JSONPath filters nested inside one another (`[?@.a[?@.b]]` is
//!   2). This bound is about time, not stack: the JSONPath parser tries its alternatives again
//!   at every nested filter, so parsing time doubles with each level (20 levels take seconds,
//!   32 take hours, and nothing can interrupt a parser). Four levels parse in well under a
//!   millisecond at the 2,048-byte reference cap.

use serde_json::Value;

/// Most arrays and objects nested in one JSON value.
pub const MAX_VALUE_DEPTH: usize = 100;

/// Most brackets, parentheses and braces nested in one expression (outside quotes).
pub const MAX_EXPRESSION_DEPTH: usize = 32;

/// Most JSONPath filter selectors (`[?...]`) nested inside one another in one expression.
pub const MAX_FILTER_DEPTH: usize = 4;

/// How deeply arrays and objects nest in `value` (a scalar is 0, `[]` is 1, `[{}]` is 2),
/// measured without recursion; counting stops past `limit`, so the answer is at most
/// `limit + 1` and the cost is bounded by the value's size.
pub fn value_depth(value: &Value, limit: usize) -> usize {
    let mut deepest = 0;
    let mut pending: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, depth)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        let depth = depth + 1;
        deepest = deepest.max(depth);
        if deepest > limit {
            return deepest;
        }
        pending.extend(children.map(|child| (child, depth)));
    }
    deepest
}

/// `Err` with a sentence naming `what` when `value` nests deeper than [`MAX_VALUE_DEPTH`].
pub fn check_value(value: &Value, what: &str) -> Result<(), String> {
    if value_depth(value, MAX_VALUE_DEPTH) > MAX_VALUE_DEPTH {
        return Err(format!("{what} nests arrays and objects deeper than {MAX_VALUE_DEPTH} levels"));
    }
    Ok(())
}

/// How deeply `(`, `[` and `{` nest in `text`, outside single- or double-quoted strings (a
/// backslash escapes the next character inside quotes). Unbalanced closers count as nothing.
pub fn bracket_depth(text: &str) -> usize {
    depths(text).0
}

/// How deeply JSONPath filter selectors nest in `text`: a `[` whose selectors include a `?`
/// (outside quotes, directly inside that bracket) is a filter; the answer is the most filters
/// open at once.
pub fn filter_depth(text: &str) -> usize {
    depths(text).1
}

/// The deepest bracket nesting and the deepest filter nesting of `text`, in one pass.
fn depths(text: &str) -> (usize, usize) {
    // The open brackets, innermost last, each with whether it is a filter.
    let mut open: Vec<(char, bool)> = Vec::new();
    let (mut filters, mut deepest, mut deepest_filters) = (0usize, 0usize, 0usize);
    let mut quote = None;
    let mut escaped = false;
    for c in text.chars() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '(' | '[' | '{' => {
                    open.push((c, false));
                    deepest = deepest.max(open.len());
                }
                ')' | ']' | '}' => {
                    if let Some((_, true)) = open.pop() {
                        filters -= 1;
                    }
                }
                '?' => {
                    if let Some(top @ ('[', false)) = open.last_mut() {
                        top.1 = true;
                        filters += 1;
                        deepest_filters = deepest_filters.max(filters);
                    }
                }
                _ => {}
            },
        }
    }
    (deepest, deepest_filters)
}

/// How deeply arrays and objects nest in the JSON text `bytes`, read as bytes outside strings
/// before any parser recurses (counting stops past `limit`). Text that is not JSON gets some
/// answer; its parser refuses it afterwards.
pub fn json_text_depth(bytes: &[u8], limit: usize) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > limit {
                    return deepest;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// `Err` with a sentence naming `what` when the JSON text `bytes` nests deeper than
/// [`MAX_VALUE_DEPTH`].
pub fn check_json_text(bytes: &[u8], what: &str) -> Result<(), String> {
    if json_text_depth(bytes, MAX_VALUE_DEPTH) > MAX_VALUE_DEPTH {
        return Err(format!("{what} nests arrays and objects deeper than {MAX_VALUE_DEPTH} levels"));
    }
    Ok(())
}

/// `Err` with a sentence when `text` nests brackets deeper than [`MAX_EXPRESSION_DEPTH`] or
/// JSONPath filters deeper than [`MAX_FILTER_DEPTH`].
pub fn check_expression(text: &str) -> Result<(), String> {
    let (brackets, filters) = depths(text);
    if brackets > MAX_EXPRESSION_DEPTH {
        return Err(format!("brackets and parentheses nest deeper than {MAX_EXPRESSION_DEPTH} levels"));
    }
    if filters > MAX_FILTER_DEPTH {
        return Err(format!("JSONPath filters ([?...]) nest deeper than {MAX_FILTER_DEPTH} levels"));
    }
    Ok(())
}

/// A JSON value nested `depth` levels deep (arrays inside objects), built without recursion:
/// for tests and benchmarks of the bounds.
pub fn nested_value(depth: usize) -> Value {
    let mut value = Value::Null;
    for level in 0..depth {
        value = if level % 2 == 0 {
            Value::Array(vec![value])
        } else {
            Value::Object(std::iter::once(("a".to_owned(), value)).collect())
        };
    }
    value
}

/// Drops `value` level by level, without the recursion of `Value`'s own `Drop`: for values
/// that may be deeper than the bounds (a test's, or one refused for its depth).
pub fn dismantle(value: Value) {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => pending.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn depth_counts_containers() {
        assert_eq!(value_depth(&json!(1), 10), 0);
        assert_eq!(value_depth(&json!([]), 10), 1);
        assert_eq!(value_depth(&json!({"a": [1, {"b": []}]}), 10), 4);
        assert_eq!(value_depth(&json!([[1], [[2]]]), 10), 3);
        assert!(check_value(&nested_value(MAX_VALUE_DEPTH), "x").is_ok());
        assert!(check_value(&nested_value(MAX_VALUE_DEPTH + 1), "the output").is_err_and(|e| e.contains("100 levels")));
    }

    #[test]
    fn json_text_depth_reads_brackets_outside_strings() {
        assert_eq!(json_text_depth(br#"{"a": "[[[[", "b": [1, {"c": "\"]]]"}]}"#, 10), 3);
        let deep = nested_value(MAX_VALUE_DEPTH + 1).to_string();
        assert!(check_json_text(deep.as_bytes(), "the body").is_err());
        assert_eq!(json_text_depth(nested_value(40).to_string().as_bytes(), 100), 40);
    }

    #[test]
    fn brackets_inside_quotes_do_not_count() {
        assert_eq!(bracket_depth("a[?(@.b == '((((')]"), 2);
        assert_eq!(bracket_depth(r#"x["a\"(("]"#), 1);
        assert_eq!(bracket_depth(")))((("), 3);
        assert!(check_expression(&"(".repeat(MAX_EXPRESSION_DEPTH + 1)).is_err());
        assert!(check_expression(&"(".repeat(MAX_EXPRESSION_DEPTH)).is_ok());
    }

    #[test]
    fn filters_count_where_a_question_mark_opens_them() {
        assert_eq!(filter_depth("list[?@.a[?@.b == 1]]"), 2);
        assert_eq!(filter_depth("list[?@.a][?@.b][?@.c]"), 1);
        assert_eq!(filter_depth("list[1, ?@.a[ ?(@.b)]]"), 2);
        // `??` defaults, quoted question marks and parentheses are not filters.
        assert_eq!(filter_depth("a ?? b"), 0);
        assert_eq!(filter_depth("list[?@.a == '[?[?[?']"), 1);
        assert_eq!(filter_depth("list[?(@.a ? 1)]"), 1);
        let nested = |n: usize| format!("p{}{}", "[?@.a".repeat(n), "]".repeat(n));
        assert!(check_expression(&nested(MAX_FILTER_DEPTH)).is_ok());
        assert!(check_expression(&nested(MAX_FILTER_DEPTH + 1)).is_err_and(|e| e.contains("filters")));
    }

    proptest! {
        /// Deep values are measured (and dropped after leaving the measure) without recursion
        /// reaching the depth: a value ten thousand levels deep is measured at the limit.
        #[test]
        fn measuring_stops_at_the_limit(depth in 0usize..10_000) {
            let value = nested_value(depth);
            let measured = value_depth(&value, MAX_VALUE_DEPTH);
            prop_assert_eq!(measured, depth.min(MAX_VALUE_DEPTH + 1));
            // `nested_value` builds deep values on purpose; take it apart without recursion.
            dismantle(value);
        }

        #[test]
        fn bracket_depth_never_panics(text in any::<String>(), bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = bracket_depth(&text);
            let _ = filter_depth(&text);
            let _ = json_text_depth(&bytes, MAX_VALUE_DEPTH);
        }

        /// The text measure agrees with the value measure on what `serde_json` writes.
        #[test]
        fn text_and_value_depths_agree(depth in 0usize..120) {
            let value = nested_value(depth);
            prop_assert_eq!(json_text_depth(value.to_string().as_bytes(), 200), value_depth(&value, 200));
        }
    }
}
