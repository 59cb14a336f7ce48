//! A YAML document as a tree in which every node and every key remembers where it was written.
//!
//! The batch file is validated against the Rust types' JSON schema (see `validate.rs`), and every
//! error must name a line and column. serde's derive stops at the first error and loses positions
//! on the way, so we first read the document into this tree with `serde-saphyr`'s `Spanned`, then
//! walk it ourselves and report every problem at once.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// 1-based line and column in the source text. Line 0 means "unknown".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    fn from_location(loc: &serde_saphyr::Location) -> Self {
        Pos {
            line: loc.line(),
            column: loc.column(),
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One node of the document with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub at: Pos,
}

/// A mapping key: always read as text (YAML allows `1:` or `true:` as keys; they become "1", "true").
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub at: Pos,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Sequence(Vec<Node>),
    /// Entries in document order. Repeated keys are kept so that validation can report them.
    Mapping(Vec<(Key, Node)>),
}

impl Value {
    /// What kind of YAML value this is, for messages such as "expected a list, found text".
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Number(n) if n.is_f64() => "a decimal number",
            Value::Number(_) => "a whole number",
            Value::String(_) => "text",
            Value::Sequence(_) => "a list",
            Value::Mapping(_) => "a mapping",
        }
    }
}

/// A YAML syntax error, with its position when the parser knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub at: Pos,
    pub message: String,
}

/// How deep a batch file may nest (lists and mappings).
pub const MAX_DEPTH: usize = 32;

/// Parses one YAML document. An empty document is `Value::Null` at 1:1.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    if text.trim().is_empty() {
        return Ok(Node {
            value: Value::Null,
            at: Pos { line: 1, column: 1 },
        });
    }
    match read_spanned(text) {
        Ok(spanned) => Ok(Node {
            at: Pos::from_location(&spanned.referenced),
            value: spanned.value,
        }),
        Err(err) => {
            let at = err
                .location()
                .map(|l| Pos::from_location(&l))
                .unwrap_or_default();
            let mut message = err.to_string();
            // The library appends " at line L column C"; we print the position ourselves.
            if let Some(cut) = message.find(" at line ") {
                message.truncate(cut);
            }
            if message.contains("budget breached: Depth") || message.contains("recursion limit") {
                message = format!(
                    "nested more than {MAX_DEPTH} levels deep (lists and mappings); no batch file \
                     needs that many"
                );
            }
            Err(SyntaxError { at, message })
        }
    }
}

/// The library's reader, on a thread with a stack of `READER_STACK` bytes (reserved, touched only
/// as used), or on this thread if no thread can be started.
fn read_spanned(text: &str) -> Result<Spanned<Value>, serde_saphyr::Error> {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("yaml-reader".into())
            .stack_size(READER_STACK)
            .spawn_scoped(scope, || {
                serde_saphyr::from_str_with_options(text, reader_options())
            });
        match worker {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => serde_saphyr::from_str_with_options(text, reader_options()),
        }
    })
}

fn reader_options() -> serde_saphyr::options::Options {
    let mut options = serde_saphyr::options::Options::default();
    // Repeated keys reach our visitor, which keeps both so the error can name both places.
    options.duplicate_keys = serde_saphyr::options::DuplicateKeyPolicy::PassThrough;
    // YAML 1.2 booleans only: with YAML 1.1's, a key `on:` (as in `retry: {on: [...]}`) or a value
    // `no` (a country code, a flag name) silently becomes a boolean.
    options.strict_booleans = true;
    // Our own message names the position; the library's source snippet would repeat it.
    options.with_snippet = false;
    // Reading a node costs stack in proportion to its depth (over 30 KiB a level in a debug
    // build), so a deep file is refused at MAX_DEPTH, and read on a thread of its own with a
    // stack that holds MAX_DEPTH levels many times over, whatever stack the caller has (the
    // controller's workers have 2 MiB). The deepest a batch step goes is about 12 levels (a tag
    // of a managed EBS volume).
    let mut budget = serde_saphyr::budget::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    // A thousand steps of every option are far fewer events than this; an alias bomb (anchors
    // replayed into each other) stops at it instead of costing seconds of CPU.
    budget.max_events = 200_000;
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = 50_000;
    options.alias_limits.max_replay_stack_depth = MAX_DEPTH;
    options
}

/// The YAML reader's stack: room for MAX_DEPTH levels many times over.
const READER_STACK: usize = 64 << 20;

/// A JSON value as a node tree without positions (line 0): for input that did not come from YAML
/// text, such as a Kubernetes object, so that it can be checked like a batch file.
pub fn from_json(value: &serde_json::Value) -> Node {
    let value = match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Number(n.clone()),
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::Sequence(items.iter().map(from_json).collect()),
        serde_json::Value::Object(entries) => Value::Mapping(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        Key {
                            name: k.clone(),
                            at: Pos::default(),
                        },
                        from_json(v),
                    )
                })
                .collect(),
        ),
    };
    Node {
        value,
        at: Pos::default(),
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("numbers must be finite (no .nan or .inf)"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(Node {
                at: Pos::from_location(&item.referenced),
                value: item.value,
            });
        }
        Ok(Value::Sequence(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value::<Spanned<Value>>()?;
            entries.push((
                Key {
                    name: key.value.0,
                    at: Pos::from_location(&key.referenced),
                },
                Node {
                    at: Pos::from_location(&value.referenced),
                    value: value.value,
                },
            ));
        }
        Ok(Value::Mapping(entries))
    }
}

/// A mapping key read as text, whatever scalar it was written as.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a plain mapping key (text, number or boolean)")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyText, E> {
                Ok(KeyText(String::new()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Anchors replayed into each other (6^11 nodes if expanded) are refused at the replay
    /// budget instead of being expanded.
    #[test]
    fn an_alias_bomb_is_refused_not_expanded() {
        let mut text = String::from("x0: &l0 [a, a, a, a, a, a, a, a]\n");
        for level in 1..12 {
            let refs = vec![format!("*l{}", level - 1); 6].join(", ");
            text.push_str(&format!("x{level}: &l{level} [{refs}]\n"));
        }
        let error = parse(&text).expect_err("refused");
        assert!(
            error.message.contains("alias replay limit"),
            "{}",
            error.message
        );
    }

    /// A document nested far past the limit is refused, not a stack overflow, even on a thread
    /// with a small stack (the controller's workers have 2 MiB).
    #[test]
    fn deep_nesting_is_refused_on_a_small_stack() {
        let documents = [
            format!("- a: {}1{}", "[".repeat(5000), "]".repeat(5000)),
            format!("- a: {}1{}", "{a: ".repeat(5000), "}".repeat(5000)),
            (0..200).fold(String::from("- a:\n"), |mut text, depth| {
                text.push_str(&" ".repeat(2 * depth + 4));
                text.push_str("b:\n");
                text
            }),
        ];
        for document in documents {
            let result = std::thread::Builder::new()
                .stack_size(1 << 20)
                .spawn(move || parse(&document).map(|_| ()))
                .expect("thread")
                .join()
                .expect("no overflow, no panic");
            let error = result.expect_err("refused");
            assert!(
                error.message.contains("nested more than 32 levels deep"),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn positions_are_kept_for_keys_values_and_items() {
        let doc = parse("- a:\n    type: ecs_task\n    count: 3\n").unwrap();
        let Value::Sequence(items) = &doc.value else {
            panic!("not a list: {doc:?}")
        };
        assert_eq!(items[0].at.line, 1);
        let Value::Mapping(step) = &items[0].value else {
            panic!()
        };
        assert_eq!(step[0].0.name, "a");
        let Value::Mapping(body) = &step[0].1.value else {
            panic!()
        };
        assert_eq!(body[1].0.name, "count");
        assert_eq!(body[1].0.at, Pos { line: 3, column: 5 });
        assert_eq!(body[1].1.value, Value::Number(3.into()));
    }

    #[test]
    fn repeated_keys_are_kept_in_order() {
        let doc = parse("a: 1\na: 2\n").unwrap();
        let Value::Mapping(m) = doc.value else {
            panic!()
        };
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].0.at.line, 2);
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("- a:\n  b: [1, 2\n").unwrap_err();
        assert!(err.at.line >= 2, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn on_yes_and_no_are_text_not_booleans() {
        let doc = parse("on: [a]\nx: no\ny: true\n").unwrap();
        let Value::Mapping(m) = doc.value else {
            panic!()
        };
        assert_eq!(m[0].0.name, "on");
        assert_eq!(m[1].1.value, Value::String("no".into()));
        assert_eq!(m[2].1.value, Value::Bool(true));
    }

    #[test]
    fn empty_text_is_null() {
        assert_eq!(parse("  \n").unwrap().value, Value::Null);
    }
}
