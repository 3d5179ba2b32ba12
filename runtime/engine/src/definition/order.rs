//! The order steps run in: nested `then`/`else` and error handlers flattened depth-first (so a
//! step's position is stable), nesting depth, lookups by name.

use super::*;

/// Most levels of steps inside steps (`then`, `else`, `steps`, `branches`): validation, the
/// trace and the engine walk them recursively.
pub const MAX_STEP_NESTING: usize = 16;

/// How deeply blocks of steps nest in `steps` (a flat list is 1), measured without recursion;
/// counting stops past [`MAX_STEP_NESTING`].
pub fn step_nesting(steps: &[Step]) -> usize {
    let mut deepest = 0;
    let mut pending: Vec<(&[Step], usize)> = vec![(steps, 1)];
    while let Some((block, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        if deepest > MAX_STEP_NESTING {
            break;
        }
        for step in block {
            for inner in [&step.then_steps, &step.else_steps, &step.steps] {
                if !inner.is_empty() {
                    pending.push((inner, depth + 1));
                }
            }
            pending.extend(step.branches.iter().map(|branch| (&branch.steps[..], depth + 1)));
        }
    }
    deepest
}

/// A step in execution order, with the conditions (and branches) it sits under.
pub struct FlatStep<'a> {
    pub step: &'a Step,
    /// Where it is in the definition, e.g. `steps[1].then[0]`.
    pub path: String,
    /// (condition step name, true for its `then` branch), outermost first.
    pub guards: Vec<(&'a str, bool)>,
}

/// Every step depth-first: a condition, then its `then` steps, then its `else` steps; an
/// error handler, then its steps (guarded like a `then` branch). The position of a step in this
/// list is its position in the execution's step results. The bodies of `for_each` and
/// `parallel` are not in it: they run inside their step.
pub fn flatten(steps: &[Step]) -> Vec<FlatStep<'_>> {
    flatten_at(steps, "steps")
}

/// [`flatten`] with the path prefix of a nested block.
pub fn flatten_at<'a>(steps: &'a [Step], prefix: &str) -> Vec<FlatStep<'a>> {
    fn walk<'a>(steps: &'a [Step], prefix: &str, guards: &[(&'a str, bool)], out: &mut Vec<FlatStep<'a>>) {
        for (i, step) in steps.iter().enumerate() {
            let path = format!("{prefix}[{i}]");
            out.push(FlatStep { step, path: path.clone(), guards: guards.to_vec() });
            let handler = if step.kind == StepKind::ErrorHandler { &step.steps[..] } else { &[] };
            for (branch, nested, name) in
                [(true, &step.then_steps[..], "then"), (false, &step.else_steps[..], "else"), (true, handler, "steps")]
            {
                let mut inner = guards.to_vec();
                inner.push((step.name.as_str(), branch));
                walk(nested, &format!("{path}.{name}"), &inner, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(steps, prefix, &[], &mut out);
    out
}

/// The step named `name` anywhere in `steps` (branches, bodies and handlers included).
pub fn find_step<'a>(steps: &'a [Step], name: &str) -> Option<&'a Step> {
    steps.iter().find_map(|step| {
        if step.name == name {
            return Some(step);
        }
        find_step(&step.then_steps, name)
            .or_else(|| find_step(&step.else_steps, name))
            .or_else(|| find_step(&step.steps, name))
            .or_else(|| step.branches.iter().find_map(|b| find_step(&b.steps, name)))
    })
}

/// The cron expression and time zone of a schedule trigger.
pub fn schedule_of(def: &Definition) -> Option<(&str, &str)> {
    match (def.trigger.kind.as_str(), def.trigger.cron.as_deref()) {
        ("schedule", Some(cron)) => Some((cron, def.trigger.timezone.as_deref().unwrap_or("UTC"))),
        _ => None,
    }
}

/// The orchestrations (names or ids) that `steps` start, at any depth.
pub fn sub_orchestrations(steps: &[Step]) -> Vec<String> {
    fn walk(steps: &[Step], out: &mut Vec<String>) {
        for step in steps {
            if step.kind == StepKind::SubOrchestration
                && let Some(name) = &step.orchestration
            {
                out.push(name.clone());
            }
            for nested in [&step.then_steps, &step.else_steps, &step.steps] {
                walk(nested, out);
            }
            for branch in &step.branches {
                walk(&branch.steps, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(steps, &mut out);
    out
}
