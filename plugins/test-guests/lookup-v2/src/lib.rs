//! TEST ONLY: version 2.0.0 of the `lookup` connector (see `../lookup.rs`).
const VERSION: &str = "2.0.0";
const EXTRA: bool = true;
// One host more than version 1: an upload of it waits for an admin's approval.
const HOSTS: &[&str] = &["lookup.example", "*.lookup.example", "more.example"];
include!("../../lookup.rs");
