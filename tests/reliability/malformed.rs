//! Malformed inputs for the reliability run, generated from one valid step that uses most options:
//! every key misspelt, every scalar replaced by a mapping, and numbers and names out of their
//! documented ranges. Each case carries the fragment its refusal must name (the key at fault).
//! The same cases are written as batch files (snake_case keys, as the seed writes them) and as
//! Sequences (camelCase keys).

use serde_json::{Map, Value, json};

pub struct Case {
    /// What was changed, for the report.
    pub label: String,
    /// The step body (without its name).
    pub body: Value,
    /// The refusal must contain one of these: the key at fault (a misspelt key as written, or the
    /// required key it stands for, which the API server's schema names as missing; else the
    /// canonical name of the key whose value is wrong).
    pub places: Vec<String>,
}

/// A valid step using most options; tasks of malformed steps are recognisable by their name.
fn template() -> Value {
    json!({
        "type": "ecs_task",
        "timeoutSeconds": 600,
        "retry": {"limit": 1, "when": ["exitCode"], "backoff": {"initialSeconds": 1, "maxSeconds": 2}},
        "parameters": {
            "cluster": "etl",
            "taskDefinition": "quick:1",
            "launchType": "FARGATE",
            "count": 1,
            "startedBy": "malformed",
            "networkConfiguration": {"awsvpcConfiguration": {
                "subnets": ["subnet-1"], "securityGroups": ["sg-1"], "assignPublicIp": "ENABLED"}},
            "overrides": {"cpu": "256", "containerOverrides": [{
                "name": "app", "command": ["echo", "hi"],
                "environment": [{"name": "A", "value": "b"}], "memory": 512}]},
            "tags": [{"key": "team", "value": "data"}]
        }
    })
}

/// The valid template as a batch file writes it.
pub fn template_snake() -> Value {
    snake_keys(&template())
}

/// Out-of-range numbers and unknown names: (path, value, the key named).
fn out_of_range() -> Vec<(&'static [&'static str], Value, &'static str)> {
    vec![
        (&["parameters", "count"], json!(0), "count"),
        (&["parameters", "count"], json!(11), "count"),
        (&["parameters", "count"], json!(-3), "count"),
        (&["timeoutSeconds"], json!(0), "timeoutSeconds"),
        (&["retry", "limit"], json!(101), "limit"),
        (
            &["retry", "backoff", "initialSeconds"],
            json!(0),
            "initialSeconds",
        ),
        (
            &["retry", "backoff", "maxSeconds"],
            json!(86_401),
            "maxSeconds",
        ),
        (&["retry", "backoff", "factor"], json!(11), "factor"),
        (&["retry", "when"], json!(["sometimes"]), "when"),
        (
            &["parameters", "launchType"],
            json!("SPACESHIP"),
            "launchType",
        ),
        (
            &[
                "parameters",
                "networkConfiguration",
                "awsvpcConfiguration",
                "assignPublicIp",
            ],
            json!("MAYBE"),
            "assignPublicIp",
        ),
        (&["type"], json!("lambda"), "type"),
        (
            &["parameters", "startedBy"],
            json!("no spaces allowed"),
            "startedBy",
        ),
        (
            &["parameters", "taskDefinition"],
            json!(""),
            "taskDefinition",
        ),
        (&["parameters", "cluster"], json!(""), "cluster"),
    ]
}

/// Every case, keys spelt as batch files (`snake`) or Sequences write them.
pub fn cases(snake: bool) -> Vec<Case> {
    let base = template();
    let mut cases = Vec::new();
    let mut paths = Vec::new();
    walk(&base, &mut Vec::new(), &mut paths);
    for (path, is_key) in &paths {
        let last = path.last().expect("non-empty path");
        let Segment::Key(key) = last else { continue };
        let key_name = spell(key, snake);
        if *is_key {
            let typo = format!("{key_name}x");
            let mut body = base.clone();
            rename(&mut body, path, &format!("{key}x"));
            cases.push(Case {
                label: format!("key {} misspelt", dotted(path, snake)),
                body,
                places: vec![typo, key.clone()],
            });
        }
    }
    for (path, _) in &paths {
        let Some(key) = path.iter().rev().find_map(|s| match s {
            Segment::Key(k) => Some(k.clone()),
            Segment::Index(_) => None,
        }) else {
            continue;
        };
        let mut body = base.clone();
        let target = at(&mut body, path);
        if target.is_object() || target.is_array() {
            continue;
        }
        *target = json!({"unexpected": 1});
        cases.push(Case {
            label: format!("{} is a mapping", dotted(path, snake)),
            body,
            // Refusals name a value's key path in its canonical (camelCase) spelling.
            places: vec![key.clone()],
        });
    }
    for (path, value, key) in out_of_range() {
        let mut body = base.clone();
        let segments: Vec<Segment> = path.iter().map(|k| Segment::Key((*k).into())).collect();
        *at(&mut body, &segments) = value.clone();
        cases.push(Case {
            label: format!("{} = {value}", dotted(&segments, snake)),
            body,
            places: vec![key.to_owned()],
        });
    }
    if snake {
        for case in &mut cases {
            case.body = snake_keys(&case.body);
        }
    }
    cases
}

#[derive(Clone, Debug)]
enum Segment {
    Key(String),
    Index(usize),
}

/// Every node's path; the flag says whether the last segment is a key of an object.
fn walk(value: &Value, path: &mut Vec<Segment>, out: &mut Vec<(Vec<Segment>, bool)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                path.push(Segment::Key(k.clone()));
                out.push((path.clone(), true));
                walk(v, path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(Segment::Index(i));
                out.push((path.clone(), false));
                walk(v, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at<'a>(value: &'a mut Value, path: &[Segment]) -> &'a mut Value {
    path.iter().fold(value, |node, segment| match segment {
        Segment::Key(k) => &mut node[k.as_str()],
        Segment::Index(i) => &mut node[*i],
    })
}

fn rename(value: &mut Value, path: &[Segment], new: &str) {
    let (last, parent) = path.split_last().expect("non-empty path");
    let Segment::Key(old) = last else { return };
    if let Some(map) = at(value, parent).as_object_mut() {
        let inner = map.remove(old).unwrap_or(Value::Null);
        map.insert(new.to_owned(), inner);
    }
}

fn dotted(path: &[Segment], snake: bool) -> String {
    let mut text = String::new();
    for segment in path {
        match segment {
            Segment::Key(k) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(&spell(k, snake));
            }
            Segment::Index(i) => text.push_str(&format!("[{i}]")),
        }
    }
    text
}

fn spell(key: &str, snake: bool) -> String {
    if !snake {
        return key.to_owned();
    }
    let mut out = String::new();
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn snake_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (spell(k, true), snake_keys(v)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(snake_keys).collect()),
        other => other.clone(),
    }
}

/// A batch file of one step `name` with `body`, as block YAML (so that lines mean something).
pub fn batch_file(name: &str, body: &Value) -> String {
    let mut out = format!("- {name}:\n");
    emit(body, 4, &mut out);
    out
}

fn emit(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                out.push_str(&format!("{pad}{k}:"));
                inline_or_block(v, indent, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for v in items {
                out.push_str(&format!("{pad}-"));
                inline_or_block(v, indent, out);
            }
        }
        other => out.push_str(&format!("{pad}{other}\n")),
    }
}

fn inline_or_block(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            emit(value, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            emit(value, indent + 2, out);
        }
        // JSON scalars (and `{}` / `[]`) are YAML flow scalars as written.
        other => out.push_str(&format!(" {other}\n")),
    }
}
