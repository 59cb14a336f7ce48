//! The Sequence CRD: generated from the Rust types, committed in crds/, and accepted by a real
//! kube-apiserver, whose own validation then rejects malformed Sequences.

mod support;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use support::apiserver::KubeServer;
use support::*;

const CRD_FILE: &str = "crds/sequences.sequencer.dev.yaml";
const SCHEDULED_CRD_FILE: &str = "crds/scheduledsequences.sequencer.dev.yaml";
const POLICY_CRD_FILE: &str = "crds/sequencepolicies.sequencer.dev.yaml";

#[test]
fn the_committed_crds_are_what_the_types_generate() {
    for (file, kind, generated) in [
        (CRD_FILE, "sequence", sequencer::api::sequence::crd_yaml()),
        (
            SCHEDULED_CRD_FILE,
            "scheduledsequence",
            sequencer::api::scheduled_sequence::crd_yaml(),
        ),
        (
            POLICY_CRD_FILE,
            "sequencepolicy",
            sequencer::api::sequence_policy::crd_yaml(),
        ),
    ] {
        let committed = std::fs::read_to_string(repo_root().join(file)).unwrap_or_default();
        assert!(
            committed == generated,
            "{file} is stale: regenerate it with `cargo run -- crd {kind} > {file}`"
        );
        let printed = std::process::Command::new(env!("CARGO_BIN_EXE_sequencer"))
            .args(["crd", kind])
            .output()
            .unwrap();
        assert!(printed.status.success());
        assert_eq!(
            String::from_utf8_lossy(&printed.stdout),
            committed,
            "`sequencer crd {kind}` prints the committed CRD"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_accepts_the_crd_and_enforces_its_schema() {
    let server = KubeServer::start();
    let client = server.client().await;
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(&std::fs::read_to_string(repo_root().join(CRD_FILE)).unwrap())
            .unwrap();
    support::apiserver::install_crd(&client, &crd).await;

    let api: Api<sequencer::api::sequence::Sequence> = Api::namespaced(client.clone(), "default");
    let good = json!({
        "apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence", "metadata": {"name": "nightly"},
        "spec": {"steps": [
            {"name": "extract", "type": "ecs_task", "parameters": {"cluster": "etl", "taskDefinition": "extract:1", "count": 2},
             "retry": {"limit": 2, "when": ["launch"]}, "success": {"containers": ["app"], "exitCodes": [0, 3]}},
            {"name": "load", "type": "ecs_task", "ignoreFailure": true, "parameters": {"taskDefinition": "load:1"}, "success": {"containers": "essential"}}
        ], "pollIntervalSeconds": 10}
    });
    let created = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(good).unwrap(),
        )
        .await
        .expect("a valid Sequence is accepted");
    assert_eq!(created.spec.steps.len(), 2);
    assert_eq!(
        created.spec.steps[1]
            .definition
            .success
            .as_ref()
            .map(|s| s.exit_codes.clone()),
        Some(vec![0])
    );

    for (bad, expected) in [
        (
            json!({"steps": [{"name": "a", "type": "ecs_task", "parameters": {"taskDefinition": "x", "count": 11}}]}),
            "spec.steps.parameters.count: Invalid value: 11",
        ),
        (
            json!({"steps": [{"name": "a", "type": "shell", "parameters": {"taskDefinition": "x"}}]}),
            "spec.steps.type",
        ),
        (
            json!({"steps": [{"name": "a", "type": "ecs_task", "parameters": {}}]}),
            "spec.steps.parameters.taskDefinition",
        ),
        (
            json!({"steps": [{"name": "a", "type": "ecs_task", "parameters": {"taskDefinition": "x", "launchType": "SERVERLESS"}}]}),
            "spec.steps.parameters.launchType",
        ),
        (
            json!({"source": {"s3": {"uri": "http://not-s3"}}}),
            "spec.source.s3.uri",
        ),
        (
            json!({"pollIntervalSeconds": 0}),
            "spec.pollIntervalSeconds",
        ),
    ] {
        // Untyped, so that only the API server judges the object.
        let resource = ::kube::core::ApiResource::erase::<sequencer::api::sequence::Sequence>(&());
        let raw: Api<::kube::core::DynamicObject> =
            Api::namespaced_with(client.clone(), "default", &resource);
        let object = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence", "metadata": {"name": "bad"}, "spec": bad});
        let err = raw
            .create(
                &PostParams::default(),
                &serde_json::from_value(object).unwrap(),
            )
            .await
            .expect_err("must be rejected");
        let ::kube::Error::Api(status) = err else {
            panic!("not an API error: {err}")
        };
        assert_eq!(status.code, 422, "{status:?}");
        assert!(
            status.message.contains(expected),
            "{expected:?} not in {:?}",
            status.message
        );
    }
    api.delete("nightly", &DeleteParams::default())
        .await
        .unwrap();

    // The example in examples/ is a valid Sequence.
    let text = std::fs::read_to_string(repo_root().join("examples/sequence.yaml")).unwrap();
    let example: sequencer::api::sequence::Sequence = serde_saphyr::from_str(&text).unwrap();
    let stored = api
        .create(&PostParams::default(), &example)
        .await
        .expect("examples/sequence.yaml is accepted");
    assert_eq!(stored.spec.steps.len(), 3);
}
