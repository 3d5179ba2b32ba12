//! A definition's validation at save time: every problem, with its path, block by block.

use super::*;

/// What validation needs to know about the enterprise's connections and plugins.
pub trait Catalogue {
    /// The operations of the connection's connector, or `None` when no such connection exists.
    /// `Some(None)` means the connector accepts operations defined by the connection (`rest`).
    fn operations(&self, connection: &str) -> Option<Option<Vec<String>>>;
    /// Whether a transform plugin with this slug exists.
    fn transform_exists(&self, slug: &str) -> bool;
    /// Whether an orchestration with this name or id exists (other than the one being saved).
    fn orchestration_exists(&self, name_or_id: &str) -> bool;
    /// The orchestrations the stored orchestration `name_or_id` starts, and the names by which
    /// it is known (its name and id), for cycle detection.
    fn calls(&self, name_or_id: &str) -> (Vec<String>, Vec<String>) {
        let _ = name_or_id;
        (Vec::new(), Vec::new())
    }
    /// The id of the orchestration being saved (on update), which references may use.
    fn saved_id(&self) -> Option<&str> {
        None
    }
    /// The shortest interval allowed between two schedule slots, in seconds.
    fn min_cron_interval_secs(&self) -> u64 {
        60
    }
}

/// A path of `sub_orchestration` references from `start` back to the orchestration being saved
/// (known as `own`), if there is one: `["b", "c"]` for own -> b -> c -> own.
fn cycle_through(catalogue: &dyn Catalogue, start: &str, own: &[&str]) -> Option<Vec<String>> {
    let mut seen = HashSet::new();
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    // Bounded by the enterprise's orchestrations: each is expanded once.
    while let Some((name, path)) = stack.pop() {
        let (calls, aliases) = catalogue.calls(&name);
        if aliases.iter().any(|a| !seen.insert(a.clone())) {
            continue;
        }
        for next in calls {
            if own.contains(&next.as_str()) {
                return Some(path);
            }
            let mut longer = path.clone();
            longer.push(next.clone());
            stack.push((next, longer));
        }
    }
    None
}

/// The shortest interval between two slots of `schedule` over the next few of them.
fn shortest_interval_secs(schedule: &cron::Schedule) -> Option<i64> {
    let slots: Vec<_> = schedule.upcoming(chrono::Utc).take(50).collect();
    slots.windows(2).map(|w| (w[1] - w[0]).num_seconds()).min()
}

fn identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Every problem of `def`, each with its path.
pub fn validate(def: &Definition, catalogue: &dyn Catalogue) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut err = |path: String, message: String| errors.push(FieldError { path, message });
    if def.name.trim().is_empty() || def.name.len() > 200 {
        err("name".into(), "must be 1 to 200 characters".into());
    }
    if let dibop_core::OrchestrationStatus::Unknown(_) = dibop_core::OrchestrationStatus::parse(&def.status) {
        err("status".into(), "must be draft, active, paused or archived".into());
    }
    if let Some(OnExhausted::Unknown(_)) = &def.on_exhausted {
        err("on_exhausted".into(), "must be fail or pause".into());
    }
    if def.sla_target.is_some_and(|t| !(0.0..=100.0).contains(&t)) {
        err("sla_target".into(), "must be a percentage from 0 to 100".into());
    }
    if let TriggerKind::Unknown(_) = &def.trigger.kind {
        err("trigger.type".into(), "must be manual, schedule or event".into());
    }
    if def.trigger.kind == TriggerKind::Schedule {
        let minimum = catalogue.min_cron_interval_secs();
        match def.trigger.cron.as_deref().map(crate::calendar::parse) {
            None => err("trigger.cron".into(), "schedule triggers need a cron expression".into()),
            Some(Err(e)) => err("trigger.cron".into(), format!("invalid cron expression: {e}")),
            Some(Ok(schedule)) => {
                if let Some(every) =
                    shortest_interval_secs(&schedule).filter(|s| *s < i64::try_from(minimum).unwrap_or(60))
                {
                    err(
                        "trigger.cron".into(),
                        format!("fires every {every} s; schedules may fire at most once every {minimum} s"),
                    );
                }
            }
        }
        let tz = def.trigger.timezone.as_deref().unwrap_or("UTC");
        if tz.parse::<chrono_tz::Tz>().is_err() {
            err("trigger.timezone".into(), format!("{tz:?} is not an IANA time zone"));
        }
        for (i, p) in def.parameters.iter().enumerate() {
            if p.required && p.default.is_none() {
                err(
                    format!("parameters[{i}].default"),
                    "scheduled runs have no caller: required parameters need a default".into(),
                );
            }
        }
    }
    let mut params = HashSet::new();
    for (i, p) in def.parameters.iter().enumerate() {
        if !identifier(&p.name) || !params.insert(p.name.as_str()) {
            err(format!("parameters[{i}].name"), format!("{:?} must be a unique identifier", p.name));
        }
        if let ParamType::Unknown(_) = &p.kind {
            err(format!("parameters[{i}].type"), "must be string, number, integer, boolean, object or array".into());
        } else if p.default.as_ref().is_some_and(|d| !d.is_null() && !p.kind.holds(d)) {
            err(format!("parameters[{i}].default"), format!("must be of type {} like the parameter", p.kind));
        }
    }
    if step_nesting(&def.steps) > MAX_STEP_NESTING {
        // The checks below walk the blocks recursively: refuse before they start.
        errors.push(FieldError {
            path: "steps".into(),
            message: format!("steps nest inside other steps deeper than {MAX_STEP_NESTING} levels"),
        });
        return errors;
    }
    let mut checker = Checker { catalogue, params, names: HashSet::new(), errors, own_name: &def.name, in_body: 0 };
    let mut visible = Vec::new();
    checker.block(&def.steps, "steps", &mut visible, false);
    if let Some(output) = &def.output {
        checker.refs(output, "output".into(), &visible, false);
    }
    checker.errors
}

/// Walks the steps, block by block, collecting problems.
struct Checker<'a> {
    catalogue: &'a dyn Catalogue,
    params: HashSet<&'a str>,
    /// Every step name so far: names are unique across the whole definition.
    names: HashSet<&'a str>,
    errors: Vec<FieldError>,
    own_name: &'a str,
    /// How many `for_each` or `parallel` bodies the block at hand is in.
    in_body: usize,
}

impl<'a> Checker<'a> {
    fn err(&mut self, path: String, message: String) {
        self.errors.push(FieldError { path, message });
    }

    /// Checks the references in `value`; `visible` are the steps it may name, `in_loop` allows
    /// `item` and `index`.
    fn refs(&mut self, value: &Value, path: String, visible: &[&str], in_loop: bool) {
        match mapping::references(value) {
            Err(e) => self.err(path, e.to_string()),
            Ok(refs) => {
                for r in refs {
                    if let Some(problem) = reference_problem(&r, &self.params, visible, in_loop) {
                        self.err(path.clone(), problem);
                    }
                }
            }
        }
    }

    /// A block of steps (and the condition branches and handlers inside it); the names it
    /// declares are added to `visible`.
    fn block(&mut self, steps: &'a [Step], prefix: &str, visible: &mut Vec<&'a str>, in_loop: bool) {
        if steps.is_empty() {
            self.err(prefix.to_owned(), "needs at least one step".into());
        }
        for flat in flatten_at(steps, prefix) {
            self.step(flat.step, &flat.path, visible, in_loop);
            visible.push(flat.step.name.as_str());
        }
    }

    fn step(&mut self, step: &'a Step, path: &str, visible: &[&'a str], in_loop: bool) {
        let at = |field: &str| format!("{path}.{field}");
        if !identifier(&step.name) || RESERVED.contains(&step.name.as_str()) {
            self.err(
                at("name"),
                format!(
                    "{:?} must be an identifier (letters, digits, _) other than {}",
                    step.name,
                    RESERVED.join(", ")
                ),
            );
        } else if !self.names.insert(step.name.as_str()) {
            self.err(at("name"), format!("duplicate step name {:?}", step.name));
        }
        match &step.kind {
            StepKind::ApiCall => match (&step.connection, &step.operation) {
                (Some(connection), Some(operation)) => match self.catalogue.operations(connection) {
                    None => self.err(at("connection"), format!("unknown connection {connection:?}")),
                    Some(Some(ops)) if !ops.contains(operation) => self.err(
                        at("operation"),
                        format!("connection {connection:?} has no operation {operation:?} (it has {})", ops.join(", ")),
                    ),
                    Some(_) => {}
                },
                _ => self.err(at("connection"), "api_call steps need connection and operation".into()),
            },
            StepKind::Transform => match step.transform.as_deref() {
                Some("map") => {
                    if step.mapping.is_none() {
                        self.err(at("mapping"), "transform map needs a mapping".into());
                    }
                }
                Some(slug) if self.catalogue.transform_exists(slug) => {}
                Some(other) => self.err(at("transform"), format!("{other:?} is neither map nor a transform plugin")),
                None => self.err(at("transform"), "transform steps need transform (map or a plugin slug)".into()),
            },
            StepKind::Condition => match &step.condition {
                Some(expression) => self.refs(&Value::String(expression.clone()), at("condition"), visible, in_loop),
                None => self.err(at("condition"), "condition steps need a condition expression".into()),
            },
            // Its steps are in the flattened block (they run after it, guarded by it).
            StepKind::ErrorHandler if step.steps.is_empty() => {
                self.err(at("steps"), "an error_handler needs the steps it runs".into());
            }
            StepKind::ErrorHandler => {}
            StepKind::ForEach => {
                match &step.items {
                    Some(items) => self.refs(&Value::String(items.clone()), at("items"), visible, in_loop),
                    None => self.err(at("items"), "for_each needs items (a reference to an array)".into()),
                }
                if step.concurrency.is_some_and(|c| !(1..=MAX_CONCURRENCY).contains(&c)) {
                    self.err(at("concurrency"), format!("must be from 1 to {MAX_CONCURRENCY}"));
                }
                // The body sees the outer steps, `item` and `index`; its names stay inside.
                self.in_body += 1;
                self.block(&step.steps, &at("steps"), &mut visible.to_vec(), true);
                self.in_body -= 1;
            }
            StepKind::Parallel => {
                if step.branches.is_empty() {
                    self.err(at("branches"), "parallel needs at least one branch".into());
                }
                if step.branches.len() > MAX_BRANCHES {
                    self.err(at("branches"), format!("at most {MAX_BRANCHES} branches"));
                }
                let mut branch_names = HashSet::new();
                for (i, branch) in step.branches.iter().enumerate() {
                    if !identifier(&branch.name) || !branch_names.insert(branch.name.as_str()) {
                        self.err(
                            format!("{path}.branches[{i}].name"),
                            format!("{:?} must be a unique identifier", branch.name),
                        );
                    }
                    self.in_body += 1;
                    self.block(&branch.steps, &format!("{path}.branches[{i}].steps"), &mut visible.to_vec(), in_loop);
                    self.in_body -= 1;
                }
            }
            StepKind::SubOrchestration => match step.orchestration.as_deref() {
                Some(name) if name == self.own_name || self.catalogue.saved_id() == Some(name) => {
                    self.err(at("orchestration"), "an orchestration cannot run itself".into());
                }
                Some(name) if !self.catalogue.orchestration_exists(name) => {
                    self.err(at("orchestration"), format!("unknown orchestration {name:?}"));
                }
                Some(name) => {
                    let own: Vec<&str> =
                        [Some(self.own_name), self.catalogue.saved_id()].into_iter().flatten().collect();
                    if let Some(path) = cycle_through(self.catalogue, name, &own) {
                        self.err(
                            at("orchestration"),
                            format!("{} runs this orchestration again: a cycle", path.join(" -> ")),
                        );
                    }
                }
                None => self.err(at("orchestration"), "sub_orchestration needs orchestration (a name or id)".into()),
            },
            StepKind::CanonicalUpsert => {
                match step.domain.as_deref() {
                    Some(name) if crate::canonical::domain(name).is_some() => {}
                    Some(name) => self.err(at("domain"), format!("{name:?} is not a canonical domain")),
                    None => self.err(at("domain"), "canonical_upsert needs a domain".into()),
                }
                if step.mapping.is_none() {
                    self.err(at("mapping"), "canonical_upsert needs a mapping (the record)".into());
                }
                if let Some(source) = &step.source
                    && !visible.contains(&source.as_str())
                {
                    self.err(at("source"), format!("{source:?} is not an earlier step"));
                }
            }
            StepKind::Wait => match (step.duration_ms, &step.until) {
                (Some(ms), None) if ms > MAX_WAIT_MS => {
                    self.err(at("duration_ms"), format!("must be at most {MAX_WAIT_MS} (7 days)"));
                }
                (Some(_), None) => {}
                (None, Some(until)) if until.contains("${") => {
                    self.refs(&Value::String(until.clone()), at("until"), visible, in_loop);
                }
                (None, Some(until)) if chrono::DateTime::parse_from_rfc3339(until).is_err() => {
                    self.err(at("until"), format!("{until:?} is not an RFC 3339 instant"));
                }
                (None, Some(_)) => {}
                _ => self.err(at("duration_ms"), "wait needs exactly one of duration_ms and until".into()),
            },
            StepKind::Unknown(other) => {
                self.err(at("type"), format!("unknown step type {other:?}; supported: {}", StepKind::names()));
            }
        }
        if step.kind != StepKind::Condition && !(step.then_steps.is_empty() && step.else_steps.is_empty()) {
            self.err(at("then"), "only condition steps have then/else steps".into());
        }
        if !matches!(step.kind, StepKind::ForEach | StepKind::ErrorHandler) && !step.steps.is_empty() {
            self.err(at("steps"), "only for_each and error_handler steps have steps".into());
        }
        if let Some(v) = &step.parameters {
            self.refs(v, at("parameters"), visible, in_loop);
        }
        if let Some(v) = &step.mapping {
            self.refs(v, at("mapping"), visible, in_loop);
        }
        if let Some(when) = &step.when {
            self.refs(&Value::String(when.clone()), at("when"), visible, in_loop);
        }
        if let Some(t) = step.timeout_ms
            && !(100..=600_000).contains(&t)
        {
            self.err(at("timeout_ms"), "must be from 100 to 600000".into());
        }
        if let Some(r) = &step.retry {
            if !(1..=20).contains(&r.max_attempts) {
                self.err(at("retry.max_attempts"), "must be from 1 to 20".into());
            }
            if !(1.0..=10.0).contains(&r.backoff_coefficient) {
                self.err(at("retry.backoff_coefficient"), "must be from 1.0 to 10.0".into());
            }
            let longest = MAX_RETRY_INTERVAL_MS;
            if r.initial_interval_ms > longest {
                self.err(at("retry.initial_interval_ms"), format!("must be at most {longest} (an hour)"));
            }
            if r.max_interval_ms.is_some_and(|ms| ms > longest) {
                self.err(at("retry.max_interval_ms"), format!("must be at most {longest} (an hour)"));
            }
            if r.jitter.is_some_and(|j| !(0.0..=1.0).contains(&j)) {
                self.err(at("retry.jitter"), "must be from 0 to 1".into());
            }
            for (field, entries) in [("retry_on", &r.retry_on), ("never_retry", &r.never_retry)] {
                if entries.len() > MAX_RETRY_RULES {
                    self.err(at(&format!("retry.{field}")), format!("at most {} entries", MAX_RETRY_RULES));
                    continue;
                }
                for (i, entry) in entries.iter().enumerate() {
                    if let Err(problem) = RetryRule::parse(entry) {
                        self.err(at(&format!("retry.{field}[{i}]")), problem);
                    }
                }
            }
        }
        if let Some(OnError::Unknown(_)) = &step.on_error {
            self.err(at("on_error"), "must be fail or continue".into());
        }
        match &step.on_exhausted {
            None => {}
            Some(OnExhausted::Unknown(_)) => {
                self.err(at("on_exhausted"), "must be fail or pause".into());
            }
            // A body's steps have no committed result of their own to pause at.
            Some(_) if self.in_body > 0 => self.err(
                at("on_exhausted"),
                "steps inside for_each and parallel bodies cannot pause; set on_exhausted on the container".into(),
            ),
            Some(OnExhausted::Pause) if step.on_error == Some(OnError::Continue) => {
                self.err(
                    at("on_exhausted"),
                    "a step with on_error continue lets its failure through; it cannot pause".into(),
                );
            }
            Some(_) => {}
        }
    }
}

fn reference_problem(r: &Reference, params: &HashSet<&str>, earlier: &[&str], in_loop: bool) -> Option<String> {
    let rest = r.expression[r.root.len()..].trim_start_matches('.');
    let first = rest.split(['.', '[']).next().unwrap_or_default();
    match r.root.as_str() {
        "parameters" if !params.contains(first) => {
            Some(format!("${{{}}}: no parameter {first:?} is declared", r.expression))
        }
        "_context" if !CONTEXT_KEYS.contains(&first) => {
            Some(format!("${{{}}}: _context has {}", r.expression, CONTEXT_KEYS.join(", ")))
        }
        "item" | "index" if !in_loop => {
            Some(format!("${{{}}}: {} is only defined inside a for_each", r.expression, r.root))
        }
        "parameters" | "_context" | "item" | "index" => None,
        step if earlier.contains(&step) => None,
        step => Some(format!("${{{}}}: {step:?} is not an earlier step", r.expression)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{Catalogue, Definition, validate};

    /// An enterprise with one connection `dealer` (operations `lookup` and `search`), one `rest`
    /// connection (operations of its own), the transform plugin `upper` and the orchestration
    /// `child`.
    struct Enterprise;

    impl Catalogue for Enterprise {
        fn operations(&self, connection: &str) -> Option<Option<Vec<String>>> {
            match connection {
                "dealer" => Some(Some(vec!["lookup".into(), "search".into()])),
                "rest" => Some(None),
                _ => None,
            }
        }
        fn transform_exists(&self, slug: &str) -> bool {
            slug == "upper"
        }
        fn orchestration_exists(&self, name_or_id: &str) -> bool {
            name_or_id == "child"
        }
    }

    /// The problems of `definition` as (path, message).
    fn problems(definition: Value) -> Vec<(String, String)> {
        let def: Definition = serde_json::from_value(definition).expect("the definition parses");
        validate(&def, &Enterprise).into_iter().map(|e| (e.path, e.message)).collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected.iter().map(|(p, m)| ((*p).to_owned(), (*m).to_owned())).collect()
    }

    #[test]
    fn a_definition_using_every_step_type_is_accepted() {
        let found = problems(json!({
            "name": "Vehicle lookup",
            "parameters": [{"name": "vin", "required": true}, {"name": "limit", "type": "integer", "default": 3}],
            "steps": [
                {"name": "decode", "type": "api_call", "connection": "dealer", "operation": "lookup",
                 "parameters": {"vin": "${parameters.vin}", "at": "${_context.timestamp}"},
                 "retry": {"max_attempts": 3}, "timeout_ms": 5000},
                {"name": "custom", "type": "api_call", "connection": "rest", "operation": "anything"},
                {"name": "honda", "type": "condition", "condition": "${decode.response.make} == 'HONDA'",
                 "then": [{"name": "shout", "type": "transform", "transform": "upper",
                           "mapping": {"text": "${decode.response.make}"}}],
                 "else": [{"name": "quiet", "type": "transform", "transform": "map",
                           "mapping": {"make": "${decode.response.make}"}, "when": "${custom}"}]},
                {"name": "each", "type": "for_each", "items": "${decode.response.parts}", "concurrency": 4,
                 "steps": [{"name": "part", "type": "transform", "transform": "map",
                            "mapping": {"part": "${item}", "at": "${index}", "make": "${shout.text}"}}]},
                {"name": "both", "type": "parallel", "branches": [
                    {"name": "left", "steps": [{"name": "pause", "type": "wait", "duration_ms": 10}]},
                    {"name": "right", "steps": [{"name": "until", "type": "wait", "until": "2030-01-01T00:00:00Z"}]}
                ]},
                {"name": "run_child", "type": "sub_orchestration", "orchestration": "child",
                 "parameters": {"vin": "${parameters.vin}"}},
                {"name": "keep", "type": "canonical_upsert", "domain": "vehicle", "source": "decode",
                 "mapping": {"vin": "${parameters.vin}"}},
                {"name": "handler", "type": "error_handler", "recover": true, "on_error": "continue",
                 "steps": [{"name": "log", "type": "transform", "transform": "map",
                            "mapping": {"failed": "${handler.failed_step}"}}]}
            ],
            "output": {"make": "${decode.response.make}", "parts": "${each}"}
        }));
        assert_eq!(found, pairs(&[]));
    }

    #[test]
    fn a_schedule_with_a_default_for_each_required_parameter_is_accepted() {
        let found = problems(json!({
            "name": "Nightly",
            "trigger": {"type": "schedule", "cron": "30 2 * * *", "timezone": "Europe/Paris"},
            "parameters": [{"name": "days", "type": "integer", "required": true, "default": 1}],
            "steps": [{"name": "pause", "type": "wait", "duration_ms": 1}]
        }));
        assert_eq!(found, pairs(&[]));
    }

    #[test]
    fn the_top_level_fields_are_refused_with_their_paths() {
        let found = problems(json!({
            "name": " ",
            "status": "live",
            "sla_target": 101.0,
            "trigger": {"type": "schedule", "cron": "* * * * * *", "timezone": "Mars/Olympus"},
            "parameters": [
                {"name": "vin", "required": true},
                {"name": "vin", "type": "date"},
                {"name": "count", "type": "integer", "default": "three"}
            ],
            "steps": []
        }));
        assert_eq!(
            found,
            pairs(&[
                ("name", "must be 1 to 200 characters"),
                ("status", "must be draft, active, paused or archived"),
                ("sla_target", "must be a percentage from 0 to 100"),
                ("trigger.cron", "fires every 1 s; schedules may fire at most once every 60 s"),
                ("trigger.timezone", "\"Mars/Olympus\" is not an IANA time zone"),
                ("parameters[0].default", "scheduled runs have no caller: required parameters need a default"),
                ("parameters[1].name", "\"vin\" must be a unique identifier"),
                ("parameters[1].type", "must be string, number, integer, boolean, object or array"),
                ("parameters[2].default", "must be of type integer like the parameter"),
                ("steps", "needs at least one step"),
            ])
        );
    }

    #[test]
    fn steps_are_refused_with_the_path_of_the_field_at_fault() {
        let found = problems(json!({
            "name": "Broken",
            "steps": [
                {"name": "decode", "type": "api_call", "connection": "dealer", "operation": "delete",
                 "parameters": {"vin": "${parameters.vin}"}},
                {"name": "decode", "type": "api_call", "connection": "nowhere", "operation": "lookup"},
                {"name": "1st", "type": "transform"},
                {"name": "item", "type": "teleport"},
                {"name": "shape", "type": "transform", "transform": "upside_down", "on_error": "ignore",
                 "timeout_ms": 50, "retry": {"max_attempts": 0, "backoff_coefficient": 0.5}},
                {"name": "later", "type": "transform", "transform": "map", "mapping": {"x": "${after.y}"}}
            ]
        }));
        assert_eq!(
            found,
            pairs(&[
                ("steps[0].operation", "connection \"dealer\" has no operation \"delete\" (it has lookup, search)"),
                ("steps[0].parameters", "${parameters.vin}: no parameter \"vin\" is declared"),
                ("steps[1].name", "duplicate step name \"decode\""),
                ("steps[1].connection", "unknown connection \"nowhere\""),
                (
                    "steps[2].name",
                    "\"1st\" must be an identifier (letters, digits, _) other than parameters, _context, item, index",
                ),
                ("steps[2].transform", "transform steps need transform (map or a plugin slug)"),
                (
                    "steps[3].name",
                    "\"item\" must be an identifier (letters, digits, _) other than parameters, _context, item, index",
                ),
                (
                    "steps[3].type",
                    "unknown step type \"teleport\"; supported: api_call, transform, condition, error_handler, \
                     for_each, parallel, sub_orchestration, wait, canonical_upsert",
                ),
                ("steps[4].transform", "\"upside_down\" is neither map nor a transform plugin"),
                ("steps[4].timeout_ms", "must be from 100 to 600000"),
                ("steps[4].retry.max_attempts", "must be from 1 to 20"),
                ("steps[4].retry.backoff_coefficient", "must be from 1.0 to 10.0"),
                ("steps[4].on_error", "must be fail or continue"),
                ("steps[5].mapping", "${after.y}: \"after\" is not an earlier step"),
            ])
        );
    }

    #[test]
    fn nested_steps_are_refused_with_their_nested_paths() {
        let found = problems(json!({
            "name": "Nested",
            "steps": [
                {"name": "check", "type": "condition", "condition": "${item.ok}",
                 "then": [{"name": "pause", "type": "wait"}],
                 "else": [{"name": "sleep", "type": "wait", "duration_ms": 1, "until": "soon"}]},
                {"name": "each", "type": "for_each", "concurrency": 33,
                 "steps": [{"name": "inner", "type": "transform", "transform": "map"}]},
                {"name": "both", "type": "parallel", "branches": [
                    {"name": "a", "steps": []},
                    {"name": "a", "steps": [{"name": "deep", "type": "transform", "transform": "map",
                                             "mapping": {"x": "${inner}"}}]}
                ]},
                {"name": "handler", "type": "error_handler"},
                {"name": "self_call", "type": "sub_orchestration", "orchestration": "Nested"},
                {"name": "stranger", "type": "sub_orchestration", "orchestration": "ghost"},
                {"name": "keep", "type": "canonical_upsert", "domain": "spaceship", "source": "later"},
                {"name": "plain", "type": "wait", "duration_ms": 1, "then": [], "else": [
                    {"name": "orphan", "type": "wait", "duration_ms": 1}]},
                {"name": "lonely", "type": "wait", "duration_ms": 1,
                 "steps": [{"name": "hidden", "type": "wait", "duration_ms": 1}]}
            ],
            "output": "${inner}"
        }));
        assert_eq!(
            found,
            pairs(&[
                ("steps[0].condition", "${item.ok}: item is only defined inside a for_each"),
                ("steps[0].then[0].duration_ms", "wait needs exactly one of duration_ms and until"),
                ("steps[0].else[0].duration_ms", "wait needs exactly one of duration_ms and until"),
                ("steps[1].items", "for_each needs items (a reference to an array)"),
                ("steps[1].concurrency", "must be from 1 to 32"),
                ("steps[1].steps[0].mapping", "transform map needs a mapping"),
                ("steps[2].branches[0].steps", "needs at least one step"),
                ("steps[2].branches[1].name", "\"a\" must be a unique identifier"),
                ("steps[2].branches[1].steps[0].mapping", "${inner}: \"inner\" is not an earlier step"),
                ("steps[3].steps", "an error_handler needs the steps it runs"),
                ("steps[4].orchestration", "an orchestration cannot run itself"),
                ("steps[5].orchestration", "unknown orchestration \"ghost\""),
                ("steps[6].domain", "\"spaceship\" is not a canonical domain"),
                ("steps[6].mapping", "canonical_upsert needs a mapping (the record)"),
                ("steps[6].source", "\"later\" is not an earlier step"),
                ("steps[7].then", "only condition steps have then/else steps"),
                ("steps[8].steps", "only for_each and error_handler steps have steps"),
                ("output", "${inner}: \"inner\" is not an earlier step"),
            ])
        );
    }
}
