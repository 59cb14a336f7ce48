//! A JSON value kept as its text: how the controller holds `.status.run` and `.status.plan` of
//! every Sequence in its watch cache. Those are the bulk of a Sequence, and a parsed
//! `serde_json::Value` costs several times its text in maps, keys and small allocations; at
//! 10,000 Sequences that difference is most of the controller's memory. The text is parsed only
//! by the reconcile that needs it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

#[derive(Clone, Debug)]
pub struct JsonText(Box<RawValue>);

impl JsonText {
    /// `value` serialized; `None` only when it cannot be (a map with non-string keys).
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Option<JsonText> {
        serde_json::value::to_raw_value(value).ok().map(JsonText)
    }

    /// The text, parsed into `T`.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// The text as a tree (for tests and tools, not the reconcile's hot path).
    pub fn to_value(&self) -> Value {
        self.parse().unwrap_or(Value::Null)
    }

    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

/// Equal when the JSON is: the API server stores objects with their keys sorted, the controller
/// writes them in field order, so the texts of equal values differ.
impl PartialEq for JsonText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
            || match (self.parse::<Value>(), other.parse::<Value>()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            }
    }
}

impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(JsonText)
    }
}

impl From<&Value> for JsonText {
    fn from(value: &Value) -> Self {
        // A Value always serializes.
        JsonText::of(value).unwrap_or_else(|| JsonText(RawValue::NULL.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_json_is_equal_whatever_the_key_order_and_spacing() {
        let written =
            JsonText::of(&json!({"phase": "Running", "steps": [{"b": 1, "a": 2}]})).unwrap();
        let stored: JsonText =
            serde_json::from_str(r#"{ "steps": [ {"a": 2, "b": 1} ], "phase": "Running" }"#)
                .unwrap();
        assert_eq!(written, stored);
        let other: JsonText = serde_json::from_str(r#"{"phase": "Succeeded"}"#).unwrap();
        assert_ne!(written, other);
    }

    #[test]
    fn it_round_trips_inside_an_object() {
        #[derive(Serialize, Deserialize)]
        struct Status {
            run: Option<JsonText>,
        }
        let status: Status = serde_json::from_str(r#"{"run": {"steps": [1, 2]}}"#).unwrap();
        let run = status.run.as_ref().unwrap();
        assert_eq!(run.to_value(), json!({"steps": [1, 2]}));
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            json!({"run": {"steps": [1, 2]}})
        );
        // Also when decoded from a tree, as kube's tooling sometimes does.
        let from_tree: Status = serde_json::from_value(json!({"run": {"x": true}})).unwrap();
        assert_eq!(from_tree.run.unwrap().to_value(), json!({"x": true}));
    }
}
