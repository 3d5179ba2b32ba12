//! What happens to each step of a block: condition branches, `when`, failures, `on_error` and
//! error handlers. The same rules drive the top level (whose results are committed) and the
//! bodies of `for_each` and `parallel` (kept in memory), and replay committed results on resume.

use serde_json::{Value, json};

use super::definition::{FlatStep, Step};
use super::mapping;

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
    /// `index` in a `for_each` body).
    pub scope: Value,
    pub last_output: Value,
    /// A step failed with `on_error: continue`, or a handler recovered.
    pub partial: bool,
    /// The failed step and its error, until a handler takes it.
    failure: Option<(String, String)>,
    /// The handler whose steps are running: its name, whether it recovers, the error it handles.
    handling: Option<(&'a str, bool, String)>,
}

impl<'a> Flow<'a> {
    pub fn new(scope: Value) -> Self {
        Self { scope, last_output: Value::Null, partial: false, failure: None, handling: None }
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
        let in_branch =
            flat.guards.iter().all(|(name, then)| self.scope[*name]["branch"] == if *then { "then" } else { "else" });
        if let Some((failed_step, error)) = &self.failure {
            if flat.step.kind == "error_handler" && in_branch {
                let output = json!({"branch": "then", "failed_step": failed_step, "error": error});
                self.handling = Some((flat.step.name.as_str(), flat.step.recover.unwrap_or(false), error.clone()));
                self.failure = None;
                return Decision::Handle(output);
            }
            return if handler_ahead { Decision::Skip } else { Decision::Fail(error.clone()) };
        }
        if !in_branch || flat.step.kind == "error_handler" {
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
    pub fn record(&mut self, step: &Step, status: &str, output: Option<&Value>, error: Option<&str>, partial: bool) {
        self.partial |= partial;
        match status {
            "success" => {
                let output = output.cloned().unwrap_or(Value::Null);
                self.scope[&step.name] = output.clone();
                self.last_output = output;
            }
            "failed" if step.on_error.as_deref() == Some("continue") => {
                self.partial = true;
                self.scope[&step.name] = Value::Null;
            }
            "failed" => {
                let error = format!("step {} failed: {}", step.name, error.unwrap_or_default());
                self.failure = Some((step.name.clone(), error));
                // A failure inside a handler's steps ends that handler.
                self.handling = None;
            }
            _ => {}
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
        seen |= f.step.kind == "error_handler";
        ahead[i] = seen;
    }
    ahead
}
