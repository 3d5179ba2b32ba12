//! `transform`: a transform plugin run over the mapped input.

use std::time::Duration;

use serde_json::Value;

use dibop_core::{World, now_ms};

use super::retry::{Failure, Retrier};
use super::*;
use crate::Engine;
use crate::definition::Step;
use dibop_plugin_host::{CallSpec, Loaded};
use dibop_store::ExecutionRow;

pub(crate) async fn run_transform(
    engine: &Engine,
    execution: &ExecutionRow,
    step: &Step,
    slug: &str,
    input: Value,
    params: Value,
) -> StepOutcome {
    let loaded = match engine.registry.resolve(&execution.enterprise_id, World::Transform, slug).await {
        Ok(Some(row)) => engine.registry.loaded(&row).await,
        Ok(None) => Err(anyhow::anyhow!("no transform plugin {slug:?}")),
        Err(e) => Err(e.into()),
    };
    let pre = match loaded {
        Ok(Loaded::Transform(pre)) => pre,
        Ok(Loaded::Connector(_)) => {
            return StepOutcome::failed(None, Some(input), format!("{slug} is not a transform"), 0);
        }
        Err(e) => return StepOutcome::failed(None, Some(input), format!("{e:#}"), 0),
    };
    let mut spec = CallSpec { plugin: slug.to_owned(), ..CallSpec::default() };
    spec.origin.enterprise_id = execution.enterprise_id.clone();
    if let Some(ms) = step.timeout_ms {
        spec.limits.timeout = Duration::from_millis(ms);
    }
    let mut retrier = Retrier::new(step, engine.node.signal(&execution.id));
    let mut trace = Trace::default();
    let result = loop {
        let started_ms = now_ms();
        let report = engine.plugins().run_transform(&pre, &spec, &input, &params).await;
        trace.record(retrier.attempt, started_ms, &report, None);
        match report.result {
            Err(e) if retrier.again(&Failure::of(&e, &[]), None).await => continue,
            result => break result,
        }
    };
    StepOutcome::finish(result, None, input, trace)
}
