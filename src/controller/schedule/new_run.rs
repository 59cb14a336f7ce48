//! The Sequence a schedule creates: for an occurrence, named from it (`<name>-<unix minutes>`), or
//! for a run-now request, named from the request. Created *before* `.status` records it, so a
//! crash between the two, or a second reconcile, finds the run already there (AlreadyExists)
//! instead of making another.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::events::EventType;
use sequencer_core::schedule;

use crate::api::labels::{MANUAL, RUN_NOW, SCHEDULED_AT, SCHEDULED_BY, SHARD_LABEL};
use crate::api::scheduled_sequence::ScheduledSequence;
use crate::api::sequence::Sequence;
use crate::controller::error::Error;
use crate::controller::runtime::event_recorder::publish;
use crate::controller::schedule::context::ScheduleContext;
use crate::controller::schedule::settings::{Settings, in_zone};

/// Starts the run for `occurrence` (one already made by an earlier reconcile counts as started);
/// returns its name.
pub async fn start_occurrence(
    ctx: &ScheduleContext,
    parent: &ScheduledSequence,
    sequences: &Api<Sequence>,
    settings: &Settings,
    occurrence: Timestamp,
    reference: &ObjectReference,
) -> Result<String, Error> {
    let run = run_for(parent, occurrence, settings);
    let run_name = run.name_any();
    let note = format!(
        "started {run_name} for {}",
        in_zone(occurrence, &settings.zone)
    );
    create_run(ctx, sequences, &run, "started", &note, reference).await?;
    Ok(run_name)
}

/// Creates `run`, counted under `started` in the metrics and told in a `RunStarted` Event. A run
/// already there was made by an earlier reconcile that ended before recording it: it counts as
/// created, and is not announced twice.
async fn create_run(
    ctx: &ScheduleContext,
    sequences: &Api<Sequence>,
    run: &Sequence,
    started: &str,
    note: &str,
    reference: &ObjectReference,
) -> Result<(), Error> {
    match sequences.create(&PostParams::default(), run).await {
        Ok(_) => {
            ctx.metrics.scheduled(started);
            let normal = EventType::Normal;
            publish(&ctx.recorder, reference, normal, "RunStarted", note).await;
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The Sequence for `occurrence`: the template, owned by the ScheduledSequence (deleting it
/// deletes its runs), labelled and annotated with the occurrence, in its schedule's shard.
fn run_for(parent: &ScheduledSequence, occurrence: Timestamp, settings: &Settings) -> Sequence {
    let zone = &settings.zone;
    let name = schedule::run_name(&parent.name_any(), occurrence);
    let template = &parent.spec.template;
    let mut labels: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .map(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(SCHEDULED_BY.into(), parent.name_any());
    // A run belongs to its schedule's shard, whatever the template says: the shard that owns the
    // schedule watches its runs.
    match parent.labels().get(SHARD_LABEL) {
        Some(shard) => labels.insert(SHARD_LABEL.into(), shard.clone()),
        None => labels.remove(SHARD_LABEL),
    };
    let mut annotations: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .map(|m| m.annotations.clone())
        .unwrap_or_default();
    annotations.insert(SCHEDULED_AT.into(), in_zone(occurrence, zone));
    let mut run = Sequence::new(&name, settings.template.clone());
    run.metadata.namespace = parent.namespace();
    run.metadata.labels = Some(labels);
    run.metadata.annotations = Some(annotations);
    run.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "sequencer.dev/v1alpha1".into(),
        kind: "ScheduledSequence".into(),
        name: parent.name_any(),
        uid: parent.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    run
}

/// The run a new `sequencer.dev/run-now` value asks for: created (named after the value, so that
/// a retry finds it) and returned with the value, to be recorded as handled.
pub async fn manual_run(
    ctx: &ScheduleContext,
    parent: &ScheduledSequence,
    sequences: &Api<Sequence>,
    settings: &Settings,
    reference: &ObjectReference,
) -> Result<Option<(String, String)>, Error> {
    let Some(request) = parent.annotations().get(RUN_NOW) else {
        return Ok(None);
    };
    let handled = parent
        .status
        .as_ref()
        .and_then(|s| s.last_manual_run.as_ref());
    if handled == Some(request) {
        return Ok(None);
    }
    let mut run = run_for(parent, Timestamp::now(), settings);
    let name = manual_name(&parent.name_any(), request);
    run.metadata.name = Some(name.clone());
    if let Some(annotations) = run.metadata.annotations.as_mut() {
        annotations.remove(SCHEDULED_AT);
        annotations.insert(MANUAL.into(), request.clone());
    }
    let note = format!("started {name} by hand ({RUN_NOW}: {request})");
    create_run(ctx, sequences, &run, "manual", &note, reference).await?;
    Ok(Some((request.clone(), name)))
}

/// A manual run's name: the parent's, `-manual-` and a digest of the request, so that one request
/// makes one run and two requests cannot collide with each other or with a scheduled run.
pub fn manual_name(parent: &str, request: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest: String = Sha256::digest(request.as_bytes())
        .iter()
        .take(5)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{parent}-manual-{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::schedule::settings::settings_of;
    use serde_json::{Value, json};

    fn parent(labels: Value, template_labels: Value) -> ScheduledSequence {
        serde_json::from_value(json!({
            "apiVersion": "sequencer.dev/v1alpha1", "kind": "ScheduledSequence",
            "metadata": {"name": "nightly", "namespace": "etl", "uid": "u-1", "labels": labels},
            "spec": {"schedule": "0 2 * * *", "template": {
                "metadata": {"labels": template_labels},
                "spec": {"steps": [{"name": "a", "type": "ecs_task",
                                    "parameters": {"cluster": "c", "taskDefinition": "t"}}]}}}
        }))
        .expect("a valid ScheduledSequence")
    }

    fn run_labels(parent: &ScheduledSequence) -> BTreeMap<String, String> {
        let settings = settings_of(parent).expect("valid settings");
        let run = run_for(parent, Timestamp::UNIX_EPOCH, &settings);
        run.metadata.labels.unwrap_or_default()
    }

    #[test]
    fn a_run_belongs_to_its_schedules_shard_whatever_the_template_says() {
        let labels = run_labels(&parent(
            json!({SHARD_LABEL: "b"}),
            json!({SHARD_LABEL: "a", "team": "x"}),
        ));
        assert_eq!(labels.get(SHARD_LABEL).map(String::as_str), Some("b"));
        assert_eq!(labels.get("team").map(String::as_str), Some("x"));
        assert_eq!(
            labels.get(SCHEDULED_BY).map(String::as_str),
            Some("nightly")
        );

        let labels = run_labels(&parent(json!({}), json!({SHARD_LABEL: "a"})));
        assert_eq!(
            labels.get(SHARD_LABEL),
            None,
            "the default shard's runs: {labels:?}"
        );
    }
}
