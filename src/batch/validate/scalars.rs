//! Checks of single values against their schema (enums, lengths, integer ranges, types), and
//! positions for messages.

use serde_json::Value as Json;

use super::Problem;
use super::names::normalize;
use crate::batch::yaml::{Node, Pos, Value};

pub(super) fn match_enum(
    allowed: &[Json],
    node: &Node,
    path: &str,
    out: &mut Vec<Problem>,
) -> Option<Json> {
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

pub(super) fn check_length(
    schema: &Json,
    s: &str,
    node: &Node,
    path: &str,
    out: &mut Vec<Problem>,
) -> bool {
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

pub(super) fn check_integer(
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

pub(super) fn describe_type(t: &str) -> &'static str {
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

pub(super) fn kind_matches(schema: &Json, value: &Value) -> bool {
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
pub(super) fn to_plain_json(node: &Node) -> Json {
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
