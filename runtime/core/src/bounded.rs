//! Bounds for text we store or answer: anything a tenant or a plugin produced is cut to a
//! documented size, on a character boundary, with a marker saying how much was left out.

use std::borrow::Cow;

/// `text` cut to at most `max_bytes` bytes (plus the marker), never inside a character.
pub fn clip(text: &str, max_bytes: usize) -> Cow<'_, str> {
    if text.len() <= max_bytes {
        return Cow::Borrowed(text);
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}...[truncated {} bytes]", &text[..end], text.len() - end))
}

/// How many bytes `value` takes as JSON text (as `to_string` writes it), counted without
/// building the text: a bound is checked before a large value is serialized to be kept.
pub fn json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to `Count` cannot fail, nor can serializing a `Value`.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Like [`clip`], in place.
pub fn clip_in_place(text: &mut String, max_bytes: usize) {
    if text.len() > max_bytes {
        *text = clip(text, max_bytes).into_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_len_is_the_length_of_the_text() {
        for value in [serde_json::json!(null), serde_json::json!({"a": [1, "é\n\"", {"b": 2.5}], "c": ""})] {
            assert_eq!(json_len(&value), value.to_string().len(), "{value}");
        }
    }

    #[test]
    fn cuts_on_a_character_boundary_with_a_marker() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééé", 3), "é...[truncated 4 bytes]");
        let mut owned = "x".repeat(20);
        clip_in_place(&mut owned, 5);
        assert_eq!(owned, "xxxxx...[truncated 15 bytes]");
    }
}
