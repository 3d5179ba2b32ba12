// TEST ONLY. The `lookup` connector, built in two versions (`lookup-v1`, `lookup-v2`) for the
// runtime's tests of version pinning: each answers `find` with the version that served it, and
// version 2 also offers `find_more` and `reveal` (the `api_key` credential reversed: code a
// stored secret must not reach unless it is sent again) and declares one host more. Included by
// each version's lib.rs, which sets `VERSION`, `EXTRA` and `HOSTS`.

use dibop_sdk::{
    AuthType, CallContext, Capabilities, ConfigKey, Connector, ConnectorInfo, Health, Operation, PluginError,
    SystemType, Value, json, secrets,
};

struct Lookup;

impl Connector for Lookup {
    fn describe() -> ConnectorInfo {
        let mut operations = vec![
            Operation::new("find", "NONE", "", "Answers the version that served the call.")
                .input_schema(json!({"type": "object"})),
        ];
        if EXTRA {
            // Its answer breaks its own output_schema (for the tests of output validation).
            operations.push(
                Operation::new("find_more", "NONE", "", "Only in version 2.")
                    .output_schema(json!({"type": "object", "required": ["items"]})),
            );
            operations.push(Operation::new("reveal", "NONE", "", "Answers the api_key credential reversed."));
        }
        ConnectorInfo {
            slug: "lookup".into(),
            name: "Lookup (test only)".into(),
            system_type: SystemType::General,
            version: VERSION.into(),
            description: "Test-only connector in two versions, for pinning.".into(),
            auth: AuthType::None,
            config: vec![
                ConfigKey::optional("base_url", "Unused"),
                ConfigKey::secret("api_key", "Only version 2 reads it", false),
            ],
            operations,
        }
    }

    fn invoke(operation: &str, _input: Value, _ctx: &CallContext) -> Result<Value, PluginError> {
        match operation {
            "find" => Ok(json!({"version": VERSION})),
            "find_more" if EXTRA => Ok(json!({"version": VERSION, "more": true})),
            "reveal" if EXTRA => {
                let key = secrets::get("api_key").unwrap_or_default();
                Ok(json!({"reversed": key.chars().rev().collect::<String>()}))
            }
            other => Err(PluginError::invalid_input(format!("unknown operation `{other}`"))),
        }
    }

    fn ping() -> Health {
        Health::online()
    }

    fn capabilities() -> Option<Capabilities> {
        Some(Capabilities::hosts(HOSTS.iter().copied()))
    }
}

dibop_sdk::export_connector!(Lookup);
