//! The values every layer of the DIBOP runtime speaks in: ids and time, roles, `window`
//! durations, slugs, e-mail addresses, execution and step statuses, field errors, and the
//! helpers every layer needs (sealing secrets, bounded text, digests, the panic guard).
//!
//! This crate is the bottom of the workspace: it depends on no other workspace crate, knows
//! nothing of HTTP, SQL or WebAssembly, and does no I/O beyond reading the clock and the
//! operating system's random numbers. Values are
//! parsed at the edge (a handler, a row, a plugin's answer) into these types, so code further in
//! holds a value that is known to be well-formed instead of a string to check again. Their
//! text and JSON forms are the ones the API and the database have always used.
//!
//! ```
//! use dibop_core::{ExecutionStatus, Slug, Window};
//!
//! let window = Window::parse("24h")?;
//! assert_eq!(window.as_millis(), 86_400_000);
//! assert!(Window::parse("24 hours").is_err());
//! assert_eq!(Slug::parse_enterprise("northside-motors")?.as_str(), "northside-motors");
//! assert!("partial".parse::<ExecutionStatus>()?.is_final());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With the feature `openapi`, the types the HTTP API documents implement `utoipa::ToSchema`.

#![deny(missing_docs)]

/// For [`kinds!`]'s serde impls in other crates.
#[doc(hidden)]
pub use serde;

pub mod bounded;
pub mod crypto;
mod digest;
mod email;
mod field;
pub mod guard;
mod ids;
mod kind;
pub mod nesting;
mod role;
mod slug;
mod status;
pub mod trace;
mod window;

pub use digest::sha256_hex;
pub use email::{Email, InvalidEmail, MAX_EMAIL_BYTES};
pub use field::{FieldError, Validator};
pub use ids::{new_id, now_ms};
pub use kind::{OrchestrationStatus, Severity, StepKind, TriggeredBy, World};
pub use role::Role;
pub use slug::{InvalidSlug, Slug};
pub use status::{ApiCallStatus, CircuitState, ExecutionStatus, PluginStatus, StepStatus, UnknownStatus, UserStatus};
pub use window::{InvalidWindow, Window};
