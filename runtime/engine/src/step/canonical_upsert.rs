//! `canonical_upsert`: the mapped record written to its canonical domain.

use serde_json::{Value, json};

use super::*;
use crate::Engine;
use crate::definition::{self, Definition, Step};
use dibop_store::ExecutionRow;

/// Writes the mapped record to its canonical domain by natural key, with the execution as lineage.
pub(crate) async fn canonical_upsert(
    engine: &Engine,
    execution: &ExecutionRow,
    step: &Step,
    record: Value,
) -> StepOutcome {
    let name = step.domain.clone().unwrap_or_default();
    let Some(domain) = crate::canonical::domain(&name) else {
        return StepOutcome::failed(None, Some(record), format!("{name:?} is not a canonical domain"), 1);
    };
    let errors = domain.validate(&record);
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
        return StepOutcome::failed(None, Some(record), format!("invalid {name} record: {}", list.join("; ")), 1);
    }
    let Some(key) = domain.key_of(&record) else {
        return StepOutcome::failed(None, Some(record), format!("the record has no {}", domain.natural_key), 1);
    };
    let (connection, system) = match &step.source {
        Some(source) => source_connection(engine, execution, source).await.unzip(),
        None => (None, None),
    };
    let lineage = dibop_store::Lineage {
        kind: "execution",
        execution_id: Some(execution.id.clone()),
        connection,
        system,
        created_by: None,
    };
    match engine.store.upsert_canonical(&execution.enterprise_id, &name, &key, &record.to_string(), lineage).await {
        Ok(row) => StepOutcome {
            input: Some(record),
            ..StepOutcome::success(json!({"id": row.id, "domain": name, "natural_key": key}))
        },
        Err(e) => StepOutcome::failed(None, Some(record), format!("storing the {name} record: {e}"), 1),
    }
}

/// The (connection name, system) of the `api_call` step named `source` in the execution's
/// orchestration version.
async fn source_connection(engine: &Engine, execution: &ExecutionRow, source: &str) -> Option<(String, String)> {
    let text = engine
        .store
        .orchestration_version(&execution.orchestration_id, execution.orchestration_version)
        .await
        .ok()
        .flatten()?;
    let def: Definition = serde_json::from_str(&text).ok()?;
    let connection = definition::find_step(&def.steps, source)?.connection.clone()?;
    let row = engine.store.find_connection(&execution.enterprise_id, &connection).await.ok().flatten()?;
    Some((row.name, row.system))
}
