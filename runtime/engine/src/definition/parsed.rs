//! Parsed definitions of orchestration versions, kept per node. A version's definition never
//! changes (every save of an orchestration makes a new version), so what one node or another
//! stored under an orchestration id and version parses to the same definition everywhere, and
//! is parsed once per node instead of at every admission and every run.

use std::sync::{Arc, Mutex};

use hashlink::LruCache;

use super::Definition;

/// Versions kept (least recently used dropped first). A definition is at most the API's body
/// limit as JSON (2 MiB by default) and usually a few KiB, so the cache holds a few MiB.
pub const KEPT_VERSIONS: usize = 512;

/// The parsed definitions of the versions used last, by orchestration id and version.
pub struct Parsed(Mutex<LruCache<(String, i64), Arc<Definition>>>);

impl Default for Parsed {
    fn default() -> Self {
        Self(Mutex::new(LruCache::new(KEPT_VERSIONS)))
    }
}

impl Parsed {
    /// The definition of `version` of orchestration `id`, if this node parsed it lately.
    pub fn get(&self, id: &str, version: i64) -> Option<Arc<Definition>> {
        self.0.lock().ok()?.get(&(id.to_owned(), version)).cloned()
    }

    /// The definition of `version` of orchestration `id`, whose stored text is `text`: kept
    /// from an earlier parse, or parsed now and kept.
    pub fn of(&self, id: &str, version: i64, text: &str) -> serde_json::Result<Arc<Definition>> {
        if let Some(definition) = self.get(id, version) {
            return Ok(definition);
        }
        let definition = Arc::new(serde_json::from_str::<Definition>(text)?);
        if let Ok(mut kept) = self.0.lock() {
            kept.insert((id.to_owned(), version), definition.clone());
        }
        Ok(definition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_STEP: &str =
        r#"{"name": "A", "steps": [{"name": "s", "type": "transform", "transform": "map", "mapping": {}}]}"#;

    #[test]
    fn a_version_is_parsed_once_and_kept_by_id_and_version() {
        let parsed = Parsed::default();
        let first = parsed.of("o-1", 1, ONE_STEP).expect("parses");
        // Kept: the text is not read again (a version's text never changes).
        let again = parsed.of("o-1", 1, "not even JSON").expect("kept");
        assert!(Arc::ptr_eq(&first, &again));
        assert!(parsed.get("o-1", 2).is_none() && parsed.get("o-2", 1).is_none());
        assert!(parsed.of("o-1", 2, "not even JSON").is_err(), "another version is parsed from its own text");
        assert!(parsed.get("o-1", 2).is_none(), "a text that does not parse is not kept");
    }

    #[test]
    fn the_least_recently_used_version_goes_first() {
        let parsed = Parsed::default();
        for version in 0..=KEPT_VERSIONS as i64 {
            parsed.of("o", version, ONE_STEP).expect("parses");
        }
        assert!(parsed.get("o", 0).is_none());
        assert!(parsed.get("o", KEPT_VERSIONS as i64).is_some());
    }
}
