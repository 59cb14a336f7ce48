//! The chart's optional ValidatingAdmissionPolicy (`tenancy.admissionPolicy`) against the
//! controller's own allow-list check: for every combination below of a SequencePolicy's namespace
//! selection, a namespace and a Sequence's inline steps, the policy's CEL (evaluated by cel-python
//! with the Kubernetes string functions, tests/chart/vap.py) allows exactly what
//! `sequencer_core::policy::check` allows. The test API server (v1.20) does not serve the
//! admissionregistration v1 API (1.30+), so the manifest is checked against its Rust type, not
//! applied; the API server's compile-time type check of the expressions is not run here.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use sequencer::api::sequence_policy::SequencePolicySpec;
use sequencer_core::plan::PlannedStep;
use sequencer_core::policy::{self, Origin};
use serde_json::{Value, json};
use support::chart::*;
use support::repo_root;

const NAME: &str = "sequencer-sequence-allow-lists";

/// What the policy's CEL says of each case.
fn evaluate(vap: &Value, cases: &[Value]) -> Vec<Value> {
    let mut child = Command::new(helm_python())
        .arg(repo_root().join("tests/chart/vap.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run vap.py");
    let request = json!({"policy": vap, "cases": cases});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "vap.py failed");
    serde_json::from_slice(&out.stdout).expect("vap.py prints JSON")
}

fn step(parameters: Value) -> Value {
    let mut p = json!({"cluster": "etl", "taskDefinition": "quick:1", "launchType": "FARGATE"});
    if let (Some(p), Some(extra)) = (p.as_object_mut(), parameters.as_object()) {
        p.extend(extra.clone());
    }
    json!({"name": "load", "type": "ecs_task", "parameters": p})
}

#[test]
fn the_admission_policy_allows_exactly_what_the_controller_allows_of_inline_steps() {
    assert!(
        !render(json!({}))
            .unwrap()
            .iter()
            .any(|o| o["kind"] == "ValidatingAdmissionPolicy"),
        "off by default: older clusters do not serve the API"
    );
    let objects = render(json!({"tenancy": {"admissionPolicy": true}})).unwrap();
    let vap = find(&objects, "ValidatingAdmissionPolicy", NAME).clone();
    let binding = find(&objects, "ValidatingAdmissionPolicyBinding", NAME).clone();
    // Every field is one the API knows: the typed round trip drops nothing.
    let typed: ValidatingAdmissionPolicy = serde_json::from_value(vap.clone()).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), vap);
    let typed: ValidatingAdmissionPolicyBinding = serde_json::from_value(binding.clone()).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), binding);
    assert_eq!(binding["spec"]["policyName"], NAME);
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    assert_eq!(vap["spec"]["paramKind"]["kind"], "SequencePolicy");

    let allowed = json!({
        "regions": ["us-east-1"],
        "clusters": ["etl"],
        "taskDefinitions": ["quick", "team-*", "arn:aws:ecs:us-east-1:123456789012:task-definition/pinned"],
        "taskRoleArns": [],
        "executionRoleArns": ["arn:aws:iam::123456789012:role/exec"],
        "launchTypes": ["FARGATE"],
        "maxCount": 2,
        "commandOverrides": false,
        "environmentOverrides": false
    });
    let selections = [
        json!({"names": ["team-a"]}),
        json!({"selector": {"matchLabels": {"tenant": "a"},
                            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["batch"]},
                                                 {"key": "frozen", "operator": "DoesNotExist"}]}}),
    ];
    let namespaces = [
        json!({"metadata": {"name": "team-a"}}),
        json!({"metadata": {"name": "team-b", "labels": {"tenant": "a", "tier": "batch"}}}),
        json!({"metadata": {"name": "team-c", "labels": {"tenant": "a", "tier": "web"}}}),
        json!({"metadata": {"name": "team-d", "labels": {"tenant": "a", "tier": "batch", "frozen": "yes"}}}),
    ];
    let exec = "arn:aws:iam::123456789012:role/exec";
    let variants = [
        (json!({}), "us-east-1"),
        (json!({}), "eu-west-1"),
        (json!({"cluster": "prod"}), "us-east-1"),
        (
            json!({"cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/etl"}),
            "us-east-1",
        ),
        (json!({"taskDefinition": "team-x:3"}), "us-east-1"),
        (json!({"taskDefinition": "teamx:3"}), "us-east-1"),
        (json!({"taskDefinition": "other"}), "us-east-1"),
        (
            json!({"taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/quick:7"}),
            "us-east-1",
        ),
        (
            json!({"taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/pinned:2"}),
            "us-east-1",
        ),
        (json!({"launchType": "EC2"}), "us-east-1"),
        (json!({"launchType": null}), "us-east-1"),
        (json!({"count": 2}), "us-east-1"),
        (json!({"count": 3}), "us-east-1"),
        (
            json!({"overrides": {"taskRoleArn": "arn:aws:iam::123456789012:role/admin"}}),
            "us-east-1",
        ),
        (
            json!({"overrides": {"executionRoleArn": exec}}),
            "us-east-1",
        ),
        (
            json!({"overrides": {"executionRoleArn": "arn:aws:iam::123456789012:role/other"}}),
            "us-east-1",
        ),
        (
            json!({"overrides": {"containerOverrides": [{"name": "app", "command": ["run"]}]}}),
            "us-east-1",
        ),
        (
            json!({"overrides": {"containerOverrides": [{"name": "app", "environment": [{"name": "A", "value": "1"}]}]}}),
            "us-east-1",
        ),
        (
            json!({"overrides": {"containerOverrides": [{"name": "app", "cpu": 256}]}}),
            "us-east-1",
        ),
    ];

    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for selection in &selections {
        let spec: SequencePolicySpec =
            serde_json::from_value(json!({"namespaces": selection, "allowed": allowed})).unwrap();
        let params = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "SequencePolicy",
                            "metadata": {"name": "team-a"}, "spec": spec});
        for namespace in &namespaces {
            for (parameters, region) in &variants {
                let mut steps = vec![step(json!({})), step(parameters.clone())];
                if parameters["launchType"].is_null() && parameters.get("launchType").is_some() {
                    steps[1]["parameters"]
                        .as_object_mut()
                        .unwrap()
                        .remove("launchType");
                }
                let planned: Vec<PlannedStep> =
                    serde_json::from_value(Value::Array(steps.clone())).unwrap();
                let name = namespace["metadata"]["name"].as_str().unwrap();
                let labels = serde_json::from_value(namespace["metadata"]["labels"].clone())
                    .unwrap_or_default();
                let verdict = !spec.selects(name, &labels)
                    || policy::check("team-a", &spec.allowed, region, &Origin::Inline, &planned)
                        .is_ok();
                expected.push((verdict, format!("{name} {region} {parameters} {selection}")));
                cases.push(json!({
                    "object": {"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence",
                               "metadata": {"name": "nightly", "namespace": name},
                               "spec": {"region": region, "steps": steps}},
                    "namespaceObject": namespace,
                    "params": params,
                }));
            }
        }
    }
    // An S3 source's bucket is judged too (its steps only by the controller, once read).
    let spec: SequencePolicySpec = serde_json::from_value(
        json!({"namespaces": {"names": ["team-a"]}, "allowed": {"sourceBuckets": ["team-a-batches"]}}),
    )
    .unwrap();
    for bucket in ["team-a-batches", "someone-elses"] {
        let origin = Origin::S3 {
            bucket: bucket.into(),
        };
        let verdict = policy::check("team-a", &spec.allowed, "us-east-1", &origin, &[]).is_ok();
        expected.push((verdict, format!("bucket {bucket}")));
        cases.push(json!({
            "object": {"spec": {"region": "us-east-1",
                                "source": {"s3": {"uri": format!("s3://{bucket}/nightly.yml")}}}},
            "namespaceObject": namespaces[0],
            "params": {"metadata": {"name": "team-a"}, "spec": spec},
        }));
    }

    // And a git source's URL.
    let spec: SequencePolicySpec = serde_json::from_value(
        json!({"namespaces": {"names": ["team-a"]}, "allowed": {"gitUrlPrefixes": ["https://git.example.com/team-a/"]}}),
    )
    .unwrap();
    for url in [
        "https://git.example.com/team-a/batches.git",
        "https://git.example.com/team-b/batches.git",
    ] {
        let origin = Origin::Git { url: url.into() };
        let verdict = policy::check("team-a", &spec.allowed, "us-east-1", &origin, &[]).is_ok();
        expected.push((verdict, format!("git {url}")));
        cases.push(json!({
            "object": {"spec": {"region": "us-east-1",
                                "source": {"git": {"url": url, "path": "nightly.yml"}}}},
            "namespaceObject": namespaces[0],
            "params": {"metadata": {"name": "team-a"}, "spec": spec},
        }));
    }
    let results = evaluate(&vap, &cases);
    assert_eq!(results.len(), cases.len());
    let (mut allowed_count, mut refused_count) = (0, 0);
    for ((verdict, what), result) in expected.iter().zip(&results) {
        assert_eq!(result["errors"], json!([]), "{what}: {result}");
        assert_eq!(
            result["allowed"].as_bool(),
            Some(*verdict),
            "{what}: the controller says {verdict}, the admission policy {result}"
        );
        if *verdict {
            allowed_count += 1;
        } else {
            assert!(
                result["messages"][0]
                    .as_str()
                    .is_some_and(|m| m.contains("SequencePolicy team-a")),
                "{what}: {result}"
            );
            refused_count += 1;
        }
    }
    // Both verdicts are well represented: the comparison is not trivially all-allow.
    assert!(
        allowed_count >= 20 && refused_count >= 20,
        "{allowed_count} allowed, {refused_count} refused"
    );
}
