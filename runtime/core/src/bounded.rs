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
    fn cuts_on_a_character_boundary_with_a_marker() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééé", 3), "é...[truncated 4 bytes]");
        let mut owned = "x".repeat(20);
        clip_in_place(&mut owned, 5);
        assert_eq!(owned, "xxxxx...[truncated 15 bytes]");
    }
}
