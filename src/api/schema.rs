//! What the three CRDs' schemas share: conditions as a list-map, values kept as written, and the
//! changes that make a derived schema structural, as the API server requires.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

/// Conditions as a list-map keyed on `type`, as Kubernetes' own types declare them.
pub(super) fn conditions(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["type", "status", "lastTransitionTime", "reason", "message"],
            "properties": {
                "type": {"type": "string"},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "observedGeneration": {"type": "integer", "format": "int64"},
                "lastTransitionTime": {"type": "string", "format": "date-time"},
                "reason": {"type": "string"},
                "message": {"type": "string"}
            }
        }
    })
}

pub(super) fn opaque_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}})
}

pub(super) fn opaque_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// A derived CRD made structural, keeping unknown keys in the steps at `steps` (a JSON pointer
/// into the schema) for the controller to refuse with "did you mean".
pub(super) fn structural(
    mut crd: CustomResourceDefinition,
    steps: &str,
) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            let mut value = serde_json::to_value(&*schema).unwrap_or(Value::Null);
            structuralize(&mut value);
            if let Some(steps) = value.pointer_mut(steps) {
                keep_unknown_fields(steps);
            }
            if let Ok(fixed) = serde_json::from_value(value) {
                *schema = fixed;
            }
        }
    }
    crd
}

fn structuralize(node: &mut Value) {
    let Some(obj) = node.as_object_mut() else {
        return;
    };
    let mixed = obj
        .get("anyOf")
        .or_else(|| obj.get("oneOf"))
        .and_then(Value::as_array)
        .is_some_and(|alternatives| {
            let types: Vec<&Value> = alternatives.iter().filter_map(|a| a.get("type")).collect();
            types.len() != alternatives.len() || types.windows(2).any(|w| w[0] != w[1])
        });
    if mixed && !obj.contains_key("type") {
        let description = obj.get("description").cloned();
        obj.clear();
        if let Some(d) = description {
            obj.insert("description".into(), d);
        }
        obj.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
        return;
    }
    // `nullable: true` already admits null; an enum listing null is rejected by API servers that
    // check enum members against the type (1.20 does, with a misleading message).
    if let Some(Value::Array(members)) = obj.get_mut("enum") {
        members.retain(|m| !m.is_null());
    }
    for value in obj.values_mut() {
        match value {
            Value::Object(_) => structuralize(value),
            Value::Array(items) => items.iter_mut().for_each(structuralize),
            _ => {}
        }
    }
}

/// Unknown keys inside a step are kept by the API server instead of pruned, at every depth, so
/// that the controller sees a typo (`subnet` for `subnets`) and refuses the step with "did you
/// mean", whatever the client: pruning would silently launch the step without the setting meant.
fn keep_unknown_fields(node: &mut Value) {
    let Some(obj) = node.as_object_mut() else {
        return;
    };
    if obj.contains_key("properties") {
        obj.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
    }
    for value in obj.values_mut() {
        match value {
            Value::Object(_) => keep_unknown_fields(value),
            Value::Array(items) => items.iter_mut().for_each(keep_unknown_fields),
            _ => {}
        }
    }
}

/// A CRD as YAML, as `sequencer crd` prints it and `crds/` holds it.
pub fn to_yaml(crd: &CustomResourceDefinition) -> String {
    serde_saphyr::to_string(crd).unwrap_or_default()
}
