//! The `config` import: the connection's non-secret configuration.

use super::State;
use crate::bindings::config;

impl config::Host for State {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.call.config.get(&key).map(serde_json::Value::to_string))
    }

    async fn all(&mut self) -> wasmtime::Result<String> {
        Ok(serde_json::Value::Object(self.call.config.clone()).to_string())
    }
}
