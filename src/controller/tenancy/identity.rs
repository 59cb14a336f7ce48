//! The AWS identity a namespace's Sequences act as: the role its SequencePolicies name, or the
//! controller's own. A run pins the role it started with (`status.pinned`) and keeps it.

use std::sync::Arc;

use kube::ResourceExt;

use crate::api::sequence::PinnedSpec;
use crate::api::sequence_policy::{PolicyAws, SequencePolicy};
use crate::ecs::sessions::AssumedRole;

/// The role the Sequences of `namespace` run under: the one the `governing` policies name (all
/// that name one must name the same), or `None` for the controller's own identity.
pub fn assumed_role(
    namespace: &str,
    governing: &[Arc<SequencePolicy>],
) -> Result<Option<AssumedRole>, String> {
    let named: Vec<(String, &PolicyAws)> = governing
        .iter()
        .filter_map(|p| p.spec.aws.as_ref().map(|aws| (p.name_any(), aws)))
        .collect();
    let Some((_, first)) = named.first() else {
        return Ok(None);
    };
    if let Some((other, aws)) = named.iter().find(|(_, aws)| *aws != *first) {
        return Err(format!(
            "the SequencePolicies governing namespace {namespace} name different AWS identities ({} names {}, {other} names {}): an admin must make them agree",
            named[0].0, first.role_arn, aws.role_arn
        ));
    }
    Ok(Some(AssumedRole {
        role_arn: first.role_arn.clone(),
        external_id: first.external_id.clone(),
        namespace: namespace.to_owned(),
    }))
}

/// The role a started run acts as, from its pinned record.
pub fn pinned_role(pinned: &PinnedSpec, namespace: &str) -> Option<AssumedRole> {
    pinned.aws_role_arn.as_ref().map(|arn| AssumedRole {
        role_arn: arn.clone(),
        external_id: pinned.aws_external_id.clone(),
        namespace: namespace.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(name: &str, aws: serde_json::Value) -> Arc<SequencePolicy> {
        let mut spec = json!({"namespaces": {"names": ["team-a"]}});
        if !aws.is_null() {
            spec["aws"] = aws;
        }
        Arc::new(SequencePolicy::new(
            name,
            serde_json::from_value(spec).unwrap(),
        ))
    }

    #[test]
    fn the_governing_policies_name_one_role_or_none() {
        let role = "arn:aws:iam::111111111111:role/team-a";
        let with_role = policy("a", json!({"roleArn": role}));
        let without = policy("b", serde_json::Value::Null);
        assert_eq!(
            assumed_role("team-a", std::slice::from_ref(&without)),
            Ok(None)
        );
        let assumed = assumed_role("team-a", &[without.clone(), with_role.clone(), with_role])
            .unwrap()
            .unwrap();
        assert_eq!(assumed.role_arn, role);
        assert_eq!(assumed.namespace, "team-a");
        let other = policy("c", json!({"roleArn": role, "externalId": "x1"}));
        let conflict =
            assumed_role("team-a", &[policy("a", json!({"roleArn": role})), other]).unwrap_err();
        assert!(
            conflict.contains("different AWS identities") && conflict.contains("c names"),
            "{conflict}"
        );
    }
}
