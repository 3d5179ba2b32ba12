//! TEST ONLY: version 1.0.0 of the `lookup` connector (see `../lookup.rs`).
const VERSION: &str = "1.0.0";
const EXTRA: bool = false;
const HOSTS: &[&str] = &["lookup.example", "*.lookup.example"];
include!("../../lookup.rs");
