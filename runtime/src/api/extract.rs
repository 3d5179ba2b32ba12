//! Request extractors that answer in the API's error shape: JSON bodies, query strings and
//! pagination.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use dibop_core::nesting;

use crate::error::{AppError, AppResult, FieldError};
use crate::store::Page;

/// A JSON request body. Malformed JSON is 400, a well-formed body of the wrong shape is 422 with
/// the offending field's path, a body over the limit is 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> AppResult<Self> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !json {
            return Err(AppError::BadRequest("expected a JSON body with Content-Type: application/json".into()));
        }
        let bytes = body_bytes(request, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The whole body; 413 over the limit.
async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> AppResult<Bytes> {
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge("request body too large".into())
        } else {
            AppError::BadRequest(rejection.body_text())
        }
    })
}

/// Parses `bytes` as a `T`, mapping errors as [`ApiJson`] documents. A string (or key) holding
/// U+0000 is 422 at its path: PostgreSQL's text and JSONB cannot store it, so no body brings one
/// into the store on either database.
/// An XML body as JSON (the rule of `dibop_xml`), 400 when it is not a well-formed document;
/// like JSON bodies, no U+0000 gets through.
pub fn parse_xml(bytes: &[u8]) -> AppResult<serde_json::Value> {
    let tree = dibop_xml::to_json(bytes).map_err(|e| AppError::BadRequest(e.to_string()))?;
    nesting::check_value(&tree, "the XML document as JSON").map_err(AppError::BadRequest)?;
    refuse_nul(&tree)?;
    Ok(tree)
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> AppResult<T> {
    // Measured before anything recursive reads it (see `dibop_core::nesting`).
    nesting::check_json_text(bytes, "the JSON body").map_err(AppError::BadRequest)?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(shape_error)?;
    deserializer.end().map_err(|err| AppError::BadRequest(format!("malformed JSON: {err}")))?;
    // A NUL can only arrive escaped; only then is the body read again to find where.
    if bytes.windows(6).any(|w| w == b"\\u0000")
        && let Ok(tree) = serde_json::from_slice::<serde_json::Value>(bytes)
    {
        refuse_nul(&tree)?;
    }
    Ok(value)
}

/// 422 naming the first string or key of `value` that holds U+0000.
fn refuse_nul(value: &serde_json::Value) -> AppResult<()> {
    fn find(value: &serde_json::Value, at: &str) -> Option<String> {
        let join = |key: &str| if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") };
        match value {
            serde_json::Value::String(text) => text.contains('\0').then(|| at.to_owned()),
            serde_json::Value::Array(items) => {
                items.iter().enumerate().find_map(|(i, item)| find(item, &format!("{at}[{i}]")))
            }
            serde_json::Value::Object(map) => map.iter().find_map(|(key, item)| {
                if key.contains('\0') { Some(join(&key.replace('\0', "\\u0000"))) } else { find(item, &join(key)) }
            }),
            _ => None,
        }
    }
    match find(value, "") {
        Some(at) => {
            let at = if at.is_empty() { ".".to_owned() } else { at };
            Err(AppError::invalid(at, "must not contain the NUL character (\\u0000)"))
        }
        None => Ok(()),
    }
}

/// A deserialization error: 400 when the text is malformed, else 422 naming the field.
fn shape_error(err: serde_path_to_error::Error<serde_json::Error>) -> AppError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if inner.classify() != serde_json::error::Category::Data {
        return AppError::BadRequest(format!("malformed JSON: {inner}"));
    }
    let message = inner.to_string();
    let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
    // serde reports a missing field at its parent; point at the field itself.
    let path = match message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
        Some(field) if path == "." => field.to_owned(),
        Some(field) => format!("{path}.{field}"),
        None => path,
    };
    AppError::Validation(vec![FieldError { path, message }])
}

/// A request body in JSON, or in YAML with `Content-Type: application/yaml` (also
/// `application/x-yaml`, `text/yaml`). Errors answer as [`ApiJson`]'s do.
pub struct JsonOrYaml<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonOrYaml<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> AppResult<Self> {
        let yaml = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                ["application/yaml", "application/x-yaml", "text/yaml"]
                    .contains(&mime.trim().to_ascii_lowercase().as_str())
            });
        if !yaml {
            return ApiJson::from_request(request, state).await.map(|ApiJson(value)| JsonOrYaml(value));
        }
        let bytes = body_bytes(request, state).await?;
        let value = yaml_value(&bytes)?;
        refuse_nul(&value)?;
        serde_path_to_error::deserialize(value).map(JsonOrYaml).map_err(shape_error)
    }
}

/// Most nodes a YAML document may expand to (aliases count every time they are used).
pub const YAML_MAX_NODES: usize = 100_000;
/// Most bytes of text (keys and scalars) a YAML document may expand to.
pub const YAML_MAX_TEXT_BYTES: usize = 4 * 1024 * 1024;

/// Parses YAML into JSON under a budget charged while parsing, so a few aliases that expand
/// to billions of nodes are refused after [`YAML_MAX_NODES`] instead of filling the memory.
pub fn yaml_value(bytes: &[u8]) -> AppResult<serde_json::Value> {
    use serde::de::DeserializeSeed;
    let budget = yaml::Budget::default();
    yaml::Node(&budget, 0).deserialize(serde_norway::Deserializer::from_slice(bytes)).map_err(|err| {
        if budget.too_deep() {
            AppError::BadRequest(format!(
                "the YAML document nests sequences and mappings deeper than {} levels (aliases included)",
                nesting::MAX_VALUE_DEPTH
            ))
        } else if budget.exhausted() {
            AppError::BadRequest(format!(
                "the YAML document expands to more than {YAML_MAX_NODES} nodes or {YAML_MAX_TEXT_BYTES} bytes of text \
                 (anchors and aliases count each time they are used)"
            ))
        } else {
            AppError::BadRequest(format!("malformed YAML: {err}"))
        }
    })
}

mod yaml {
    use std::cell::Cell;
    use std::fmt;

    use dibop_core::nesting::MAX_VALUE_DEPTH;
    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    use super::{YAML_MAX_NODES, YAML_MAX_TEXT_BYTES};

    /// Nodes and text bytes built so far.
    #[derive(Default)]
    pub struct Budget {
        nodes: Cell<usize>,
        bytes: Cell<usize>,
        exhausted: Cell<bool>,
        too_deep: Cell<bool>,
    }

    impl Budget {
        fn charge<E: de::Error>(&self, text_bytes: usize) -> Result<(), E> {
            self.nodes.set(self.nodes.get() + 1);
            self.bytes.set(self.bytes.get().saturating_add(text_bytes));
            if self.nodes.get() > YAML_MAX_NODES || self.bytes.get() > YAML_MAX_TEXT_BYTES {
                self.exhausted.set(true);
                return Err(E::custom("document too large"));
            }
            Ok(())
        }

        pub fn exhausted(&self) -> bool {
            self.exhausted.get()
        }

        pub fn too_deep(&self) -> bool {
            self.too_deep.get()
        }
    }

    /// One node at a nesting depth, built as JSON while the budget is charged.
    pub struct Node<'a>(pub &'a Budget, pub usize);

    impl Node<'_> {
        /// A sequence's or mapping's children are one level deeper; past the bound the
        /// document is refused before the parser recurses further.
        fn inner<E: de::Error>(&self) -> Result<Node<'_>, E> {
            if self.1 >= MAX_VALUE_DEPTH {
                self.0.too_deep.set(true);
                return Err(E::custom("nested too deeply"));
            }
            Ok(Node(self.0, self.1 + 1))
        }
    }

    impl<'de> DeserializeSeed<'de> for Node<'_> {
        type Value = Value;

        fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Node<'_> {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a YAML value")
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
            self.0.charge(0)?;
            Ok(Value::Bool(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
            self.0.charge(0)?;
            Ok(Value::from(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
            self.0.charge(0)?;
            Ok(Value::from(v))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
            self.0.charge(0)?;
            Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
            self.0.charge(v.len())?;
            Ok(Value::String(v.to_owned()))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
            self.0.charge(0)?;
            Ok(Value::Null)
        }

        fn visit_none<E: de::Error>(self) -> Result<Value, E> {
            self.visit_unit()
        }

        fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            self.deserialize(deserializer)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            self.0.charge(0)?;
            let inner = self.inner()?;
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(Node(inner.0, inner.1))? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            self.0.charge(0)?;
            let inner = self.inner()?;
            let mut out = Map::new();
            while let Some(key) = map.next_key_seed(Node(inner.0, inner.1))? {
                let key = match key {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                let value = map.next_value_seed(Node(inner.0, inner.1))?;
                out.insert(key, value);
            }
            Ok(Value::Object(out))
        }
    }
}

/// Query-string parameters; a value of the wrong type, or holding U+0000 (`%00`), is 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> AppResult<Self> {
        if parts.uri.query().is_some_and(|query| query.contains("%00")) {
            return Err(AppError::BadRequest("the query string must not contain the NUL character (%00)".into()));
        }
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| AppError::BadRequest(rejection.body_text()))
    }
}

/// An optional ISO 8601 query parameter as unix milliseconds; 400 naming it when malformed.
pub fn iso_instant(name: &str, value: Option<&String>) -> AppResult<Option<i64>> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v).map(|t| t.timestamp_millis()).map_err(|_| {
                AppError::BadRequest(format!(
                    "{name} must be an ISO 8601 date-time such as 2026-04-08T10:30:00Z, got {v:?}"
                ))
            })
        })
        .transpose()
}

/// Largest `page_size` a list accepts.
pub const MAX_PAGE_SIZE: u32 = 200;
const DEFAULT_PAGE_SIZE: u32 = 50;

/// The pagination query parameters every list takes (documentation form).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page number, from 1 (default 1).
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// Rows per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub page_size: Option<u32>,
}

/// The page a list request asks for. Out-of-range values are 400.
#[derive(Debug, Clone, Copy)]
pub struct Pagination {
    pub page: u32,
    pub page_size: u32,
}

impl<S: Send + Sync> FromRequestParts<S> for Pagination {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> AppResult<Self> {
        #[derive(Deserialize)]
        struct Raw {
            page: Option<String>,
            page_size: Option<String>,
        }
        let ApiQuery(raw) = ApiQuery::<Raw>::from_request_parts(parts, state).await?;
        let number = |value: Option<String>, name: &str, default: u32, max: u32| -> AppResult<u32> {
            let Some(value) = value else { return Ok(default) };
            value.parse::<u32>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
                AppError::BadRequest(format!("{name} must be an integer from 1 to {max}, got {value:?}"))
            })
        };
        Ok(Self {
            page: number(raw.page, "page", 1, u32::MAX / MAX_PAGE_SIZE)?,
            page_size: number(raw.page_size, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?,
        })
    }
}

impl Pagination {
    /// The store's view of this page.
    pub fn page(&self) -> Page {
        Page { limit: i64::from(self.page_size), offset: (i64::from(self.page) - 1) * i64::from(self.page_size) }
    }

    /// Wraps one page of rows in the list envelope.
    pub fn envelope<T>(&self, data: Vec<T>, total: i64) -> Paginated<T> {
        let size = i64::from(self.page_size);
        Paginated {
            data,
            pagination: PageInfo {
                page: self.page,
                page_size: self.page_size,
                total,
                total_pages: (total + size - 1) / size,
            },
        }
    }
}

/// The envelope of every list answer.
#[derive(Serialize, ToSchema)]
pub struct Paginated<T> {
    pub data: Vec<T>,
    pub pagination: PageInfo,
}

/// Where a list page sits in the whole.
#[derive(Serialize, ToSchema)]
pub struct PageInfo {
    pub page: u32,
    pub page_size: u32,
    pub total: i64,
    pub total_pages: i64,
}

/// Every body parser against nesting up to ten thousand levels and arbitrary bytes: a body
/// within [`nesting::MAX_VALUE_DEPTH`] parses, a deeper one is a 400 naming the bound, and none
/// recurses past it (a stack overflow would abort this test process, and CI with it).
#[cfg(test)]
mod nesting_properties {
    use dibop_core::nesting::MAX_VALUE_DEPTH;
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    /// `depth` arrays and objects around a scalar, in JSON (or YAML flow) text.
    fn nested_text(depth: usize, yaml: bool) -> String {
        let mut text = String::from("1");
        for level in 0..depth {
            text = if level % 2 == 0 {
                format!("[{text}]")
            } else if yaml {
                format!("{{a: {text}}}")
            } else {
                format!("{{\"a\":{text}}}")
            };
        }
        text
    }

    fn refused_for_depth(result: AppResult<Value>) -> bool {
        matches!(result, Err(AppError::BadRequest(message)) if message.contains("deeper than 100 levels"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn json_bodies(depth in 0usize..10_000) {
            let parsed = parse_json::<Value>(nested_text(depth, false).as_bytes());
            if depth <= MAX_VALUE_DEPTH {
                prop_assert!(parsed.is_ok());
            } else {
                prop_assert!(refused_for_depth(parsed));
            }
        }

        #[test]
        fn yaml_bodies(depth in 0usize..10_000, block in 0usize..300) {
            let parsed = yaml_value(nested_text(depth, true).as_bytes());
            if depth <= MAX_VALUE_DEPTH {
                prop_assert!(parsed.is_ok());
            } else {
                prop_assert!(refused_for_depth(parsed));
            }
            // Block style: each level one more indentation.
            let text: String = (0..block).map(|i| format!("{}a:\n", "  ".repeat(i))).collect::<String>()
                + &"  ".repeat(block) + "b: 1\n";
            let parsed = yaml_value(text.as_bytes());
            if block < MAX_VALUE_DEPTH {
                prop_assert!(parsed.is_ok());
            } else {
                prop_assert!(refused_for_depth(parsed));
            }
        }

        #[test]
        fn yaml_aliases_count_their_depth(depth in 1usize..60) {
            // A sequence nested `depth` deep, anchored, then used `depth` deep: the expanded
            // document (a mapping around both) is `1 + 2 * depth` deep.
            let anchored = format!("&x {}1{}", "[".repeat(depth), "]".repeat(depth));
            let text = format!("a: {anchored}\nb: {}*x{}\n", "[".repeat(depth), "]".repeat(depth));
            let parsed = yaml_value(text.as_bytes());
            prop_assert_eq!(parsed.is_ok(), 2 * depth < MAX_VALUE_DEPTH);
        }

        #[test]
        fn xml_bodies(depth in 0usize..10_000) {
            let text = format!("{}x{}", "<a>".repeat(depth.max(1)), "</a>".repeat(depth.max(1)));
            let parsed = parse_xml(text.as_bytes());
            prop_assert_eq!(parsed.is_ok(), depth <= dibop_xml::MAX_DEPTH);
        }

        #[test]
        fn any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048), text in "[\\[\\]{}<>a:\"/ ,&*-]{0,400}") {
            for input in [&bytes[..], text.as_bytes()] {
                let _ = parse_json::<Value>(input);
                let _ = yaml_value(input);
                let _ = parse_xml(input);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        inner: Inner,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    #[test]
    fn malformed_json_is_bad_request_and_wrong_shape_names_the_field() {
        assert!(matches!(parse_json::<Body>(b"{\"email\": "), Err(AppError::BadRequest(_))));
        let Err(AppError::Validation(details)) = parse_json::<Body>(br#"{"email":"a","inner":{"n":"x"}}"#) else {
            panic!("expected a validation error")
        };
        assert_eq!(details[0].path, "inner.n");
        let Err(AppError::Validation(details)) = parse_json::<Body>(br#"{"inner":{"n":1}}"#) else {
            panic!("expected a validation error")
        };
        assert_eq!(details[0].path, "email");
        assert!(matches!(parse_json::<Body>(br#"{"email":"a","inner":{"n":1}} x"#), Err(AppError::BadRequest(_))));
    }
}
