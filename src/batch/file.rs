//! The batch file: the seed's format, read strictly, every mistake reported at once.
//!
//! ```yaml
//! - extract:                  # the step's name (names may repeat)
//!     type: ecs_task
//!     parameters: {cluster: etl, task_definition: extract:3}
//! ```
//! Nothing runs unless the whole file is valid: a bad step 5 is reported before step 1 starts.

use std::fmt;

use serde_json::Value as Json;

use crate::batch::validate::{Problem, SchemaChecker, position_of};
use crate::batch::yaml::{self, Node, Pos, Value};
use sequencer_core::plan::PlannedStep;
use sequencer_core::run_task::{RunTaskParameters, SEQUENCER_TAG_COUNT};
use sequencer_core::step::{ContainerSelection, StepDefinition};

/// ECS limits checked before anything runs.
pub const MAX_OVERRIDES_JSON: usize = 8192;
pub const MAX_TAGS: usize = 50;
pub const MAX_STARTED_BY_PREFIX: usize = 18;
/// Keeps `startedBy` (label, run, step number, attempt) within 36 characters.
pub const MAX_STEPS: usize = 1000;

/// One problem in a batch file, with everything needed to find it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub at: Pos,
    /// 1-based step number and its name, when the problem is inside a step.
    pub step: Option<(usize, String)>,
    pub path: String,
    pub message: String,
}

impl Diagnostic {
    /// A problem of the file as a whole, or of a step that has no name yet.
    fn at_top(file: &str, at: Pos, message: String) -> Self {
        Diagnostic {
            file: file.to_owned(),
            at,
            step: None,
            path: String::new(),
            message,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.at)?;
        if let Some((number, name)) = &self.step {
            write!(f, ": step {number} ({name})")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a batch file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidBatch(pub Vec<Diagnostic>);

impl fmt::Display for InvalidBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "the batch file is not valid ({n} problem{}); nothing was run:",
            if n == 1 { "" } else { "s" }
        )?;
        for d in &self.0 {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidBatch {}

const FORMAT_HINT: &str =
    "a batch file is a list of steps, each `- name: {type: ecs_task, parameters: {...}}`";

/// Reads and validates a batch file; `file` names it in messages.
pub fn parse(file: &str, text: &str) -> Result<Vec<PlannedStep>, InvalidBatch> {
    let at_top =
        |at: Pos, message: String| InvalidBatch(vec![Diagnostic::at_top(file, at, message)]);
    let root =
        yaml::parse(text).map_err(|e| at_top(e.at, format!("not valid YAML: {}", e.message)))?;
    let items = step_list(&root).map_err(|message| at_top(root.at, message))?;
    let checker = step_checker();
    let mut diagnostics = Vec::new();
    let mut steps = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match parse_step(file, &checker, index + 1, item) {
            Ok(step) => steps.push(step),
            Err(problems) => diagnostics.extend(problems),
        }
    }
    if diagnostics.is_empty() {
        Ok(steps)
    } else {
        Err(InvalidBatch(diagnostics))
    }
}

/// The file's list of steps, or why the file is not one.
fn step_list(root: &Node) -> Result<&[Node], String> {
    let items = match &root.value {
        Value::Sequence(items) if !items.is_empty() => items,
        Value::Sequence(_) => return Err(format!("the list of steps is empty; {FORMAT_HINT}")),
        Value::Null => return Err(format!("the file is empty; {FORMAT_HINT}")),
        other => {
            return Err(format!(
                "expected a list of steps, found {}; {FORMAT_HINT}",
                other.kind()
            ));
        }
    };
    if items.len() > MAX_STEPS {
        return Err(format!(
            "{} steps; a batch has at most {MAX_STEPS}",
            items.len()
        ));
    }
    Ok(items)
}

/// One `- name: {type: ..., parameters: ...}` item, numbered from 1.
fn parse_step(
    file: &str,
    checker: &SchemaChecker,
    number: usize,
    item: &Node,
) -> Result<PlannedStep, Vec<Diagnostic>> {
    let Value::Mapping(entries) = &item.value else {
        let message = format!(
            "step {number}: expected `- name: {{type: ..., parameters: ...}}`, found {}",
            item.value.kind()
        );
        return Err(vec![Diagnostic::at_top(file, item.at, message)]);
    };
    let [(name, body)] = entries.as_slice() else {
        let keys = entries
            .iter()
            .map(|(k, _)| k.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let message = format!(
            "step {number}: a step is a mapping with exactly one key, its name; found {} key(s) ({keys}). Is the step body indented under its name?",
            entries.len()
        );
        return Err(vec![Diagnostic::at_top(file, item.at, message)]);
    };
    let located = |problems: Vec<Problem>| {
        problems
            .into_iter()
            .map(|p| Diagnostic {
                file: file.to_owned(),
                at: p.at,
                step: Some((number, name.name.clone())),
                path: p.path,
                message: p.message,
            })
            .collect::<Vec<_>>()
    };
    if name.name.trim().is_empty() {
        return Err(located(vec![Problem {
            at: name.at,
            path: String::new(),
            message: "the step's name is empty".into(),
        }]));
    }
    let definition = check_step(checker, body).map_err(located)?;
    Ok(PlannedStep {
        name: name.name.clone(),
        definition,
    })
}

/// The checker for one step's body (everything under its name).
pub fn step_checker() -> SchemaChecker {
    SchemaChecker::for_type::<StepDefinition>(explain_unknown_key)
}

/// Checks one step's body: the schema, then the ECS limits. Used for batch files and for a
/// Sequence's `spec.steps`, so both report the same problems in the same words.
pub fn check_step(checker: &SchemaChecker, body: &Node) -> Result<StepDefinition, Vec<Problem>> {
    let json = checker.check(body, "")?;
    let definition: StepDefinition = serde_json::from_value(json).map_err(|e| {
        vec![Problem {
            at: body.at,
            path: String::new(),
            message: e.to_string(),
        }]
    })?;
    let problems = check_limits(&definition, body);
    if problems.is_empty() {
        Ok(definition)
    } else {
        Err(problems)
    }
}

fn explain_unknown_key(normalized: &str) -> Option<String> {
    (normalized == "clienttoken").then(|| {
        "`clientToken` is set by sequencer: one per step attempt, so that a launch repeated after a crash is deduplicated by ECS; remove it".to_owned()
    })
}

/// ECS limits and rules the schema cannot say.
fn check_limits(step: &StepDefinition, body: &Node) -> Vec<Problem> {
    let p = &step.parameters;
    [
        overrides_and_tags(p),
        started_by_and_capacity(p),
        option_rules(step),
    ]
    .concat()
    .into_iter()
    .map(|(keys, message)| Problem {
        at: position_of(body, keys),
        path: keys.join("."),
        message,
    })
    .collect()
}

/// What is wrong, at which key path.
type Found = Vec<(&'static [&'static str], String)>;

/// The overrides' size and the tags' count and keys, as ECS limits them.
fn overrides_and_tags(p: &RunTaskParameters) -> Found {
    let mut found: Found = Vec::new();
    if let Some(overrides) = &p.overrides {
        let size = serde_json::to_string(overrides)
            .map(|s| s.len())
            .unwrap_or(0);
        if size > MAX_OVERRIDES_JSON {
            found.push((
                &["parameters", "overrides"],
                format!(
                    "the overrides come to {size} characters of JSON; ECS allows at most {MAX_OVERRIDES_JSON}"
                ),
            ));
        }
    }
    let own_tags = MAX_TAGS - SEQUENCER_TAG_COUNT;
    if p.tags.len() > own_tags {
        found.push((
            &["parameters", "tags"],
            format!(
                "{} tags given; ECS allows {MAX_TAGS} per task and sequencer adds {SEQUENCER_TAG_COUNT}, so at most {own_tags}",
                p.tags.len()
            ),
        ));
    }
    for tag in &p.tags {
        if tag.key.to_ascii_lowercase().starts_with("aws:") || tag.key.starts_with("sequencer.dev/")
        {
            found.push((
                &["parameters", "tags"],
                format!(
                    "tag key `{}` is reserved (keys starting with `aws:` belong to AWS, `sequencer.dev/` to sequencer)",
                    tag.key
                ),
            ));
        }
    }
    found
}

/// The startedBy label sequencer extends, and the launch type against a capacity strategy.
fn started_by_and_capacity(p: &RunTaskParameters) -> Found {
    let mut found: Found = Vec::new();
    if let Some(label) = &p.started_by {
        let bad = label
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/')));
        if label.is_empty() || label.chars().count() > MAX_STARTED_BY_PREFIX || bad {
            found.push((
                &["parameters", "startedBy"],
                format!(
                    "`{label}` is not a valid startedBy label: 1 to {MAX_STARTED_BY_PREFIX} characters of A-Z a-z 0-9 - _ / (sequencer appends run, step and attempt to it)"
                ),
            ));
        }
    }
    if p.launch_type.is_some() && !p.capacity_provider_strategy.is_empty() {
        found.push((&["parameters", "capacityProviderStrategy"], "give either `launchType` or `capacityProviderStrategy`, not both (ECS rejects the pair)".into()));
    }
    found
}

/// The step's own options: the containers that decide success, and the retry rule.
fn option_rules(step: &StepDefinition) -> Found {
    let mut found: Found = Vec::new();
    if let Some(ContainerSelection::Named(names)) = step.success.as_ref().map(|s| &s.containers)
        && names.is_empty()
    {
        found.push((
            &["success", "containers"],
            "name at least one container, or write `all` or `essential`".into(),
        ));
    }
    if let Some(retry) = &step.retry {
        if retry.backoff.initial_seconds > retry.backoff.max_seconds {
            found.push((
                &["retry", "backoff"],
                format!(
                    "initialSeconds ({}) is larger than maxSeconds ({})",
                    retry.backoff.initial_seconds, retry.backoff.max_seconds
                ),
            ));
        }
        if retry.when.is_empty() && retry.limit > 0 {
            found.push((&["retry", "when"], "name at least one failure class to retry on: launch, infrastructure, exitCode, timeout".into()));
        }
    }
    found
}

/// The steps as the canonical JSON the schema describes (used by `validate --output json`).
pub fn steps_json(steps: &[PlannedStep]) -> Json {
    serde_json::to_value(steps).unwrap_or_default()
}
