//! The credentials of the connection a call runs under.
//!
//! Values are decrypted for the current call only. Never log them, never put them in an
//! error message or an output: send them upstream and forget them. Only connectors have
//! credentials: a transform that calls this fails to load.
//!
//! ```no_run
//! use dibop_sdk::{http, secrets};
//!
//! let mut request = http::Request::get("https://api.example.com/v1/items");
//! if let Some(key) = secrets::get("api_key") {
//!     request = request.header("X-Api-Key", key);
//! }
//! ```

use crate::wit::connector::dibop::plugin::secrets as wit_secrets;

/// One credential, or `None` when the connection has no such credential (or it is empty).
pub fn get(name: &str) -> Option<String> {
    wit_secrets::get(name).filter(|value| !value.is_empty())
}
