//! Checks a spanned YAML node against the JSON schema derived from a Rust type, and rewrites it
//! into that type's canonical JSON (camelCase keys, canonical enum spellings).
//!
//! One walker serves every type, so the Rust types stay the single source of truth: a field or range
//! added there is enforced here with no further code. Unlike serde it reports every problem, each
//! with its line:column and key path, says what is allowed, and suggests the closest known key.
//! Keys and enum values match whatever their spelling: `task_definition`, `taskDefinition` and
//! `TaskDefinition` are the same key; the seed's Ruby-SDK snake_case keeps working.

use schemars::JsonSchema;
use serde_json::{Map, Value as Json};

use crate::yaml::{Node, Pos, Value};

/// One thing wrong with the input, where it is and what is allowed instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub at: Pos,
    /// Key path such as `parameters.overrides.containerOverrides[0].name`; empty for the node itself.
    pub path: String,
    pub message: String,
}

/// Explains a key the schema does not have but users write for a reason (e.g. `clientToken`).
pub type KeyExplainer = fn(&str) -> Option<String>;

pub struct SchemaChecker {
    root: Json,
    explain_unknown: KeyExplainer,
}

/// The spelling-blind form of a key or enum value: lower case, without `_` and `-`.
pub fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// camelCase to snake_case, to show users of the seed's spelling the key they would write.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev_lower = chars[i - 1].is_ascii_lowercase();
            // The last capital of an acronym starts a new word: ECSManaged -> ecs_managed.
            let acronym_end = chars[i - 1].is_ascii_uppercase()
                && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev_lower || acronym_end {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

impl SchemaChecker {
    pub fn for_type<T: JsonSchema>(explain_unknown: KeyExplainer) -> Self {
        SchemaChecker {
            root: schemars::schema_for!(T).to_value(),
            explain_unknown,
        }
    }

    /// Checks `node`; returns its canonical JSON when there was no problem.
    pub fn check(&self, node: &Node, base_path: &str) -> Result<Json, Vec<Problem>> {
        let mut problems = Vec::new();
        let json = self.walk(&self.root, node, base_path, &mut problems);
        match json {
            Some(json) if problems.is_empty() => Ok(json),
            _ => Err(problems),
        }
    }

    fn resolve<'a>(&'a self, schema: &'a Json) -> &'a Json {
        let mut current = schema;
        // `$ref`s here are always `#/$defs/Name`; a chain of them ends quickly.
        for _ in 0..8 {
            let Some(reference) = current.get("$ref").and_then(Json::as_str) else {
                break;
            };
            let name = reference.trim_start_matches("#/$defs/");
            match self.root.get("$defs").and_then(|d| d.get(name)) {
                Some(target) => current = target,
                None => break,
            }
        }
        current
    }

    fn walk(&self, schema: &Json, node: &Node, path: &str, out: &mut Vec<Problem>) -> Option<Json> {
        let schema = self.resolve(schema);
        let problem = |out: &mut Vec<Problem>, message: String| {
            out.push(Problem {
                at: node.at,
                path: path.to_owned(),
                message,
            });
        };

        if let Some(alternatives) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Json::as_array)
        {
            return self.walk_alternatives(alternatives, node, path, out);
        }
        if let Some(allowed) = schema.get("enum").and_then(Json::as_array) {
            return match_enum(allowed, node, path, out);
        }

        let types: Vec<&str> = match schema.get("type") {
            Some(Json::String(t)) => vec![t.as_str()],
            Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
            _ => return Some(to_plain_json(node)),
        };
        if matches!(node.value, Value::Null) && types.contains(&"null") {
            return Some(Json::Null);
        }
        let Some(expected) = types.iter().copied().find(|t| *t != "null") else {
            problem(
                out,
                format!("expected nothing here, found {}", node.value.kind()),
            );
            return None;
        };
        match (expected, &node.value) {
            ("object", Value::Mapping(entries)) => {
                self.walk_object(schema, node, entries, path, out)
            }
            ("array", Value::Sequence(items)) => {
                let min = schema.get("minItems").and_then(Json::as_u64);
                let max = schema.get("maxItems").and_then(Json::as_u64);
                if let Some(min) = min.filter(|m| (items.len() as u64) < *m) {
                    problem(
                        out,
                        format!("needs at least {min} item(s), found {}", items.len()),
                    );
                }
                if let Some(max) = max.filter(|m| (items.len() as u64) > *m) {
                    problem(
                        out,
                        format!("allows at most {max} item(s), found {}", items.len()),
                    );
                }
                let item_schema = schema.get("items").cloned().unwrap_or(Json::Bool(true));
                let values: Vec<Option<Json>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.walk(&item_schema, item, &format!("{path}[{i}]"), out))
                    .collect();
                values
                    .into_iter()
                    .collect::<Option<Vec<_>>>()
                    .map(Json::Array)
            }
            ("string", Value::String(s)) => {
                check_length(schema, s, node, path, out).then(|| Json::String(s.clone()))
            }
            // YAML users write `cpu: 1024` where the API wants text; the meaning is unambiguous.
            ("string", Value::Number(n)) => Some(Json::String(n.to_string())),
            ("integer", Value::Number(n)) if !n.is_f64() => {
                check_integer(schema, n, node, path, out)
            }
            ("number", Value::Number(n)) => Some(Json::Number(n.clone())),
            ("boolean", Value::Bool(b)) => Some(Json::Bool(*b)),
            (expected, found) => {
                problem(
                    out,
                    format!(
                        "expected {}, found {}",
                        describe_type(expected),
                        found.kind()
                    ),
                );
                None
            }
        }
    }

    fn walk_alternatives(
        &self,
        alternatives: &[Json],
        node: &Node,
        path: &str,
        out: &mut Vec<Problem>,
    ) -> Option<Json> {
        let resolved: Vec<&Json> = alternatives.iter().map(|a| self.resolve(a)).collect();
        // Documented enum variants come as `oneOf` of `const`s.
        if resolved.iter().all(|a| a.get("const").is_some()) {
            let allowed: Vec<Json> = resolved
                .iter()
                .filter_map(|a| a.get("const").cloned())
                .collect();
            return match_enum(&allowed, node, path, out);
        }
        let is_null = |a: &&Json| a.get("type").and_then(Json::as_str) == Some("null");
        if matches!(node.value, Value::Null) && resolved.iter().any(is_null) {
            return Some(Json::Null);
        }
        let candidates: Vec<&Json> = resolved.into_iter().filter(|a| !is_null(a)).collect();
        if let [only] = candidates.as_slice() {
            return self.walk(only, node, path, out);
        }
        let mut first_problems = None;
        for candidate in &candidates {
            let mut scratch = Vec::new();
            if let Some(json) = self
                .walk(candidate, node, path, &mut scratch)
                .filter(|_| scratch.is_empty())
            {
                return Some(json);
            }
            first_problems.get_or_insert(scratch);
        }
        // Report the alternative that fits the kind of value written, else the first one.
        let matching = candidates.iter().find(|c| kind_matches(c, &node.value));
        match matching {
            Some(candidate) => {
                self.walk(candidate, node, path, out);
            }
            None => out.extend(first_problems.unwrap_or_default()),
        }
        None
    }

    fn walk_object(
        &self,
        schema: &Json,
        node: &Node,
        entries: &[(crate::yaml::Key, Node)],
        path: &str,
        out: &mut Vec<Problem>,
    ) -> Option<Json> {
        let empty = Map::new();
        let properties = schema
            .get("properties")
            .and_then(Json::as_object)
            .unwrap_or(&empty);
        let mut result = Map::new();
        let mut seen: Vec<(String, Pos)> = Vec::new();
        // Known keys already suggested for a misspelt one: not reported again as missing.
        let mut suggested: Vec<String> = Vec::new();
        let mut ok = true;
        for (key, value) in entries {
            let key_path = join(path, &key.name);
            let wanted = normalize(&key.name);
            let Some((canonical, property)) = properties
                .iter()
                .find(|(name, _)| normalize(name) == wanted)
            else {
                ok = false;
                let message = match (self.explain_unknown)(&wanted) {
                    Some(explanation) => explanation,
                    None => {
                        let (message, suggestion) =
                            unknown_key_message(&key.name, properties.keys());
                        suggested.extend(suggestion);
                        message
                    }
                };
                out.push(Problem {
                    at: key.at,
                    path: key_path,
                    message,
                });
                continue;
            };
            if let Some((_, first)) = seen.iter().find(|(n, _)| n == canonical) {
                ok = false;
                out.push(Problem {
                    at: key.at,
                    path: key_path,
                    message: format!(
                        "`{canonical}` is given twice (first at line {}:{}); keep one",
                        first.line, first.column
                    ),
                });
                continue;
            }
            seen.push((canonical.clone(), key.at));
            match self.walk(property, value, &join(path, canonical), out) {
                Some(json) => {
                    result.insert(canonical.clone(), json);
                }
                None => ok = false,
            }
        }
        for required in schema
            .get("required")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
        {
            if !seen.iter().any(|(n, _)| n == required) && !suggested.iter().any(|s| s == required)
            {
                ok = false;
                let spelled = spellings(required);
                let what = if path.is_empty() {
                    "this mapping".to_owned()
                } else {
                    format!("`{path}`")
                };
                out.push(Problem {
                    at: node.at,
                    path: path.to_owned(),
                    message: format!("{what} needs the key {spelled}"),
                });
            }
        }
        ok.then_some(Json::Object(result))
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// "`taskDefinition` (or `task_definition`)".
pub fn spellings(name: &str) -> String {
    let snake = snake_case(name);
    if snake == name {
        format!("`{name}`")
    } else {
        format!("`{name}` (or `{snake}`)")
    }
}

/// The message for an unknown key, and the known key it most likely meant.
fn unknown_key_message<'a>(
    key: &str,
    known: impl Iterator<Item = &'a String>,
) -> (String, Option<String>) {
    let known: Vec<&String> = known.collect();
    let wanted = normalize(key);
    let best = known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&wanted, &normalize(k)), *k))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, k)| *d <= 2.max(k.len() / 4));
    let allowed = known
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    match best {
        Some((_, k)) => (
            format!(
                "unknown key `{key}`; did you mean {}? Allowed here: {allowed}",
                spellings(k)
            ),
            Some(k.clone()),
        ),
        None => (
            format!("unknown key `{key}`; allowed here: {allowed}"),
            None,
        ),
    }
}

fn match_enum(allowed: &[Json], node: &Node, path: &str, out: &mut Vec<Problem>) -> Option<Json> {
    let names: Vec<&str> = allowed.iter().filter_map(Json::as_str).collect();
    let list = names.join(", ");
    let problem = |message: String| Problem {
        at: node.at,
        path: path.to_owned(),
        message,
    };
    let Value::String(written) = &node.value else {
        out.push(problem(format!(
            "expected one of {list}, found {}",
            node.value.kind()
        )));
        return None;
    };
    if let Some(name) = names.iter().find(|n| normalize(n) == normalize(written)) {
        return Some(Json::String((*name).to_owned()));
    }
    out.push(problem(format!(
        "`{written}` is not allowed here; allowed: {list}"
    )));
    None
}

fn check_length(schema: &Json, s: &str, node: &Node, path: &str, out: &mut Vec<Problem>) -> bool {
    let len = s.chars().count() as u64;
    let min = schema.get("minLength").and_then(Json::as_u64);
    let max = schema.get("maxLength").and_then(Json::as_u64);
    let message = match (min, max) {
        (Some(min), _) if len < min => format!("needs at least {min} character(s), found {len}"),
        (_, Some(max)) if len > max => format!("allows at most {max} characters, found {len}"),
        _ => return true,
    };
    out.push(Problem {
        at: node.at,
        path: path.to_owned(),
        message,
    });
    false
}

fn check_integer(
    schema: &Json,
    n: &serde_json::Number,
    node: &Node,
    path: &str,
    out: &mut Vec<Problem>,
) -> Option<Json> {
    let value = n
        .as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))?;
    let format_range = match schema.get("format").and_then(Json::as_str) {
        Some("int32") => Some((i32::MIN as i128, i32::MAX as i128)),
        Some("uint32") => Some((0, u32::MAX as i128)),
        Some("uint64") => Some((0, u64::MAX as i128)),
        _ => None,
    };
    let min = schema
        .get("minimum")
        .and_then(Json::as_f64)
        .map(|m| m as i128)
        .or(format_range.map(|r| r.0));
    let max = schema
        .get("maximum")
        .and_then(Json::as_f64)
        .map(|m| m as i128)
        .or(format_range.map(|r| r.1));
    let in_range = min.is_none_or(|m| value >= m) && max.is_none_or(|m| value <= m);
    if in_range {
        return Some(Json::Number(n.clone()));
    }
    // A type's own upper bound (u64::MAX) says nothing useful unless it is the one exceeded.
    let shown_max = max.filter(|m| value > *m || Some(*m) != format_range.map(|r| r.1));
    let range = match (min, shown_max) {
        (Some(a), Some(b)) => format!("from {a} to {b}"),
        (Some(a), None) => format!("{a} or more"),
        (None, Some(b)) => format!("{b} or less"),
        (None, None) => String::new(),
    };
    out.push(Problem {
        at: node.at,
        path: path.to_owned(),
        message: format!("{value} is out of range; allowed: a whole number {range}"),
    });
    None
}

fn describe_type(t: &str) -> &'static str {
    match t {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "text",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "true or false",
        _ => "something else",
    }
}

fn kind_matches(schema: &Json, value: &Value) -> bool {
    let t = schema
        .get("type")
        .and_then(Json::as_str)
        .unwrap_or(if schema.get("enum").is_some() {
            "string"
        } else {
            ""
        });
    matches!(
        (t, value),
        ("object", Value::Mapping(_))
            | ("array", Value::Sequence(_))
            | ("string", Value::String(_))
            | ("boolean", Value::Bool(_))
    ) || matches!((t, value), ("integer" | "number", Value::Number(_)))
}

/// A node as plain JSON, for a schema that says nothing about it.
fn to_plain_json(node: &Node) -> Json {
    match &node.value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => Json::Number(n.clone()),
        Value::String(s) => Json::String(s.clone()),
        Value::Sequence(items) => Json::Array(items.iter().map(to_plain_json).collect()),
        Value::Mapping(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.name.clone(), to_plain_json(v)))
                .collect(),
        ),
    }
}

/// Follows `keys` (any spelling) from `node` and returns where the last one's value was written.
pub fn position_of(node: &Node, keys: &[&str]) -> Pos {
    let mut current = node;
    for key in keys {
        let Value::Mapping(entries) = &current.value else {
            break;
        };
        match entries
            .iter()
            .find(|(k, _)| normalize(&k.name) == normalize(key))
        {
            Some((_, value)) => current = value,
            None => break,
        }
    }
    current.at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::StepDefinition;
    use crate::yaml::parse;

    fn check(text: &str) -> Result<Json, Vec<Problem>> {
        SchemaChecker::for_type::<StepDefinition>(|_| None).check(&parse(text).unwrap(), "")
    }

    #[test]
    fn snake_and_camel_case_are_the_same_key_and_come_out_camel() {
        let json = check("type: ecs_task\nparameters:\n  task_definition: td:1\n  launchType: fargate\n  enable_ecs_managed_tags: true\n").unwrap();
        assert_eq!(json["parameters"]["taskDefinition"], "td:1");
        assert_eq!(json["parameters"]["launchType"], "FARGATE");
        assert_eq!(json["parameters"]["enableECSManagedTags"], true);
    }

    #[test]
    fn every_problem_is_reported_with_place_and_suggestion() {
        let problems =
            check("type: shell\nparameters:\n  task_defintion: td\n  count: 11\n").unwrap_err();
        let messages: Vec<String> = problems
            .iter()
            .map(|p| format!("{} {} {}", p.at, p.path, p.message))
            .collect();
        assert_eq!(problems.len(), 3, "{messages:#?}");
        assert!(
            messages[0].starts_with("1:7 type `shell` is not allowed here; allowed: ecs_task"),
            "{messages:#?}"
        );
        assert!(
            messages[1].contains("3:3 parameters.task_defintion unknown key")
                && messages[1].contains("did you mean `taskDefinition` (or `task_definition`)"),
            "{messages:#?}"
        );
        assert!(
            messages[2].contains(
                "4:10 parameters.count 11 is out of range; allowed: a whole number from 1 to 10"
            ),
            "{messages:#?}"
        );
        // The misspelt key was suggested; it is not reported a second time as missing.
        assert!(
            !messages.iter().any(|m| m.contains("needs the key")),
            "{messages:#?}"
        );
        // A required key that is simply absent is reported.
        let absent = check("type: ecs_task\nparameters: {cluster: c}\n").unwrap_err();
        assert!(
            absent[0].message.contains("needs the key `taskDefinition`"),
            "{absent:?}"
        );
    }

    #[test]
    fn the_same_key_in_two_spellings_is_a_duplicate() {
        let problems =
            check("type: ecs_task\nparameters:\n  taskDefinition: a\n  task_definition: b\n")
                .unwrap_err();
        assert_eq!(problems[0].at.line, 4);
        assert!(
            problems[0]
                .message
                .contains("given twice (first at line 3:3)"),
            "{problems:?}"
        );
    }

    #[test]
    fn untagged_alternatives_accept_either_form() {
        let json = check(
            "type: ecs_task\nparameters: {taskDefinition: a}\nsuccess: {containers: [app, side]}\n",
        )
        .unwrap();
        assert_eq!(
            json["success"]["containers"],
            serde_json::json!(["app", "side"])
        );
        let json = check(
            "type: ecs_task\nparameters: {taskDefinition: a}\nsuccess: {containers: Essential}\n",
        )
        .unwrap();
        assert_eq!(json["success"]["containers"], "essential");
        let problems =
            check("type: ecs_task\nparameters: {taskDefinition: a}\nsuccess: {containers: some}\n")
                .unwrap_err();
        assert!(
            problems[0].message.contains("allowed: all, essential"),
            "{problems:?}"
        );
    }

    #[test]
    fn wrong_types_say_what_was_expected() {
        let problems = check("type: ecs_task\nparameters: {taskDefinition: [a]}\nactive: maybe\n")
            .unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.path == "parameters.taskDefinition"
                    && p.message == "expected text, found a list"),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.path == "active" && p.message == "expected true or false, found text"),
            "{problems:?}"
        );
    }

    #[test]
    fn snake_case_spelling_of_camel_names() {
        assert_eq!(snake_case("taskDefinition"), "task_definition");
        assert_eq!(
            snake_case("enableECSManagedTags"),
            "enable_ecs_managed_tags"
        );
        assert_eq!(snake_case("sizeInGiB"), "size_in_gi_b");
    }
}
