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

mod names;
mod scalars;
#[cfg(test)]
mod tests;

use crate::batch::yaml::{Node, Pos, Value};
use names::{join, unknown_key_message};
pub use names::{normalize, snake_case, spellings};
pub use scalars::position_of;
use scalars::{
    check_integer, check_length, describe_type, kind_matches, match_enum, to_plain_json,
};

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
            ("array", Value::Sequence(items)) => self.walk_array(schema, node, items, path, out),
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

    /// A list: its length within `minItems`/`maxItems`, each item against `items`.
    fn walk_array(
        &self,
        schema: &Json,
        node: &Node,
        items: &[Node],
        path: &str,
        out: &mut Vec<Problem>,
    ) -> Option<Json> {
        let min = schema.get("minItems").and_then(Json::as_u64);
        let max = schema.get("maxItems").and_then(Json::as_u64);
        let mut problem = |message: String| {
            out.push(Problem {
                at: node.at,
                path: path.to_owned(),
                message,
            })
        };
        if let Some(min) = min.filter(|m| (items.len() as u64) < *m) {
            problem(format!(
                "needs at least {min} item(s), found {}",
                items.len()
            ));
        }
        if let Some(max) = max.filter(|m| (items.len() as u64) > *m) {
            problem(format!(
                "allows at most {max} item(s), found {}",
                items.len()
            ));
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
        entries: &[(crate::batch::yaml::Key, Node)],
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
