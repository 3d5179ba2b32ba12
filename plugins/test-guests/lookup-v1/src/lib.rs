//! TEST ONLY: version 1.0.0 of the `lookup` connector (see `../lookup.rs`).
const VERSION: &str = "1.0.0";
const EXTRA: bool = false;
include!("../../lookup.rs");
