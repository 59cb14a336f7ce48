//! The `ScheduledSequence` custom resource (`sequencer.dev/v1alpha1`): creates a `Sequence` from its
//! template on a cron schedule in a time zone, like a CronJob creates Jobs. The rule deciding when
//! is `sequencer_core::schedule`; the reconcile is `schedule_reconcile.rs`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::api::sequence::SequenceSpec;

/// Creates a Sequence from `template` at each occurrence of `schedule` in `timeZone`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sequencer.dev",
    version = "v1alpha1",
    kind = "ScheduledSequence",
    plural = "scheduledsequences",
    shortname = "sseq",
    category = "sequencer",
    namespaced,
    status = "ScheduledSequenceStatus",
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Timezone","type":"string","jsonPath":".spec.timeZone"}"#,
    printcolumn = r#"{"name":"Suspend","type":"boolean","jsonPath":".spec.suspend"}"#,
    printcolumn = r#"{"name":"Active","type":"integer","jsonPath":".status.activeCount"}"#,
    printcolumn = r#"{"name":"Last Schedule","type":"date","jsonPath":".status.lastScheduleTime"}"#,
    printcolumn = r#"{"name":"Next","type":"date","jsonPath":".status.nextScheduleTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledSequenceSpec {
    /// Five cron fields (minute hour day-of-month month day-of-week, e.g. `30 2 * * *`) or
    /// `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    #[schemars(length(min = 1, max = 200))]
    pub schedule: String,
    /// An IANA time zone (`Europe/Berlin`); default UTC, not the controller's zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// `Forbid` (default: skip an occurrence while the last run is active; two overlapping runs of
    /// one batch are rarely wanted), `Allow`, or `Replace` (stop the active run, then start).
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// Skip an occurrence that cannot start within this many seconds of its time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub starting_deadline_seconds: Option<u64>,
    /// While true, no run is started; active runs go on.
    #[serde(default)]
    pub suspend: bool,
    /// Finished successful runs kept (default 3); older ones are deleted.
    #[serde(default = "three")]
    #[schemars(range(max = 100))]
    pub successful_runs_history_limit: u32,
    /// Finished failed runs kept (default 1).
    #[serde(default = "one")]
    #[schemars(range(max = 100))]
    pub failed_runs_history_limit: u32,
    /// The Sequence each run is.
    pub template: SequenceTemplate,
}

fn three() -> u32 {
    3
}

fn one() -> u32 {
    1
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConcurrencyPolicy {
    Allow,
    #[default]
    Forbid,
    Replace,
}

impl From<ConcurrencyPolicy> for sequencer_core::schedule::ConcurrencyPolicy {
    fn from(policy: ConcurrencyPolicy) -> Self {
        match policy {
            ConcurrencyPolicy::Allow => Self::Allow,
            ConcurrencyPolicy::Forbid => Self::Forbid,
            ConcurrencyPolicy::Replace => Self::Replace,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SequenceTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// A Sequence spec. Kept as written and decoded by the reconcile, so that a mistake in it
    /// (a misspelt step key) is reported on this object instead of hiding every ScheduledSequence
    /// from the controller's watch.
    #[schemars(schema_with = "sequence_spec")]
    pub spec: serde_json::Value,
}

/// The template's schema: the Sequence's spec, so that the API server checks it at apply time.
fn sequence_spec(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<SequenceSpec>()
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledSequenceStatus {
    /// The last occurrence a run was started for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the last successful run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// The newest finished run and how it ended (`Succeeded`, `Failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<FinishedRun>,
    /// The last `sequencer.dev/run-now` value a run was started for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_manual_run: Option<String>,
    /// The runs still going.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<ActiveRun>,
    /// How many (for `kubectl get`).
    #[serde(default)]
    pub active_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::conditions")]
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FinishedRun {
    pub name: String,
    pub phase: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveRun {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// The CRD as installed, made structural as the Sequence's (the template embeds a Sequence spec).
pub fn crd() -> CustomResourceDefinition {
    super::schema::structural(
        ScheduledSequence::crd(),
        "/properties/spec/properties/template/properties/spec/properties/steps/items",
    )
}

/// The CRD as YAML, as `crds/` holds it.
pub fn crd_yaml() -> String {
    super::schema::to_yaml(&crd())
}
