//! The `Sequence` custom resource (`sequencer.dev/v1alpha1`): one run of a batch, like a Job.
//!
//! The spec holds the steps inline (the batch file's step model, camelCase) or names where to read a
//! seed-format batch file (S3 or a ConfigMap). The CRD in `crds/` is generated from these types by
//! `sequencer crd`; a test fails when the committed file is stale.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::json_text::JsonText;

use sequencer_core::plan::PlannedStep;
use sequencer_core::step::StepDefinition;

/// A batch of ECS tasks run strictly one after another, each launched exactly once.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sequencer.dev",
    version = "v1alpha1",
    kind = "Sequence",
    plural = "sequences",
    shortname = "seq",
    category = "sequencer",
    namespaced,
    status = "SequenceStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","jsonPath":".status.progress"}"#,
    printcolumn = r#"{"name":"Step","type":"string","jsonPath":".status.currentStepName"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SequenceSpec {
    /// The steps, in order (at most 1000). Give either `steps` or `source`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "strict_steps"
    )]
    #[schemars(length(max = 1000))]
    pub steps: Vec<PlannedStep>,
    /// Where to read a batch file in the seed's format. Give either `steps` or `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SequenceSource>,
    /// Seconds between two looks at running tasks (default: the controller's `--poll-interval`, 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub poll_interval_seconds: Option<u64>,
    /// Fail the whole run (stopping its tasks) once it has run this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<u64>,
    /// While true, no further step is launched; a running step is left to finish.
    #[serde(default)]
    pub suspend: bool,
    /// AWS region for ECS and S3 (default: the controller's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// Exactly one of `s3`, `configMap` and `git`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SequenceSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
}

/// A batch file in a git repository, fetched once when the run starts; the commit read is pinned
/// in `status.pinned.gitCommit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// The repository: `https://`, `http://` or `git://` (ssh is not supported).
    #[schemars(regex(pattern = r"^(https?|git)://[^/]+/.+"))]
    pub url: String,
    /// A branch, a tag or a full 40-digit commit SHA; absent: the remote's default branch.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub reference: Option<String>,
    /// The batch file's path in the repository.
    #[schemars(length(min = 1))]
    pub path: String,
    /// A Secret in the Sequence's namespace with `username` and `password` (a token as the
    /// password works with the common hosts): Flux's keys, or a `kubernetes.io/basic-auth`
    /// Secret. Read only when named; the controller needs the chart's `gitCredentials` value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    #[schemars(length(min = 1))]
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Source {
    /// `s3://bucket/key`.
    #[schemars(regex(pattern = r"^s3://[^/]+/.+"))]
    pub uri: String,
    /// Pin an object version (recommended with versioned buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSource {
    /// A ConfigMap in the Sequence's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The key holding the batch file.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// What the controller has seen and done. Conditions are the contract; `phase` is for display.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SequenceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `done/total`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The run itself: plan digest, steps, attempts, tasks, exit codes (see the CLI's state file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::opaque_object")]
    pub run: Option<JsonText>,
    /// The steps as pinned when the run started; a later edit of the spec does not change them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::opaque_list")]
    pub plan: Option<JsonText>,
    /// Where the pinned plan came from, and the spec it was resolved from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<PinnedSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::conditions")]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
}

/// What a run's plan was resolved from, recorded when the run starts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PinnedSpec {
    /// The generation whose spec the plan was resolved from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// SHA-256 of `spec.steps`, `spec.source` and `spec.region` at that generation.
    pub spec_digest: String,
    /// The AWS region the run's tasks are launched in.
    pub region: String,
    /// `spec.steps`, `configmap NAMESPACE/NAME key KEY`, or `s3://bucket/key`.
    pub source: String,
    /// The S3 object version read (with a versioned bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_etag: Option<String>,
    /// The IAM role the run acts as (its SequencePolicy's `aws.roleArn` when it started); absent:
    /// the controller's own identity. Kept for the whole run, so that its tasks are always
    /// described and stopped by the identity that launched them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_external_id: Option<String>,
    /// The commit a git source was read at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// SHA-256 of the batch file as read from the source (absent for inline steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<String>,
}

/// The digest that tells whether the parts of the spec a running plan is made from changed.
/// The steps, refusing an unknown key beside `name` at the top of a step. `PlannedStep` flattens
/// its definition, and serde cannot deny unknown fields through a flatten: `retryx: {...}` or
/// `timeoutSecond: 60` would be dropped without a word and the step launched without the setting
/// meant. Refused here, the Sequence is reported as undecodable, with the key path and the closest
/// known key.
fn strict_steps<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<PlannedStep>, D::Error> {
    use serde::de::Error as _;
    let raw = Vec::<serde_json::Map<String, Value>>::deserialize(deserializer)?;
    raw.into_iter()
        .enumerate()
        .map(|(i, mut body)| {
            let name = match body.remove("name") {
                Some(Value::String(name)) => name,
                Some(_) => return Err(D::Error::custom(format!("spec.steps[{i}].name: not text"))),
                None => return Err(D::Error::custom(format!("spec.steps[{i}].name: missing"))),
            };
            let definition = StepDefinition::deserialize(Value::Object(body))
                .map_err(|e| D::Error::custom(format!("spec.steps[{i}] ({name}): {e}")))?;
            Ok(PlannedStep { name, definition })
        })
        .collect()
}

pub fn spec_digest(spec: &SequenceSpec) -> String {
    use sha2::{Digest, Sha256};
    let parts = json!({"steps": spec.steps, "source": spec.source, "region": spec.region});
    let bytes = serde_json::to_vec(&parts).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `sha256:<hex>` of a batch file's text.
pub fn text_digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let hex: String = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The CRD as installed: the derived one, made structural where a field may take two shapes.
///
/// Kubernetes requires one type per schema node. `success.containers` is `all`, `essential` or a
/// list of names, so the API server is told to keep it as written, and the controller validates it
/// with the same checker the batch files use (same messages, same places).
pub fn crd() -> CustomResourceDefinition {
    super::schema::structural(Sequence::crd(), "/properties/spec/properties/steps/items")
}

/// The CRD as YAML, as `sequencer crd` prints it and `crds/` holds it.
pub fn crd_yaml() -> String {
    super::schema::to_yaml(&crd())
}
