//! The `SequencePolicy` custom resource (`sequencer.dev/v1alpha1`, cluster-scoped, for admins):
//! which namespaces it governs, and what their Sequences' steps may use. The allow-list rule is
//! `sequencer_core::policy`; this file says which policies govern a namespace, and `tenancy`
//! keeps them current for the controller.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use sequencer_core::policy::Allowed;
use serde::{Deserialize, Serialize};

/// What the Sequences of the selected namespaces may run. Every policy that selects a namespace
/// applies to it: a step must be allowed by each.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sequencer.dev",
    version = "v1alpha1",
    kind = "SequencePolicy",
    plural = "sequencepolicies",
    shortname = "seqpol",
    category = "sequencer",
    printcolumn = r#"{"name":"Namespaces","type":"string","jsonPath":".spec.namespaces.names"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SequencePolicySpec {
    /// The namespaces governed: those named, and those whose labels match the selector.
    pub namespaces: NamespaceSelection,
    /// What their steps and batch sources may use; a list left out allows anything.
    #[serde(default)]
    pub allowed: Allowed,
    /// The AWS identity their Sequences run under; left out, the controller's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<PolicyAws>,
}

/// An IAM role the controller assumes (STS AssumeRole) for every ECS, S3 and CloudWatch Logs call
/// of the governed Sequences, so that AWS IAM, not only this policy, bounds what they can do. Each
/// Sequence acts in a session named `sequencer-<namespace>_<name>` and tagged with both (see
/// `ecs::sessions`). The controller's own role then needs only `sts:AssumeRole` and
/// `sts:TagSession` on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyAws {
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$"))]
    pub role_arn: String,
    /// The external ID the role's trust policy asks for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224))]
    pub external_id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceSelection {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// A label selector on Namespaces (tenants usually cannot relabel their namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

impl SequencePolicySpec {
    /// Whether this policy governs the namespace `name` with `labels`.
    pub fn selects(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.namespaces.names.iter().any(|n| n == name)
            || self
                .namespaces
                .selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, labels))
    }
}

/// Kubernetes' label selector semantics: every matchLabels pair and every expression must hold.
/// An empty selector selects every namespace; an expression with an unknown operator selects none.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector.match_labels.iter().flatten();
    let labels_hold = pairs.into_iter().all(|(k, v)| labels.get(k) == Some(v));
    let expressions_hold = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_hold && expressions_hold
}

pub fn crd() -> CustomResourceDefinition {
    SequencePolicy::crd()
}

/// The CRD as YAML, as `crds/` holds it.
pub fn crd_yaml() -> String {
    super::schema::to_yaml(&crd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn spec(namespaces: serde_json::Value) -> SequencePolicySpec {
        serde_json::from_value(json!({"namespaces": namespaces})).unwrap()
    }

    #[test]
    fn a_policy_selects_by_name_or_by_labels() {
        let by_name = spec(json!({"names": ["team-a"]}));
        assert!(by_name.selects("team-a", &labels(&[])));
        assert!(!by_name.selects("team-b", &labels(&[("tenant", "a")])));

        let by_labels = spec(json!({"selector": {
            "matchLabels": {"tenant": "a"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["batch", "etl"]},
                {"key": "frozen", "operator": "DoesNotExist"},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "owner", "operator": "Exists"}
            ]
        }}));
        let good = [("tenant", "a"), ("tier", "etl"), ("owner", "x")];
        assert!(by_labels.selects("anything", &labels(&good)));
        for bad in [
            vec![("tenant", "b"), ("tier", "etl"), ("owner", "x")],
            vec![("tenant", "a"), ("tier", "web"), ("owner", "x")],
            vec![("tenant", "a"), ("tier", "etl")],
            vec![
                ("tenant", "a"),
                ("tier", "etl"),
                ("owner", "x"),
                ("frozen", ""),
            ],
            vec![
                ("tenant", "a"),
                ("tier", "etl"),
                ("owner", "x"),
                ("env", "prod"),
            ],
        ] {
            assert!(!by_labels.selects("anything", &labels(&bad)), "{bad:?}");
        }
        let everything = spec(json!({"selector": {}}));
        assert!(everything.selects("kube-system", &labels(&[])));
        let nothing = spec(json!({}));
        assert!(!nothing.selects("team-a", &labels(&[])));
        let unknown =
            spec(json!({"selector": {"matchExpressions": [{"key": "a", "operator": "Like"}]}}));
        assert!(!unknown.selects("team-a", &labels(&[("a", "1")])));
    }
}
