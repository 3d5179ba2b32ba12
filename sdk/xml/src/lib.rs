//! XML documents as JSON, by one rule that the runtime (webhook bodies) and the guest SDK (the
//! `rest` connector's answers) share:
//!
//! - The document is an object with one member, the root element's name:
//!   `<adf>...</adf>` is `{"adf": ...}`.
//! - An element without attributes or child elements is its text (entities decoded, CDATA
//!   included, leading and trailing whitespace trimmed), or `null` when that is empty.
//! - Any other element is an object: each attribute as `"@name": "value"`, each child element
//!   under its name, and its own text, if any besides whitespace, as `"#text"`.
//! - A child name that occurs once is a single value; one that repeats is an array of its
//!   values in document order (so one `<vehicle>` is an object, two are an array).
//! - Names are kept as written, namespace prefixes included (`<star:BOD>` is `"star:BOD"`,
//!   `xmlns` declarations are attributes). Every value is a string: XML has no types.
//! - The declaration, processing instructions, comments and the DOCTYPE are skipped; entities
//!   a DOCTYPE declares are never expanded (a reference to one is an error), so neither
//!   external entities nor entity bombs are read.
//!
//! Bounds: at most [`MAX_DEPTH`] nested elements and [`MAX_NODES`] elements and attributes;
//! the caller bounds the size of the input.
//!
//! ```
//! let json = dibop_xml::to_json(br#"<adf><prospect status="new"><id source="web">42</id>
//!   <vehicle><year>2021</year></vehicle><vehicle><year>2023</year></vehicle></prospect></adf>"#).unwrap();
//! assert_eq!(json, serde_json::json!({"adf": {"prospect": {"@status": "new",
//!     "id": {"@source": "web", "#text": "42"},
//!     "vehicle": [{"year": "2021"}, {"year": "2023"}]}}}));
//! ```

use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

/// Most elements open inside each other.
pub const MAX_DEPTH: usize = 64;
/// Most elements and attributes in one document.
pub const MAX_NODES: usize = 100_000;
/// Most attributes of one element.
pub const MAX_ATTRIBUTES: usize = 256;

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError(pub String);

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid XML: {}", self.0)
    }
}

impl std::error::Error for XmlError {}

/// One open element.
struct Frame {
    name: String,
    fields: Map<String, Value>,
    /// Whether `fields` holds child elements or attributes (an element with either is an object).
    structured: bool,
    text: String,
}

impl Frame {
    fn value(self) -> Value {
        let text = self.text.trim();
        if !self.structured {
            return if text.is_empty() { Value::Null } else { Value::String(text.to_owned()) };
        }
        let mut fields = self.fields;
        if !text.is_empty() {
            fields.insert("#text".into(), Value::String(text.to_owned()));
        }
        Value::Object(fields)
    }
}

/// Adds a child's value under `name`, turning a repeated name into an array.
fn add(fields: &mut Map<String, Value>, name: String, value: Value) {
    match fields.get_mut(&name) {
        None => {
            fields.insert(name, value);
        }
        // Arrays under a name are only made here (the values themselves are strings, nulls or
        // objects), so an array is a run of repeats.
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
    }
}

fn text_of(bytes: &[u8]) -> Result<String, XmlError> {
    std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| XmlError("the document is not UTF-8".into()))
}

fn open(start: &BytesStart<'_>, nodes: &mut usize) -> Result<Frame, XmlError> {
    let name = text_of(start.name().as_ref())?;
    let mut fields = Map::new();
    // quick-xml's own duplicate check compares each attribute with every earlier one (quadratic
    // in the attributes of an element); the map finds a repeat in logarithmic time instead.
    for (count, attribute) in start.attributes().with_checks(false).enumerate() {
        if count >= MAX_ATTRIBUTES {
            return Err(XmlError(format!("element <{name}> has more than {MAX_ATTRIBUTES} attributes")));
        }
        let attribute = attribute.map_err(|e| XmlError(e.to_string()))?;
        *nodes += 1;
        let key = format!("@{}", text_of(attribute.key.as_ref())?);
        let value = attribute.unescape_value().map_err(|e| XmlError(e.to_string()))?;
        if fields.insert(key, Value::String(value.into_owned())).is_some() {
            let key = text_of(attribute.key.as_ref())?;
            return Err(XmlError(format!("element <{name}> repeats the attribute {key}")));
        }
    }
    let structured = !fields.is_empty();
    Ok(Frame { name, fields, structured, text: String::new() })
}

/// Reads a whole document as JSON by the rule of the crate documentation.
pub fn to_json(xml: &[u8]) -> Result<Value, XmlError> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Value> = None;
    let mut nodes = 0usize;
    loop {
        let event = reader.read_event().map_err(|e| XmlError(format!("{e} at byte {}", reader.buffer_position())))?;
        let element = match event {
            Event::Start(start) => {
                nodes += 1;
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError(format!("elements nest deeper than {MAX_DEPTH}")));
                }
                stack.push(open(&start, &mut nodes)?);
                None
            }
            Event::Empty(start) => {
                nodes += 1;
                Some(open(&start, &mut nodes)?)
            }
            Event::End(_) => stack.pop(),
            Event::Text(text) => {
                let text = text.unescape().map_err(|e| XmlError(e.to_string()))?;
                match stack.last_mut() {
                    Some(frame) => frame.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(XmlError("text outside the root element".into())),
                }
                None
            }
            Event::CData(data) => {
                let text = text_of(&data.into_inner())?;
                stack.last_mut().ok_or_else(|| XmlError("CDATA outside the root element".into()))?.text.push_str(&text);
                None
            }
            Event::Eof => break,
            // Declaration, processing instructions, comments, DOCTYPE.
            _ => None,
        };
        if nodes > MAX_NODES {
            return Err(XmlError(format!("more than {MAX_NODES} elements and attributes")));
        }
        if let Some(frame) = element {
            let name = frame.name.clone();
            let value = frame.value();
            match stack.last_mut() {
                Some(parent) => {
                    parent.structured = true;
                    add(&mut parent.fields, name, value);
                }
                None if root.is_none() => {
                    let mut document = Map::new();
                    document.insert(name, value);
                    root = Some(Value::Object(document));
                }
                None => return Err(XmlError("more than one root element".into())),
            }
        }
    }
    if !stack.is_empty() {
        return Err(XmlError(format!("element <{}> is not closed", stack[stack.len() - 1].name)));
    }
    root.ok_or_else(|| XmlError("no root element".into()))
}

/// `text` escaped for XML content or an attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether a `Content-Type` names XML (`application/xml`, `text/xml`, `application/*+xml`).
pub fn is_xml(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/xml" || essence == "text/xml" || essence.ends_with("+xml")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn elements_attributes_repeats_and_text() {
        let xml = br#"<?xml version="1.0"?><?ADF VERSION "1.0"?>
            <!-- a lead -->
            <adf><prospect><requestdate>2026-11-30T10:00:00</requestdate>
              <customer><contact primarycontact="1"><name part="first">Ana</name><name part="last">Silva &amp; Co</name>
                <email/><phone type="voice"><![CDATA[+1 <555>]]></phone></contact></customer>
              <comments>  </comments></prospect></adf>"#;
        assert_eq!(
            to_json(xml).expect("reads"),
            json!({"adf": {"prospect": {
                "requestdate": "2026-11-30T10:00:00",
                "customer": {"contact": {"@primarycontact": "1",
                    "name": [{"@part": "first", "#text": "Ana"}, {"@part": "last", "#text": "Silva & Co"}],
                    "email": null, "phone": {"@type": "voice", "#text": "+1 <555>"}}},
                "comments": null}}})
        );
        let star = br#"<star:ProcessSalesLead xmlns:star="http://www.starstandard.org/STAR/5"><star:ApplicationArea>x</star:ApplicationArea></star:ProcessSalesLead>"#;
        let json = to_json(star).expect("reads");
        assert_eq!(json["star:ProcessSalesLead"]["star:ApplicationArea"], "x");
        assert_eq!(json["star:ProcessSalesLead"]["@xmlns:star"], "http://www.starstandard.org/STAR/5");
        assert_eq!(to_json(b"<a>x<b>1</b>y</a>").expect("mixed"), json!({"a": {"b": "1", "#text": "xy"}}));
    }

    #[test]
    fn bad_and_hostile_documents_are_refused() {
        for bad in [&b""[..], b"<a>", b"<a></b>", b"<a/><b/>", b"text", b"<a>&unknown;</a>", b"\xff<a/>"] {
            assert!(to_json(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let bomb = br#"<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        assert!(to_json(bomb).is_err(), "declared entities are not expanded");
        let external = br#"<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><x>&xxe;</x>"#;
        assert!(to_json(external).is_err());
        let deep = format!("{}{}", "<a>".repeat(MAX_DEPTH + 1), "</a>".repeat(MAX_DEPTH + 1));
        assert!(to_json(deep.as_bytes()).is_err());
        let many = format!("<a>{}</a>", "<b/>".repeat(MAX_NODES + 1));
        assert!(to_json(many.as_bytes()).is_err());
    }

    #[test]
    fn attributes_are_unique_and_bounded_per_element() {
        let err = to_json(br#"<a x="1" y="2" x="3"/>"#).expect_err("a repeat");
        assert!(err.0.contains("repeats the attribute x"), "{err}");
        let attributes = |n: usize| (0..n).map(|i| format!(" a{i}=\"{i}\"")).collect::<String>();
        let most = format!("<a{}/>", attributes(MAX_ATTRIBUTES));
        assert_eq!(to_json(most.as_bytes()).expect("reads")["a"]["@a255"], "255");
        // The document of the report: 37,000 attributes on one element, refused at the bound.
        let flood = format!("<a{}/>", attributes(37_000));
        let err = to_json(flood.as_bytes()).expect_err("too many");
        assert!(err.0.contains("more than 256 attributes"), "{err}");
        // Many attributes spread over many elements are read (each element's are checked by map).
        let spread = format!("<r>{}</r>", format!("<e{}/>", attributes(200)).repeat(150));
        assert_eq!(to_json(spread.as_bytes()).expect("reads")["r"]["e"].as_array().map(Vec::len), Some(150));
    }

    #[test]
    fn escaping_and_content_types() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &apos;Jerry&apos;&lt;/a&gt;"
        );
        assert!(is_xml("application/xml; charset=utf-8") && is_xml("text/xml") && is_xml("application/soap+xml"));
        assert!(!is_xml("application/json") && !is_xml("text/html"));
    }
}
