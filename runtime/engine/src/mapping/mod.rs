//! DIBOP parameter mapping: `${...}` references into the execution's scope.
//!
//! The scope is one JSON object: `parameters`, `_context` and one member per completed step
//! (its output). A reference is a JSONPath (RFC 9535, through `serde_json_path`) written without
//! the leading `$`: `${parameters.vin}`, `${decode.response.make}`, `${stock.items[0]}`,
//! `${stock.items[-1]}`, `${stock.items[*].name}`, `${stock.items[?(@.status=='active')]}`.
//! A string that is exactly one reference keeps the referenced JSON type; references inside a
//! longer string are interpolated as text. A singular reference that matches nothing fails with
//! a message naming it; a wildcard or filter yields an array (possibly empty).
//!
//! Null-safe: a step that was skipped (a `when` that did not hold, a branch not taken) or failed
//! with `on_error: continue` is `null` in the scope, and any reference into it resolves to
//! `null` instead of failing. `${a.b ?? 'fallback'}` gives a default: the alternatives after
//! `??` (references, quoted text or JSON literals such as `0`, `true`, `null`) are tried in order
//! when the one before cannot be resolved or is `null`.
//!
//! Parsed references are kept in a bounded cache by their text (a step's mapping is resolved
//! again for every execution and every `for_each` item), and so are the regular expressions of
//! `match()` and `search()` filters (see [`patterns`]).

use std::sync::{Arc, LazyLock, Mutex};

use dibop_core::nesting;
use hashlink::LruCache;
use serde_json::{Map, Value};
use serde_json_path::JsonPath;

mod patterns;

use patterns::regex_problem;
pub use patterns::{MAX_REGEX_BYTES, MAX_REGEX_REPEAT};

/// A `${...}` reference that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingError {
    pub reference: String,
    pub message: String,
}

impl std::fmt::Display for MappingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reference.is_empty() {
            return f.write_str(&self.message);
        }
        write!(f, "${{{}}}: {}", self.reference, self.message)
    }
}

/// One parsed reference.
pub struct Reference {
    /// The text between `${` and `}`.
    pub expression: String,
    /// The first name: `parameters`, `_context` or a step name.
    pub root: String,
    path: JsonPath,
    singular: bool,
}

impl Reference {
    pub fn parse(expression: &str) -> Result<Self, MappingError> {
        let expression = expression.trim();
        let error = |message: String| MappingError { reference: expression.to_owned(), message };
        if expression.len() > MAX_REFERENCE_BYTES {
            return Err(error(format!("longer than {MAX_REFERENCE_BYTES} bytes")));
        }
        if let Some(problem) = regex_problem(expression) {
            return Err(error(problem));
        }
        // The JSONPath parser recurses once per nested filter, function or parenthesis.
        nesting::check_expression(expression).map_err(error)?;
        let root: String = expression.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-').collect();
        if root.is_empty() {
            return Err(error("must start with parameters, _context or a step name".into()));
        }
        let rest = &expression[root.len()..];
        // The path is taken from the root's value (see `Lookup`): a body's scope is layered
        // over its container's instead of being a copy of it.
        let path_text = format!("${}", shorthand_to_brackets(rest));
        // `serde_json_path` 0.7.2 panics ("we do not use streaming parsers") on some unfinished
        // escapes such as `\u` at the end of a quoted name: a panic there is an invalid path.
        let path = match std::panic::catch_unwind(|| JsonPath::parse(&path_text)) {
            Ok(parsed) => parsed.map_err(|e| error(format!("invalid JSONPath: {e}")))?,
            Err(_) => return Err(error("invalid JSONPath: an escape sequence is not finished".into())),
        };
        let singular = !(rest.contains('*') || rest.contains("[?") || rest.contains("..") || has_slice(rest));
        Ok(Self { expression: expression.to_owned(), root, path, singular })
    }

    /// The referenced value in `scope`.
    pub fn resolve<S: Lookup + ?Sized>(&self, scope: &S) -> Result<Value, MappingError> {
        let root = scope.root(&self.root);
        // A step that was skipped or failed with `on_error: continue`: everything in it is null.
        if self.singular && root.is_some_and(Value::is_null) {
            return Ok(Value::Null);
        }
        let nodes = root.map(|value| self.path.query(value).all()).unwrap_or_default();
        if self.singular {
            nodes.first().map(|v| (*v).clone()).ok_or_else(|| MappingError {
                reference: self.expression.clone(),
                message: if root.is_none() {
                    format!("{} is not available (no such parameter, context value or completed step)", self.root)
                } else {
                    "did not resolve to a value".into()
                },
            })
        } else {
            Ok(Value::Array(nodes.into_iter().cloned().collect()))
        }
    }
}

/// What references resolve against: a JSON object (`parameters`, `_context`, one member per
/// completed step), or a [`Scope`] of such objects layered one over another.
pub trait Lookup {
    /// The value a reference starting with `name` reads.
    fn root(&self, name: &str) -> Option<&Value>;
}

impl Lookup for Value {
    fn root(&self, name: &str) -> Option<&Value> {
        self.as_object()?.get(name)
    }
}

/// The scope of one block of steps: its own values (the steps it completed; `item` and
/// `index` in a `for_each` body) over those of the block it runs in, which are read in place,
/// not copied, so that 10,000 items of a body over a large step output cost no copy of it.
/// A body nests at most `MAX_STEP_NESTING` levels, so a lookup walks at most that many.
pub struct Scope<'s> {
    local: Value,
    outer: Option<&'s Scope<'s>>,
}

impl<'s> Scope<'s> {
    /// A scope of its own (the top level of an execution).
    pub fn new(local: Value) -> Self {
        Self { local, outer: None }
    }

    /// A body's scope: `local` over `outer`.
    pub fn within(outer: &'s Scope<'s>, local: Value) -> Self {
        Self { local, outer: Some(outer) }
    }

    /// Sets `name` in this layer (over any `name` of the layers beneath).
    pub fn set(&mut self, name: &str, value: Value) {
        self.local[name] = value;
    }

    /// This layer's own values.
    pub fn into_local(self) -> Value {
        self.local
    }
}

impl Lookup for Scope<'_> {
    fn root(&self, name: &str) -> Option<&Value> {
        self.local.root(name).or_else(|| self.outer.and_then(|outer| outer.root(name)))
    }
}

/// One alternative of an expression: a reference or a literal default.
enum Alternative {
    Reference(Reference),
    Literal(Value),
}

/// What is between `${` and `}`: one reference, or several alternatives joined by `??`.
pub struct Expression {
    alternatives: Vec<Alternative>,
}

impl Expression {
    pub fn parse(expression: &str) -> Result<Self, MappingError> {
        let parts = split_defaults(expression);
        let error = |message: &str| MappingError { reference: expression.trim().to_owned(), message: message.into() };
        let mut alternatives = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().map(|p| p.trim()).enumerate() {
            if part.is_empty() {
                return Err(error("?? needs a reference or a value on each side"));
            }
            alternatives.push(match literal(part) {
                Some(_) if i == 0 => return Err(error("must start with parameters, _context or a step name")),
                Some(value) => Alternative::Literal(value),
                None => Alternative::Reference(Reference::parse(part)?),
            });
        }
        Ok(Self { alternatives })
    }

    /// The first alternative that resolves to a value other than null, or a literal; else null
    /// when one resolved to null, else the last one's error.
    pub fn resolve<S: Lookup + ?Sized>(&self, scope: &S) -> Result<Value, MappingError> {
        let mut last_error = None;
        let mut saw_null = false;
        for alternative in &self.alternatives {
            match alternative {
                Alternative::Literal(value) => return Ok(value.clone()),
                Alternative::Reference(reference) => match reference.resolve(scope) {
                    Ok(Value::Null) => saw_null = true,
                    Ok(value) => return Ok(value),
                    Err(e) => last_error = Some(e),
                },
            }
        }
        match last_error {
            Some(e) if !saw_null => Err(e),
            _ => Ok(Value::Null),
        }
    }

    /// The references among the alternatives.
    fn references(self) -> impl Iterator<Item = Reference> {
        self.alternatives.into_iter().filter_map(|a| match a {
            Alternative::Reference(r) => Some(r),
            Alternative::Literal(_) => None,
        })
    }
}

/// A default written after `??`: quoted text (`'x'` or `"x"`) or a JSON number, `true`,
/// `false` or `null`.
fn literal(text: &str) -> Option<Value> {
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        return Some(Value::String(inner.to_owned()));
    }
    if text.starts_with('"') || text.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        return serde_json::from_str(text).ok();
    }
    match text {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        "null" => Some(Value::Null),
        _ => None,
    }
}

/// `expression` cut at each `??` outside quotes, brackets and parentheses.
fn split_defaults(expression: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut from) = (0i32, None, 0);
    let bytes = expression.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'\'' | b'"' => quote = Some(c),
                b'[' | b'(' => depth += 1,
                b']' | b')' => depth -= 1,
                b'?' if depth == 0 && bytes.get(i + 1) == Some(&b'?') => {
                    parts.push(&expression[from..i]);
                    from = i + 2;
                    i += 1;
                }
                _ => {}
            },
        }
        i += 1;
    }
    parts.push(&expression[from..]);
    parts
}

/// Parsed expressions kept (least recently used dropped first).
const CACHED_REFERENCES: usize = 1024;

/// The parsed expression of `expression`, from the cache or parsed now (errors are not kept).
fn parsed(expression: &str) -> Result<Arc<Expression>, MappingError> {
    static CACHE: LazyLock<Mutex<LruCache<String, Arc<Expression>>>> =
        LazyLock::new(|| Mutex::new(LruCache::new(CACHED_REFERENCES)));
    if let Some(reference) = CACHE.lock().ok().and_then(|mut cache| cache.get(expression).cloned()) {
        return Ok(reference);
    }
    let reference = Arc::new(Expression::parse(expression)?);
    if let Ok(mut cache) = CACHE.lock() {
        cache.insert(expression.to_owned(), reference.clone());
    }
    Ok(reference)
}

/// Longest `${...}` expression.
pub const MAX_REFERENCE_BYTES: usize = 2048;
/// Rewrites `.name` segments that JSONPath shorthand cannot express (such as the header name
/// `x-source`) as `['name']`; everything inside brackets is left alone.
fn shorthand_to_brackets(rest: &str) -> String {
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars().peekable();
    let mut depth = 0;
    while let Some(c) = chars.next() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 && chars.peek() != Some(&'.') && !out.ends_with('.') => {
                let mut name = String::new();
                while let Some(&n) = chars.peek() {
                    if n == '.' || n == '[' {
                        break;
                    }
                    name.push(n);
                    chars.next();
                }
                let plain = name == "*"
                    || (!name.starts_with(|c: char| c.is_ascii_digit())
                        && name.chars().all(|c| c.is_alphanumeric() || c == '_'));
                if plain {
                    out.push('.');
                    out.push_str(&name);
                } else {
                    out.push_str(&format!("['{}']", name.replace('\\', "\\\\").replace('\'', "\\'")));
                }
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

fn has_slice(rest: &str) -> bool {
    let mut depth = 0;
    let mut quoted = false;
    for c in rest.chars() {
        match c {
            '\'' | '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth -= 1,
            ':' if !quoted && depth > 0 => return true,
            _ => {}
        }
    }
    false
}

/// The `${...}` expressions in a string, in order.
fn expressions(text: &str) -> Result<Vec<(usize, usize, String)>, MappingError> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(start) = text[from..].find("${").map(|i| i + from) {
        let mut depth = 0;
        let mut end = None;
        for (i, c) in text[start + 2..].char_indices() {
            match c {
                '{' | '[' | '(' => depth += 1,
                ']' | ')' => depth -= 1,
                '}' if depth == 0 => {
                    end = Some(start + 2 + i);
                    break;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        let end = end
            .ok_or_else(|| MappingError { reference: text[start..].to_owned(), message: "missing closing }".into() })?;
        found.push((start, end + 1, text[start + 2..end].to_owned()));
        from = end + 1;
    }
    Ok(found)
}

/// Every reference in a mapping value, the alternatives after `??` included (for validation at
/// save time).
pub fn references(value: &Value) -> Result<Vec<Reference>, MappingError> {
    let mut out = Vec::new();
    collect(value, &mut out)?;
    Ok(out)
}

fn collect(value: &Value, out: &mut Vec<Reference>) -> Result<(), MappingError> {
    match value {
        Value::String(text) => {
            for (_, _, expression) in expressions(text)? {
                out.extend(Expression::parse(&expression)?.references());
            }
        }
        Value::Array(items) => items.iter().try_for_each(|v| collect(v, out))?,
        Value::Object(map) => map.values().try_for_each(|v| collect(v, out))?,
        _ => {}
    }
    Ok(())
}

/// Resolves every reference in `value` against `scope`. The result may nest at most
/// [`nesting::MAX_VALUE_DEPTH`] levels: a mapping that wraps a referenced value deeper than that
/// fails (the template and the referenced values are each within the bound, so what is built
/// before the check stays within twice of it).
pub fn resolve<S: Lookup + ?Sized>(value: &Value, scope: &S) -> Result<Value, MappingError> {
    // The template is walked recursively below: measure it first.
    if let Err(message) = nesting::check_value(value, "the mapping") {
        return Err(MappingError { reference: String::new(), message });
    }
    let resolved = resolve_within(value, scope)?;
    if let Err(message) = nesting::check_value(&resolved, "the mapped value") {
        return Err(MappingError { reference: first_expression(value).unwrap_or_default(), message });
    }
    Ok(resolved)
}

/// The text of the first `${...}` in `value` (to name a mapping in an error).
fn first_expression(value: &Value) -> Option<String> {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(text) => {
                if let Some((_, _, expression)) = expressions(text).ok().and_then(|found| found.into_iter().next()) {
                    return Some(expression);
                }
            }
            Value::Array(items) => pending.extend(items.iter().rev()),
            Value::Object(map) => pending.extend(map.values().rev()),
            _ => {}
        }
    }
    None
}

fn resolve_within<S: Lookup + ?Sized>(value: &Value, scope: &S) -> Result<Value, MappingError> {
    Ok(match value {
        Value::String(text) => {
            let found = expressions(text)?;
            match found.as_slice() {
                [] => value.clone(),
                [(0, end, expression)] if *end == text.len() => parsed(expression)?.resolve(scope)?,
                _ => {
                    let mut out = String::new();
                    let mut last = 0;
                    for (start, end, expression) in &found {
                        out.push_str(&text[last..*start]);
                        match parsed(expression)?.resolve(scope)? {
                            Value::String(s) => out.push_str(&s),
                            Value::Null => {}
                            other => out.push_str(&other.to_string()),
                        }
                        last = *end;
                    }
                    out.push_str(&text[last..]);
                    Value::String(out)
                }
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve_within(v, scope)).collect::<Result<_, _>>()?),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), resolve_within(v, scope)?)))
                .collect::<Result<Map<_, _>, MappingError>>()?,
        ),
        other => other.clone(),
    })
}

/// Evaluates a condition: `<operand> <op> <operand>` with op one of ==, !=, >=, <=, >, <, or a
/// single operand judged by truthiness. An operand is a `${...}` reference or a JSON literal
/// (single-quoted text is a string too).
pub fn condition<S: Lookup + ?Sized>(expression: &str, scope: &S) -> Result<bool, MappingError> {
    let operand = |text: &str| -> Result<Value, MappingError> {
        let text = text.trim();
        if text.starts_with("${") && text.ends_with('}') {
            return resolve(&Value::String(text.to_owned()), scope);
        }
        if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
            return Ok(Value::String(inner.to_owned()));
        }
        Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())))
    };
    // The operator must sit outside references and quotes.
    // Offsets come from `char_indices`, so every slice below starts on a character boundary.
    let mut depth = 0;
    let mut quoted = false;
    for (i, c) in expression.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            '\'' | '"' => quoted = !quoted,
            _ if depth == 0 && !quoted => {
                for op in ["==", "!=", ">=", "<=", ">", "<"] {
                    if expression[i..].starts_with(op) {
                        let (left, right) = (operand(&expression[..i])?, operand(&expression[i + op.len()..])?);
                        return Ok(compare(&left, op, &right));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(truthy(&operand(expression)?))
}

fn compare(left: &Value, op: &str, right: &Value) -> bool {
    let order = match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().zip(b.as_f64()).and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match op {
        "==" => order.map_or(left == right, |o| o.is_eq()),
        "!=" => order.map_or(left != right, |o| o.is_ne()),
        ">" => order.is_some_and(|o| o.is_gt()),
        ">=" => order.is_some_and(|o| o.is_ge()),
        "<" => order.is_some_and(|o| o.is_lt()),
        "<=" => order.is_some_and(|o| o.is_le()),
        _ => false,
    }
}

/// JSON truthiness: null, false, 0, "", "false" and [] are false.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty() && s != "false",
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// Text made of the pieces the parsers look for, mixed with any characters (multi-byte
    /// ones included), so the interesting paths are reached more often than by chance.
    fn tricky() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("${".to_owned()),
            Just("}".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just("?(@".to_owned()),
            Just("'".to_owned()),
            Just("==".to_owned()),
            Just(">=".to_owned()),
            Just(".".to_owned()),
            Just("parameters".to_owned()),
            Just("é".to_owned()),
            Just("東".to_owned()),
            Just("🚗".to_owned()),
            any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    fn scope() -> Value {
        json!({"parameters": {"name": "Zürich", "n": 3, "list": ["é", 2]}, "_context": {"execution_id": "e"}})
    }

    proptest! {
        #[test]
        fn mapping_never_panics(text in tricky()) {
            let _ = super::resolve(&Value::String(text.clone()), &scope());
            let _ = super::references(&Value::String(text.clone()));
            let _ = super::Reference::parse(&text);
        }

        #[test]
        fn conditions_never_panic(text in tricky(), any_text in any::<String>()) {
            let _ = super::condition(&text, &scope());
            let _ = super::condition(&any_text, &scope());
        }

        /// Parentheses, brackets and filters nested up to ten thousand deep in a reference, a
        /// `??` default or a condition are refused by their depth before the JSONPath parser
        /// recurses; within the bound they parse or fail like any other text. Nested filters
        /// are refused past their own, lower bound: the parser's time doubles with each level,
        /// so without it this test does not finish (CI's time limit is the failure).
        #[test]
        fn deep_expressions_are_refused_before_parsing(
            depth in 0usize..10_000,
            shape in 0usize..8,
        ) {
            use dibop_core::nesting::{MAX_EXPRESSION_DEPTH, MAX_FILTER_DEPTH};
            let nest = |open: &str, close: &str| format!("{}{}", open.repeat(depth), close.repeat(depth));
            let text = match shape {
                0 => format!("parameters.list[?{}@.a == 1{}]", "(".repeat(depth), ")".repeat(depth)),
                1 => format!("parameters{}", nest("[?@.a", "]")),
                2 => format!("parameters.list[?{}@.a{}]", "length(".repeat(depth), ")".repeat(depth)),
                3 => format!("parameters.n ?? {}1{}", "[".repeat(depth), "]".repeat(depth)),
                4 => format!("parameters{}", nest("[?(@.a", ")]")),
                5 => format!("parameters{}", nest("[?length(@.a", ")==1]")),
                6 => format!("parameters{}", nest("[1, ?@.b && @.a", "]")),
                _ => format!("parameters{}", nest("..[?match(@..a", ",'x')]")),
            };
            let parsed = super::Reference::parse(&text).err().map(|e| e.message);
            let filters = if matches!(shape, 1 | 4..=7) { depth } else { 0 };
            if (depth > MAX_EXPRESSION_DEPTH && shape != 3) || filters > MAX_FILTER_DEPTH {
                // Refused by its depth, or by its length first when that is over the cap.
                prop_assert!(parsed.as_ref().is_some_and(|m| m.contains("nest deeper") || m.contains("longer than")), "{:?}", parsed);
            }
            let _ = super::resolve(&Value::String(format!("${{{text}}}")), &scope());
            let _ = super::condition(&format!("${{{text}}} == 1"), &scope());
            let _ = super::references(&Value::String(format!("x ${{{text}}} y")));
        }

        /// The value builder: a template nested up to ten thousand levels around a reference
        /// to a value nested up to the bound either builds a value within the bound or fails
        /// with the bound in its message; it never recurses past it.
        #[test]
        fn built_values_stay_within_the_bound(template_depth in 0usize..10_000, value_depth in 0usize..=100) {
            use dibop_core::nesting::{MAX_VALUE_DEPTH, dismantle, nested_value, value_depth as depth_of};
            let mut template = Value::String("${parameters.deep}".into());
            for _ in 0..template_depth {
                template = Value::Array(vec![template]);
            }
            let scope = json!({"parameters": {"deep": nested_value(value_depth)}});
            match super::resolve(&template, &scope) {
                Ok(built) => {
                    prop_assert!(template_depth + value_depth <= MAX_VALUE_DEPTH);
                    prop_assert_eq!(depth_of(&built, 1000), template_depth + value_depth);
                }
                Err(e) => {
                    prop_assert!(template_depth + value_depth > MAX_VALUE_DEPTH);
                    prop_assert!(e.message.contains("deeper than 100 levels"), "{}", e.message);
                }
            }
            dismantle(template);
        }

        #[test]
        fn a_literal_right_side_compares_whatever_its_characters(city in "[^'\"{}=!<>]{1,12}") {
            let holds = super::condition(&format!("${{parameters.name}} == {city}"), &scope());
            prop_assert_eq!(holds, Ok(city.trim() == "Zürich"));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scope() -> Value {
        json!({
            "parameters": {"vin": "1HGCM82633A004352", "count": 3},
            "_context": {"execution_id": "e-1"},
            "decode": {"status_code": 200, "response": {"make": "HONDA", "year": 2003}},
            "stock": {"items": [{"name": "a", "status": "active"}, {"name": "b", "status": "sold"}, {"name": "c", "status": "active"}]}
        })
    }

    #[test]
    fn an_unfinished_escape_is_an_invalid_path_not_a_panic() {
        let err = Reference::parse(r"parameters.'['}\u").err().expect("refused");
        assert!(err.message.contains("escape sequence is not finished"), "{}", err.message);
        assert!(resolve(&json!(r"${parameters.'['}\u}"), &scope()).is_err());
    }

    #[test]
    fn a_body_scope_reads_its_own_values_over_its_containers() {
        let outer = Scope::new(scope());
        let mut body = Scope::within(&outer, json!({"item": {"vin": "V1"}, "index": 4}));
        assert_eq!(resolve(&json!("${item.vin}"), &body).expect("own"), json!("V1"));
        assert_eq!(resolve(&json!("${decode.response.make}"), &body).expect("outer"), json!("HONDA"));
        assert_eq!(resolve(&json!("${stock.items[?(@.status=='sold')].name}"), &body).expect("filter"), json!(["b"]));
        assert_eq!(resolve(&json!("${stock..name}"), &body).expect("descendants"), json!(["a", "b", "c"]));
        // A step of the body named like one outside it hides it; skipped, it reads as null.
        body.set("decode", json!({"response": {"make": "FORD"}}));
        assert_eq!(resolve(&json!("${decode.response.make}"), &body).expect("own"), json!("FORD"));
        body.set("stock", Value::Null);
        assert_eq!(resolve(&json!("${stock.items[0]}"), &body).expect("null-safe"), Value::Null);
        let nested = Scope::within(&body, json!({"item": 7}));
        assert_eq!(resolve(&json!("${item} of ${index}"), &nested).expect("layers"), json!("7 of 4"));
        let missing = resolve(&json!("${nothing.here}"), &nested).expect_err("missing");
        assert!(missing.message.contains("nothing is not available"), "{missing}");
        assert_eq!(resolve(&json!("${nothing[*]}"), &nested).expect("empty"), json!([]));
        assert_eq!(outer.root("decode").expect("outer")["response"]["make"], "HONDA", "the outer scope is unchanged");
    }

    #[test]
    fn whole_value_references_keep_their_type() {
        let s = scope();
        assert_eq!(resolve(&json!("${parameters.count}"), &s).expect("ok"), json!(3));
        assert_eq!(resolve(&json!("${decode.response}"), &s).expect("ok"), json!({"make": "HONDA", "year": 2003}));
        assert_eq!(resolve(&json!("${stock.items[0]}"), &s).expect("ok"), json!({"name": "a", "status": "active"}));
        assert_eq!(resolve(&json!("${stock.items[-1].name}"), &s).expect("ok"), json!("c"));
        assert_eq!(resolve(&json!("${stock.items[*].name}"), &s).expect("ok"), json!(["a", "b", "c"]));
        assert_eq!(resolve(&json!("${stock.items[?(@.status=='active')].name}"), &s).expect("ok"), json!(["a", "c"]));
        assert_eq!(resolve(&json!("${_context.execution_id}"), &s).expect("ok"), json!("e-1"));
        let request = json!({"headers": {"x-source": "dms"}, "body": {"a": {"b-c": 1}}});
        assert_eq!(resolve(&json!("${headers.x-source}"), &request).expect("ok"), json!("dms"));
        assert_eq!(resolve(&json!("${body.a.b-c}"), &request).expect("ok"), json!(1));
    }

    #[test]
    fn conditions_compare_references_and_literals() {
        let s = scope();
        assert!(condition("${decode.response.make} == 'HONDA'", &s).expect("ok"));
        assert!(condition("${decode.response.year} >= 2000", &s).expect("ok"));
        assert!(!condition("${decode.response.year} < 1990", &s).expect("ok"));
        assert!(condition("${parameters.count} != 4", &s).expect("ok"));
        assert!(condition("${stock.items}", &s).expect("ok"));
        assert!(!condition("${stock.items[?(@.status=='gone')]}", &s).expect("ok"));
        assert!(condition("${nothing.here} == 1", &s).is_err());
    }

    #[test]
    fn references_inside_strings_interpolate() {
        let s = scope();
        let value = json!({"label": "${decode.response.make} ${decode.response.year} (${parameters.vin})", "n": 1});
        assert_eq!(resolve(&value, &s).expect("ok"), json!({"label": "HONDA 2003 (1HGCM82633A004352)", "n": 1}));
    }

    #[test]
    fn references_into_a_null_step_are_null_and_defaults_fill_gaps() {
        let mut s = scope();
        s["stock"] = Value::Null; // skipped, or failed with on_error: continue
        assert_eq!(resolve(&json!("${stock.response.stock_number}"), &s).expect("ok"), Value::Null);
        assert_eq!(resolve(&json!("${stock.items[*].name}"), &s).expect("ok"), json!([]));
        assert_eq!(resolve(&json!("n=${stock.response.n}"), &s).expect("ok"), json!("n="));
        let defaults = json!({
            "a": "${stock.response.stock_number ?? 'none'}",
            "b": "${decode.response.model ?? decode.response.make}",
            "c": "${nothing.here ?? 0}",
            "d": "${decode.response.trim ?? parameters.missing ?? \"x ?? y\"}",
            "e": "${decode.response.year ?? 1999}",
            "f": "${stock.items[?(@.x=='??')] ?? true}",
            "g": "Make: ${decode.response.mk ?? 'unknown'}!",
            "h": "${nothing.here ?? stock.response}",
        });
        assert_eq!(
            resolve(&defaults, &s).expect("ok"),
            json!({"a": "none", "b": "HONDA", "c": 0, "d": "x ?? y", "e": 2003, "f": [], "g": "Make: unknown!", "h": null})
        );
        let error = resolve(&json!("${decode.response.mk ?? nothing.here}"), &s).expect_err("no alternative resolves");
        assert_eq!(error.reference, "nothing.here");
        for bad in ["${decode.x ??}", "${?? 'x'}", "${'x' ?? decode}", "${decode ?? 'open}"] {
            assert!(references(&json!(bad)).is_err(), "{bad}");
        }
        let roots: Vec<String> =
            references(&json!("${a.b ?? c.d ?? 'x'}")).expect("ok").into_iter().map(|r| r.root).collect();
        assert_eq!(roots, ["a", "c"]);
    }

    #[test]
    fn unresolvable_references_name_themselves() {
        let err = resolve(&json!("${decode.response.model}"), &scope()).expect_err("missing");
        assert_eq!(err.reference, "decode.response.model");
        assert!(err.to_string().contains("${decode.response.model}"));
        let err = resolve(&json!("${nostep.x}"), &scope()).expect_err("missing");
        assert!(err.message.contains("nostep"), "{err}");
        assert!(Reference::parse("decode.items[?(@.x==]").is_err());
        assert!(Reference::parse("stock.items[?match(@.name, 'a.{1,50}')]").is_ok());
        let repeat = Reference::parse("stock.items[?match(@.name, '(a{1000}){1000}')]").err().expect("refused");
        assert!(repeat.message.contains("repeat at most"), "{repeat}");
        let long = format!("stock.items[?search(@.name, '{}')]", "a".repeat(300));
        assert!(Reference::parse(&long).err().expect("refused").message.contains("at most 200 bytes"));
        assert!(resolve(&json!("${decode"), &scope()).is_err());
    }

    /// Items named `a` and `b`, `n` of them.
    fn many(n: usize) -> Value {
        let items: Vec<Value> = (0..n).map(|i| json!({"name": if i % 2 == 0 { "a" } else { "b" }})).collect();
        json!({"stock": {"items": items}})
    }

    #[test]
    fn a_filter_pattern_is_compiled_once_however_many_nodes_it_tests() {
        let compiled = || patterns::COMPILED.with(std::cell::Cell::get);
        let scope = many(300);
        // A pattern no other test uses, so that no earlier evaluation compiled it (letters only:
        // a number over 100 reads as a repetition).
        let unique: String = uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .chars()
            .map(|c| c.to_digit(10).map_or(c, |d| char::from(b'g' + d as u8)))
            .collect();
        for function in ["match", "search"] {
            let before = compiled();
            let reference = format!("${{stock.items[?{function}(@.name, 'a|{unique}')].name}}");
            let found = resolve(&json!(reference), &scope).expect("resolves");
            assert_eq!(found.as_array().map(Vec::len), Some(150), "{found}");
            assert_eq!(compiled() - before, 1, "{function}: one compile for 300 nodes");
            resolve(&json!(reference), &scope).expect("resolves again");
            assert_eq!(compiled() - before, 1, "{function}: none for the next execution");
        }
        // The same semantics as the library's own functions: match() is anchored, search() not.
        let s = json!({"items": [{"code": "xAx"}, {"code": "A"}]});
        assert_eq!(resolve(&json!("${items[?match(@.code, 'A')].code}"), &s).expect("ok"), json!(["A"]));
        assert_eq!(resolve(&json!("${items[?search(@.code, 'A')].code}"), &s).expect("ok"), json!(["xAx", "A"]));
        assert_eq!(
            resolve(&json!("${items[?search(@.code, '*')].code}"), &s).expect("ok"),
            json!([]),
            "an invalid pattern matches nothing"
        );
    }

    #[test]
    fn a_pattern_taken_from_the_data_is_held_to_the_bounds_of_a_literal_one() {
        let long = "a".repeat(MAX_REGEX_BYTES + 1);
        let s = json!({"items": [
            {"name": "abc", "pattern": "a.c"},
            {"name": &long, "pattern": &long},
            {"name": "a".repeat(MAX_REGEX_REPEAT as usize + 1), "pattern": format!("a{{{}}}", MAX_REGEX_REPEAT + 1)},
        ]});
        let found = resolve(&json!("${items[?match(@.name, @.pattern)].name}"), &s).expect("resolves");
        assert_eq!(found, json!(["abc"]));
    }

    #[test]
    fn a_parsed_reference_is_reused() {
        let first = parsed("stock.items[?(@.status=='active')].name").expect("parses");
        let again = parsed("stock.items[?(@.status=='active')].name").expect("parses");
        assert!(Arc::ptr_eq(&first, &again));
    }
}

#[cfg(test)]
mod extreme_paths {
    use serde_json::json;

    /// Indexes and slices at the ends of the integer range, and numbers past `f64`, resolve or
    /// fail like any other reference (no overflow panics in the JSONPath evaluation).
    #[test]
    fn extreme_indexes_and_slices_do_not_panic() {
        let scope = json!({"parameters": {"list": [1, 2, 3]}});
        // Singular: nothing there, or a number outside what RFC 9535 allows (±2^53).
        for text in [
            "${parameters.list[-9223372036854775808]}",
            "${parameters.list[9223372036854775807]}",
            "${parameters.list[-9007199254740991]}",
        ] {
            let resolved = super::resolve(&json!(text), &scope);
            let refused = |e: &super::MappingError| {
                e.message.contains("did not resolve") || e.message.starts_with("invalid JSONPath")
            };
            assert!(resolved.as_ref().is_err_and(refused), "{text}: {resolved:?}");
        }
        // Slices and filters: an array, or a refusal of the number at parse time.
        for text in [
            "${parameters.list[::-9223372036854775808]}",
            "${parameters.list[-9223372036854775808:9223372036854775807:9223372036854775807]}",
            "${parameters.list[9007199254740991:-9007199254740991:-1]}",
            "${parameters.list[?@ == -9223372036854775808]}",
            "${parameters.list[?@ > 1e400]}",
            "${parameters.list[?length(@) > 99999999999999999999999]}",
        ] {
            match super::resolve(&json!(text), &scope) {
                Ok(value) => assert!(value.is_array(), "{text}: {value}"),
                Err(e) => assert!(e.message.starts_with("invalid JSONPath"), "{text}: {e}"),
            }
        }
    }
}
