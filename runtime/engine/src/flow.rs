//! What happens to each step of a block: condition branches, `when`, failures, `on_error` and
//! error handlers. The same rules drive the top level (whose results are committed) and the
//! bodies of `for_each` and `parallel` (kept in memory), and replay committed results on resume.

use dibop_core::{StepKind, StepStatus};
use serde_json::{Value, json};

use super::definition::{FlatStep, OnError, Step};
use super::mapping::{self, Lookup, Scope};

/// What to do with the step at hand.
pub enum Decision {
    Run,
    Skip,
    /// An error handler takes the failure; its output (`failed_step`, `error`) is given.
    Handle(Value),
    /// The block ends failed with this error.
    Fail(String),
}

/// The running state of one block.
pub struct Flow<'a> {
    /// What references resolve against: parameters, `_context`, finished steps (and `item`,
    /// `index` in a `for_each` body, over the scope of the block it runs in).
    pub scope: Scope<'a>,
    /// The step that succeeded last: its output (read from the scope, not kept twice) is the
    /// block's.
    last: Option<String>,
    /// A step failed with `on_error: continue`, or a handler recovered.
    pub partial: bool,
    /// The failed step and its error, until a handler takes it.
    failure: Option<(String, String)>,
    /// The handler whose steps are running: its name, whether it recovers, the error it handles.
    handling: Option<(&'a str, bool, String)>,
}

impl<'a> Flow<'a> {
    pub fn new(scope: Scope<'a>) -> Self {
        Self { scope, last: None, partial: false, failure: None, handling: None }
    }

    /// The output of the step that succeeded last (null when none did).
    pub fn last_output(&self) -> &Value {
        static NULL: Value = Value::Null;
        self.last.as_deref().and_then(|name| self.scope.root(name)).unwrap_or(&NULL)
    }

    /// Decides about `flat`; `handler_ahead` says whether an error handler comes at or after it.
    pub fn decide(&mut self, flat: &FlatStep<'a>, handler_ahead: bool) -> Decision {
        if let Some((name, recover, error)) = &self.handling
            && !flat.guards.contains(&(*name, true))
        {
            // The handler's steps are done.
            if !recover {
                return Decision::Fail(error.clone());
            }
            self.partial = true;
            self.handling = None;
        }
        let in_branch = flat.guards.iter().all(|(name, then)| {
            self.scope.root(name).is_some_and(|v| v["branch"] == if *then { "then" } else { "else" })
        });
        if let Some((failed_step, error)) = &self.failure {
            if flat.step.kind == StepKind::ErrorHandler && in_branch {
                let output = json!({"branch": "then", "failed_step": failed_step, "error": error});
                self.handling = Some((flat.step.name.as_str(), flat.step.recover.unwrap_or(false), error.clone()));
                self.failure = None;
                return Decision::Handle(output);
            }
            return if handler_ahead { Decision::Skip } else { Decision::Fail(error.clone()) };
        }
        if !in_branch || flat.step.kind == StepKind::ErrorHandler {
            return Decision::Skip;
        }
        match &flat.step.when {
            Some(when) => {
                let holds =
                    mapping::resolve(&Value::String(when.clone()), &self.scope).is_ok_and(|v| mapping::truthy(&v));
                if holds { Decision::Run } else { Decision::Skip }
            }
            None => Decision::Run,
        }
    }

    /// Takes a step's result into account.
    pub fn record(
        &mut self,
        step: &Step,
        status: StepStatus,
        output: Option<&Value>,
        error: Option<&str>,
        partial: bool,
    ) {
        self.partial |= partial;
        match status {
            StepStatus::Success => {
                self.scope.set(&step.name, output.cloned().unwrap_or(Value::Null));
                self.last = Some(step.name.clone());
            }
            StepStatus::Failed if step.on_error == Some(OnError::Continue) => {
                self.partial = true;
                self.scope.set(&step.name, Value::Null);
            }
            StepStatus::Failed => {
                let error = format!("step {} failed: {}", step.name, error.unwrap_or_default());
                self.failure = Some((step.name.clone(), error));
                // A failure inside a handler's steps ends that handler.
                self.handling = None;
            }
            // References into it resolve to null (see `mapping`), as for a failure let through.
            StepStatus::Skipped => {
                self.scope.set(&step.name, Value::Null);
            }
        }
    }

    /// After the last step: the block's error, if it ends failed.
    pub fn finish(&mut self) -> Result<(), String> {
        if let Some((_, error)) = self.failure.take() {
            return Err(error);
        }
        match self.handling.take() {
            Some((_, false, error)) => Err(error),
            Some((_, true, _)) => {
                self.partial = true;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// For each position of a flattened block: whether an error handler sits at or after it.
pub fn handlers_ahead(flat: &[FlatStep<'_>]) -> Vec<bool> {
    let mut ahead = vec![false; flat.len()];
    let mut seen = false;
    for (i, f) in flat.iter().enumerate().rev() {
        seen |= f.step.kind == StepKind::ErrorHandler;
        ahead[i] = seen;
    }
    ahead
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::{Value, json};

    use super::{Decision, Flow, Scope, handlers_ahead};
    use crate::definition::{Step, flatten};

    fn steps(value: Value) -> Vec<Step> {
        serde_json::from_value(value).expect("the steps parse")
    }

    /// What a step that runs ends with: status, output, error.
    type Outcome = (&'static str, Option<Value>, Option<&'static str>);

    /// How a block went: what happened to each step, in order (`run`, `skip`, `handle`, or
    /// `fail` where the block stopped), how it ended (`Ok(partial)` or the error) and its scope.
    struct Run {
        trace: Vec<String>,
        end: Result<bool, String>,
        scope: Value,
        last_output: Value,
    }

    /// Drives `steps` as the engine's runner does (decide, then record what came of it).
    /// Steps that run end as `outcomes` says; a step not named there succeeds with
    /// `{"ran": name}`.
    fn drive(steps: &[Step], scope: Value, outcomes: &HashMap<&str, Outcome>) -> Run {
        let flat = flatten(steps);
        let ahead = handlers_ahead(&flat);
        let mut flow = Flow::new(Scope::new(scope));
        let mut trace = Vec::new();
        for (i, f) in flat.iter().enumerate() {
            let name = f.step.name.as_str();
            let (word, status, output, error) = match flow.decide(f, ahead[i]) {
                Decision::Fail(error) => {
                    trace.push(format!("{name}:fail"));
                    return Run {
                        trace,
                        end: Err(error),
                        last_output: flow.last_output().clone(),
                        scope: flow.scope.into_local(),
                    };
                }
                Decision::Skip => ("skip", "skipped", None, None),
                Decision::Handle(output) => ("handle", "success", Some(output), None),
                Decision::Run => match outcomes.get(name) {
                    Some((status, output, error)) => ("run", *status, output.clone(), *error),
                    None => ("run", "success", Some(json!({"ran": name})), None),
                },
            };
            trace.push(format!("{name}:{word}"));
            flow.record(f.step, status.parse().expect("a step status"), output.as_ref(), error, false);
        }
        let end = flow.finish().map(|()| flow.partial);
        Run { trace, end, last_output: flow.last_output().clone(), scope: flow.scope.into_local() }
    }

    fn branch(which: &str) -> Outcome {
        ("success", Some(json!({"result": which == "then", "branch": which})), None)
    }

    fn failure(error: &'static str) -> Outcome {
        ("failed", None, Some(error))
    }

    fn condition_block() -> Vec<Step> {
        steps(json!([
            {"name": "check", "type": "condition", "condition": "${parameters.go}",
             "then": [{"name": "yes", "type": "transform", "transform": "map", "mapping": {}}],
             "else": [{"name": "no", "type": "transform", "transform": "map", "mapping": {}}]},
            {"name": "after", "type": "transform", "transform": "map", "mapping": {}}
        ]))
    }

    #[test]
    fn a_condition_runs_its_then_branch_and_skips_its_else_branch() {
        let run = drive(&condition_block(), json!({}), &HashMap::from([("check", branch("then"))]));
        assert_eq!(run.trace, ["check:run", "yes:run", "no:skip", "after:run"]);
        assert_eq!(run.end, Ok(false));
        assert_eq!(run.scope["yes"], json!({"ran": "yes"}));
        assert_eq!(run.scope["no"], Value::Null);
        assert_eq!(run.last_output, json!({"ran": "after"}));
    }

    #[test]
    fn a_condition_runs_its_else_branch_and_skips_its_then_branch() {
        let run = drive(&condition_block(), json!({}), &HashMap::from([("check", branch("else"))]));
        assert_eq!(run.trace, ["check:run", "yes:skip", "no:run", "after:run"]);
        assert_eq!(run.end, Ok(false));
    }

    #[test]
    fn a_condition_inside_a_branch_not_taken_is_skipped_with_both_its_branches() {
        let block = steps(json!([
            {"name": "outer", "type": "condition", "condition": "${parameters.go}",
             "then": [{"name": "inner", "type": "condition", "condition": "${parameters.go}",
                       "then": [{"name": "deep_then", "type": "wait", "duration_ms": 1}],
                       "else": [{"name": "deep_else", "type": "wait", "duration_ms": 1}]}]}
        ]));
        let run = drive(&block, json!({}), &HashMap::from([("outer", branch("else"))]));
        assert_eq!(run.trace, ["outer:run", "inner:skip", "deep_then:skip", "deep_else:skip"]);
        assert_eq!(run.end, Ok(false));
        assert_eq!(run.last_output, json!({"result": false, "branch": "else"}));
    }

    #[test]
    fn when_runs_a_step_only_if_its_reference_is_truthy() {
        let block = steps(json!([
            {"name": "on", "type": "wait", "duration_ms": 1, "when": "${parameters.yes}"},
            {"name": "off", "type": "wait", "duration_ms": 1, "when": "${parameters.no}"},
            {"name": "missing", "type": "wait", "duration_ms": 1, "when": "${parameters.absent}"},
            {"name": "text", "type": "wait", "duration_ms": 1, "when": "${parameters.word}"}
        ]));
        let scope = json!({"parameters": {"yes": 1, "no": "false", "word": "x"}});
        let run = drive(&block, scope, &HashMap::new());
        assert_eq!(run.trace, ["on:run", "off:skip", "missing:skip", "text:run"]);
        assert_eq!(run.end, Ok(false));
    }

    fn handled_block(recover: bool) -> Vec<Step> {
        steps(json!([
            {"name": "fetch", "type": "wait", "duration_ms": 1},
            {"name": "use", "type": "wait", "duration_ms": 1},
            {"name": "handler", "type": "error_handler", "recover": recover,
             "steps": [{"name": "notify", "type": "wait", "duration_ms": 1}]},
            {"name": "after", "type": "wait", "duration_ms": 1}
        ]))
    }

    #[test]
    fn a_failure_skips_to_the_error_handler_which_then_ends_the_block_failed() {
        let run = drive(&handled_block(false), json!({}), &HashMap::from([("fetch", failure("boom"))]));
        assert_eq!(run.trace, ["fetch:run", "use:skip", "handler:handle", "notify:run", "after:fail"]);
        assert_eq!(run.end, Err("step fetch failed: boom".to_owned()));
        assert_eq!(
            run.scope["handler"],
            json!({"branch": "then", "failed_step": "fetch", "error": "step fetch failed: boom"})
        );
    }

    #[test]
    fn a_handler_that_ends_the_block_without_recover_fails_it_at_finish() {
        let block = steps(json!([
            {"name": "fetch", "type": "wait", "duration_ms": 1},
            {"name": "handler", "type": "error_handler",
             "steps": [{"name": "notify", "type": "wait", "duration_ms": 1}]}
        ]));
        let run = drive(&block, json!({}), &HashMap::from([("fetch", failure("boom"))]));
        assert_eq!(run.trace, ["fetch:run", "handler:handle", "notify:run"]);
        assert_eq!(run.end, Err("step fetch failed: boom".to_owned()));
    }

    #[test]
    fn a_recovering_handler_goes_on_with_the_following_steps_and_makes_the_block_partial() {
        let run = drive(&handled_block(true), json!({}), &HashMap::from([("fetch", failure("boom"))]));
        assert_eq!(run.trace, ["fetch:run", "use:skip", "handler:handle", "notify:run", "after:run"]);
        assert_eq!(run.end, Ok(true));
        assert_eq!(run.last_output, json!({"ran": "after"}));
    }

    #[test]
    fn a_recovering_handler_at_the_end_of_the_block_makes_it_partial() {
        let block = steps(json!([
            {"name": "fetch", "type": "wait", "duration_ms": 1},
            {"name": "handler", "type": "error_handler", "recover": true,
             "steps": [{"name": "notify", "type": "wait", "duration_ms": 1}]}
        ]));
        let run = drive(&block, json!({}), &HashMap::from([("fetch", failure("boom"))]));
        assert_eq!(run.trace, ["fetch:run", "handler:handle", "notify:run"]);
        assert_eq!(run.end, Ok(true));
    }

    #[test]
    fn without_a_failure_the_error_handler_and_its_steps_are_skipped() {
        let run = drive(&handled_block(true), json!({}), &HashMap::new());
        assert_eq!(run.trace, ["fetch:run", "use:run", "handler:skip", "notify:skip", "after:run"]);
        assert_eq!(run.end, Ok(false));
    }

    #[test]
    fn a_failure_without_a_handler_ahead_fails_the_next_step() {
        let block = steps(json!([
            {"name": "handler", "type": "error_handler", "recover": true,
             "steps": [{"name": "notify", "type": "wait", "duration_ms": 1}]},
            {"name": "fetch", "type": "wait", "duration_ms": 1},
            {"name": "after", "type": "wait", "duration_ms": 1}
        ]));
        let run = drive(&block, json!({}), &HashMap::from([("fetch", failure("boom"))]));
        assert_eq!(run.trace, ["handler:skip", "notify:skip", "fetch:run", "after:fail"]);
        assert_eq!(run.end, Err("step fetch failed: boom".to_owned()));
    }

    #[test]
    fn a_failure_of_the_last_step_fails_the_block_at_finish() {
        let block = steps(json!([{"name": "fetch", "type": "wait", "duration_ms": 1}]));
        let run = drive(&block, json!({}), &HashMap::from([("fetch", failure("boom"))]));
        assert_eq!(run.trace, ["fetch:run"]);
        assert_eq!(run.end, Err("step fetch failed: boom".to_owned()));
    }

    #[test]
    fn on_error_continue_goes_on_with_a_null_output_and_makes_the_block_partial() {
        let block = steps(json!([
            {"name": "fetch", "type": "wait", "duration_ms": 1, "on_error": "continue"},
            {"name": "handler", "type": "error_handler",
             "steps": [{"name": "notify", "type": "wait", "duration_ms": 1}]},
            {"name": "after", "type": "wait", "duration_ms": 1}
        ]));
        let scope = json!({"fetch": "stale"});
        let run = drive(&block, scope, &HashMap::from([("fetch", failure("boom"))]));
        assert_eq!(run.trace, ["fetch:run", "handler:skip", "notify:skip", "after:run"]);
        assert_eq!(run.end, Ok(true));
        assert_eq!(run.scope["fetch"], Value::Null);
    }

    #[test]
    fn a_failure_inside_a_recovering_handler_ends_the_block_failed_with_that_error() {
        let outcomes = HashMap::from([("fetch", failure("boom")), ("notify", failure("no mail"))]);
        let run = drive(&handled_block(true), json!({}), &outcomes);
        assert_eq!(run.trace, ["fetch:run", "use:skip", "handler:handle", "notify:run", "after:fail"]);
        assert_eq!(run.end, Err("step notify failed: no mail".to_owned()));
    }

    #[test]
    fn a_failure_inside_a_handler_goes_to_the_next_handler() {
        let block = steps(json!([
            {"name": "fetch", "type": "wait", "duration_ms": 1},
            {"name": "first", "type": "error_handler",
             "steps": [{"name": "notify", "type": "wait", "duration_ms": 1},
                       {"name": "cleanup", "type": "wait", "duration_ms": 1}]},
            {"name": "between", "type": "wait", "duration_ms": 1},
            {"name": "second", "type": "error_handler", "recover": true,
             "steps": [{"name": "page", "type": "wait", "duration_ms": 1}]},
            {"name": "after", "type": "wait", "duration_ms": 1}
        ]));
        let outcomes = HashMap::from([("fetch", failure("boom")), ("notify", failure("no mail"))]);
        let run = drive(&block, json!({}), &outcomes);
        assert_eq!(
            run.trace,
            [
                "fetch:run",
                "first:handle",
                "notify:run",
                "cleanup:skip",
                "between:skip",
                "second:handle",
                "page:run",
                "after:run"
            ]
        );
        assert_eq!(run.end, Ok(true));
        assert_eq!(run.scope["second"]["failed_step"], "notify");
        assert_eq!(run.scope["second"]["error"], "step notify failed: no mail");
    }

    #[test]
    fn a_handler_in_a_branch_not_taken_does_not_take_the_failure() {
        let block = steps(json!([
            {"name": "check", "type": "condition", "condition": "${parameters.go}",
             "then": [{"name": "fetch", "type": "wait", "duration_ms": 1}],
             "else": [{"name": "else_handler", "type": "error_handler",
                       "steps": [{"name": "else_notify", "type": "wait", "duration_ms": 1}]}]},
            {"name": "handler", "type": "error_handler",
             "steps": [{"name": "notify", "type": "wait", "duration_ms": 1}]}
        ]));
        let outcomes = HashMap::from([("check", branch("then")), ("fetch", failure("boom"))]);
        let run = drive(&block, json!({}), &outcomes);
        assert_eq!(
            run.trace,
            ["check:run", "fetch:run", "else_handler:skip", "else_notify:skip", "handler:handle", "notify:run"]
        );
        assert_eq!(run.end, Err("step fetch failed: boom".to_owned()));
    }

    #[test]
    fn handlers_ahead_marks_every_position_at_or_before_the_last_handler() {
        let block = handled_block(false);
        let flat = flatten(&block);
        // fetch, use, handler, notify, after
        assert_eq!(handlers_ahead(&flat), [true, true, true, false, false]);
        assert_eq!(handlers_ahead(&flatten(&steps(json!([{"name": "a", "type": "wait", "duration_ms": 1}])))), [false]);
    }
}
