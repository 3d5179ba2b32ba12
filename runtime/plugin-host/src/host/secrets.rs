//! The `secrets` import: the connection's decrypted credentials, by name.

use super::State;
use crate::bindings::secrets;

impl secrets::Host for State {
    async fn get(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.call.secrets.get(&name).cloned())
    }
}
