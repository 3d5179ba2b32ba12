//! Redaction of what a plugin call leaves behind (API-call URLs, previews and headers, log
//! lines, stdout/stderr, error messages): the connection's credential values in every encoding a
//! connector may send them in, `Basic`/`Bearer` credentials, and OAuth token fields whatever
//! their value.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// Fields whose values are credentials in any JSON or form body, known to the connection or not.
const TOKEN_FIELDS: [&str; 6] =
    ["access_token", "refresh_token", "id_token", "client_secret", "password", "client_assertion"];

/// Parts of the names of headers, query parameters and fields whose values are credentials.
const SENSITIVE_NAMES: [&str; 9] =
    ["key", "token", "secret", "password", "signature", "auth", "credential", "cookie", "session"];

/// Whether a header, query parameter or field named `name` holds a credential
/// (`Authorization`, `X-Api-Key`, `Cookie`, `access_token`, ...).
pub fn is_sensitive_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SENSITIVE_NAMES.iter().any(|s| name.contains(s))
}

/// Replaces credential values with `****`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Every form of every secret, longest first (so a secret containing another goes whole).
    forms: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut forms = Vec::new();
        for secret in secrets.into_iter().filter(|s| s.len() >= 3) {
            forms.push(percent_encode(&secret, false));
            forms.push(percent_encode(&secret, true));
            // Every byte encoded (legal for unreserved characters too).
            forms.push(secret.bytes().map(|b| format!("%{b:02X}")).collect());
            forms.push(secret.bytes().map(|b| format!("%{b:02x}")).collect());
            forms.push(secret.replace(' ', "+"));
            for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
                forms.push(engine.encode(secret.as_bytes()));
            }
            if let Ok(quoted) = serde_json::to_string(&secret) {
                forms.push(quoted.trim_matches('"').to_owned());
            }
            // As XML or HTML text or attribute.
            forms.push(
                secret
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('"', "&quot;")
                    .replace('\'', "&apos;"),
            );
            forms.push(secret);
        }
        forms.retain(|f| f.len() >= 3);
        forms.sort_by_key(|s| std::cmp::Reverse(s.len()));
        forms.dedup();
        Self { forms }
    }

    /// Itself and the forms of `more` secrets (a token obtained during the call).
    pub fn with(&self, more: impl IntoIterator<Item = String>) -> Self {
        let mut forms = self.forms.clone();
        forms.extend(Self::new(more).forms);
        forms.sort_by_key(|s| std::cmp::Reverse(s.len()));
        forms.dedup();
        Self { forms }
    }

    /// The known secrets in every string of `value`, keys included, replaced by value: a
    /// plugin's answer that echoes one (an upstream body read as text, XML or JSON) shows `****`
    /// instead. Only the values: an answer is data, and `Bearer` or `password=` in it that is no
    /// known secret stays as it is.
    pub fn redact_value(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        if self.forms.is_empty() {
            return;
        }
        let mut pending = vec![value];
        while let Some(value) = pending.pop() {
            match value {
                Value::String(text) => {
                    if let Some(redacted) = self.replace_forms(text) {
                        *text = redacted;
                    }
                }
                Value::Array(items) => pending.extend(items.iter_mut()),
                Value::Object(fields) => {
                    if fields.keys().any(|k| self.replace_forms(k).is_some()) {
                        *fields = std::mem::take(fields)
                            .into_iter()
                            .map(|(k, v)| (self.replace_forms(&k).unwrap_or(k), v))
                            .collect();
                    }
                    pending.extend(fields.values_mut());
                }
                _ => {}
            }
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let text = self.replace_forms(text).unwrap_or_else(|| text.to_owned());
        let text = redact_schemes(&text);
        redact_token_fields(&text)
    }

    /// `text` with every form of every secret replaced, if it holds one.
    fn replace_forms(&self, text: &str) -> Option<String> {
        let mut replaced: Option<String> = None;
        for form in &self.forms {
            let current = replaced.as_deref().unwrap_or(text);
            if current.contains(form.as_str()) {
                replaced = Some(current.replace(form.as_str(), "****"));
            }
        }
        replaced
    }
}

/// Percent-encoding of everything but RFC 3986 unreserved characters, upper- or lowercase hex.
fn percent_encode(text: &str, lower: bool) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else if lower {
            out.push_str(&format!("%{byte:02x}"));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `Basic <credentials>` and `Bearer <token>` with the credential part replaced.
fn redact_schemes(text: &str) -> String {
    let mut out = text.to_owned();
    for scheme in ["Basic ", "Bearer ", "basic ", "bearer "] {
        let mut from = 0;
        while let Some(at) = out[from..].find(scheme).map(|i| i + from) {
            let start = at + scheme.len();
            let end = out[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || "-._~+/=".contains(c)))
                .map_or(out.len(), |i| i + start);
            if end > start && &out[start..end] != "****" {
                out.replace_range(start..end, "****");
            }
            from = start;
        }
    }
    out
}

/// The values of [`TOKEN_FIELDS`] in JSON (`"access_token": "..."`) and form (`access_token=...`)
/// text replaced, also in text cut short (a preview).
fn redact_token_fields(text: &str) -> String {
    let mut out = text.to_owned();
    for field in TOKEN_FIELDS {
        // JSON: "field" : "value"
        let quoted = format!("\"{field}\"");
        let mut from = 0;
        while let Some(at) = out[from..].find(&quoted).map(|i| i + from) {
            let mut i = at + quoted.len();
            let rest = &out[i..];
            let skipped = rest.len() - rest.trim_start().len();
            i += skipped;
            if !out[i..].starts_with(':') {
                from = i;
                continue;
            }
            i += 1;
            let rest = &out[i..];
            i += rest.len() - rest.trim_start().len();
            if !out[i..].starts_with('"') {
                from = i;
                continue;
            }
            let start = i + 1;
            let mut end = out.len();
            let mut escaped = false;
            for (offset, c) in out[start..].char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = start + offset;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            if &out[start..end] != "****" {
                out.replace_range(start..end, "****");
            }
            from = start;
        }
        // Form: field=value (up to & or whitespace)
        let key = format!("{field}=");
        let mut from = 0;
        while let Some(at) = out[from..].find(&key).map(|i| i + from) {
            let boundary = at == 0 || out[..at].ends_with(['&', '?', ' ', '\n', ';']);
            let start = at + key.len();
            if boundary {
                let end = out[start..].find(['&', ' ', '\n', '\r', '"']).map_or(out.len(), |i| i + start);
                if end > start && &out[start..end] != "****" {
                    out.replace_range(start..end, "****");
                }
            }
            from = start;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_every_encoding() {
        let r = Redactor::new(["p@ss w/rd+1".to_owned()]);
        for text in [
            "key=p@ss w/rd+1",
            "key=p%40ss%20w%2Frd%2B1",
            "key=p%40ss%20w%2frd%2b1",
            "key=p@ss+w/rd+1",
            &format!("x={}", STANDARD.encode("p@ss w/rd+1")),
            &format!("x={}", URL_SAFE_NO_PAD.encode("p@ss w/rd+1")),
        ] {
            assert!(!r.redact(text).contains("rd"), "{text} -> {}", r.redact(text));
        }
        assert_eq!(r.redact("Authorization: Basic dXNlcjpwYXNz"), "Authorization: Basic ****");
        assert_eq!(r.redact("Bearer eyJhbGciOi.x-y_z"), "Bearer ****");
    }

    #[test]
    fn values_are_redacted_in_every_string_and_key_and_in_xml_text() {
        let r = Redactor::new(["k&y-123".to_owned()]).with(["tok-live-9".to_owned()]);
        let mut value = serde_json::json!({
            "text": "echo: tok-live-9", "k&amp;y-123": [{"x": "<key>k&amp;y-123</key>"}], "n": 3
        });
        r.redact_value(&mut value);
        assert_eq!(value, serde_json::json!({"text": "echo: ****", "****": [{"x": "<key>****</key>"}], "n": 3}));
        // Data that only looks like a credential is left alone in an answer.
        let mut data = serde_json::json!({"note": "Bearer abc; password=x"});
        r.redact_value(&mut data);
        assert_eq!(data["note"], "Bearer abc; password=x");
    }

    #[test]
    fn token_fields_are_redacted_whatever_their_value() {
        let r = Redactor::default();
        assert_eq!(
            r.redact(r#"{"access_token": "abc\"def", "expires_in": 3600, "refresh_token":"r1"}"#),
            r#"{"access_token": "****", "expires_in": 3600, "refresh_token":"****"}"#
        );
        assert_eq!(
            r.redact("grant_type=client_credentials&client_id=me&client_secret=s3cr%3Dt"),
            "grant_type=client_credentials&client_id=me&client_secret=****"
        );
        // A preview cut inside the value.
        assert_eq!(r.redact(r#"{"id_token":"eyJ0eXAi"#), r#"{"id_token":"****"#);
        assert_eq!(r.redact("my_password=x"), "my_password=x");
    }
}
