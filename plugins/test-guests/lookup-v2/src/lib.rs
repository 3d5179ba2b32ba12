//! TEST ONLY: version 2.0.0 of the `lookup` connector (see `../lookup.rs`).
const VERSION: &str = "2.0.0";
const EXTRA: bool = true;
include!("../../lookup.rs");
