//! One reconcile of a `ScheduledSequence`: read its runs (the Sequences it owns, found by label),
//! ask the rule (`sequencer_core::schedule::decide`) what to do, do it, record it in `.status`, and
//! requeue at the next occurrence. No polling: a run's change wakes its ScheduledSequence (the
//! controller watches the Sequences it owns).
//!
//! Exactly once per occurrence: the run is created *before* `.status` records it, under a name
//! derived from the occurrence (`<name>-<unix minutes>`), so a crash between the two or a second
//! reconcile finds the run already there (AlreadyExists) instead of making another, and the rule
//! counts an existing run's occurrence as started even when the status missed it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, ResourceExt};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Client, Resource};
use sequencer_core::schedule::{
    self, Run, RunState, Schedule, ScheduleDecision, ScheduleInput, Skipped,
};
use serde_json::json;

use super::event_recorder::EventRecorder;
use super::events::publish;
use super::metrics::Metrics;
use super::scheduled_sequence::{
    ActiveRun, FinishedRun, ScheduledSequence, ScheduledSequenceStatus,
};
use super::sequence::{Sequence, SequenceSpec};
use super::shard::SHARD_LABEL;
use super::undecodable::GuardedSequence;
use super::{Error, FIELD_MANAGER};

/// The label on each run naming its ScheduledSequence.
pub const SCHEDULED_BY: &str = "sequencer.dev/scheduled-sequence";
/// The annotation on each run: the occurrence it was started for (RFC 3339, in the zone).
pub const SCHEDULED_AT: &str = "sequencer.dev/scheduled-at";
/// The longest ScheduledSequence name: a run's name adds `-` and up to 10 digits of minutes.
pub const MAX_NAME: usize = 52;

/// The annotation asking for a run now (`sequencer trigger`, or `kubectl annotate`): any new value
/// starts one run, named after the value, whatever the schedule and the concurrency policy (as
/// `kubectl create job --from=cronjob/...` does).
pub const RUN_NOW: &str = "sequencer.dev/run-now";
/// The annotation on a manual run: the request it answers.
pub const MANUAL: &str = "sequencer.dev/manual";

pub struct ScheduleContext {
    pub client: Client,
    pub recorder: EventRecorder,
    pub metrics: Arc<Metrics>,
}

/// A reconcile never sleeps longer than this, so that a clock jump is noticed within the hour.
const LONGEST_SLEEP: Duration = Duration::from_secs(3600);

pub async fn reconcile(
    parent: Arc<ScheduledSequence>,
    ctx: Arc<ScheduleContext>,
) -> Result<Action, Error> {
    let namespace = parent.namespace().unwrap_or_else(|| "default".into());
    let name = parent.name_any();
    let parents: Api<ScheduledSequence> = Api::namespaced(ctx.client.clone(), &namespace);
    let sequences: Api<Sequence> = Api::namespaced(ctx.client.clone(), &namespace);
    // Listed guarded: one malformed run must not hide the others.
    let guarded: Api<GuardedSequence> = Api::namespaced(ctx.client.clone(), &namespace);
    let reference = parent.object_ref(&());
    let now = Timestamp::now();

    let settings = match settings_of(&parent) {
        Ok(s) => s,
        Err(message) => {
            // A bad schedule or zone: nothing is created; the object waits for a change.
            write_status(&parents, &parent, |status| {
                set_condition(status, &parent, "Ready", false, "InvalidSpec", &message);
                status.next_schedule_time = None;
            })
            .await?;
            publish(
                &ctx.recorder,
                &reference,
                EventType::Warning,
                "InvalidSpec",
                &message,
            )
            .await;
            return Ok(Action::await_change());
        }
    };

    let owned = guarded
        .list(&ListParams::default().labels(&format!("{SCHEDULED_BY}={name}")))
        .await?
        .items
        .into_iter()
        .filter(|s| is_owned_by(s, &parent))
        .collect::<Vec<_>>();
    let runs: Vec<Run> = owned.iter().map(run_of).collect();
    let created = parent
        .meta()
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0);
    let last = parent
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(|t| t.0);
    let decision = schedule::decide(&ScheduleInput {
        schedule: &settings.schedule,
        zone: &settings.zone,
        now,
        created,
        last_scheduled: last,
        suspend: parent.spec.suspend,
        starting_deadline: parent
            .spec
            .starting_deadline_seconds
            .map(|s| SignedDuration::from_secs(i64::try_from(s).unwrap_or(i64::MAX))),
        policy: parent.spec.concurrency_policy.into(),
        runs: &runs,
        successful_history: parent.spec.successful_runs_history_limit as usize,
        failed_history: parent.spec.failed_runs_history_limit as usize,
    });

    report(&ctx, &reference, &decision, &settings).await;
    for stale in decision.stop.iter().chain(&decision.delete) {
        // Deleting a run stops its tasks through the Sequence's own finalizer.
        match sequences.delete(stale, &DeleteParams::background()).await {
            Ok(_) => tracing::info!(run = %stale, "deleted a run"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let manual = manual_run(&ctx, &parent, &sequences, &settings, &reference).await?;
    let mut started = None;
    if let Some(occurrence) = decision.start {
        let run = run_for(&parent, occurrence, &settings);
        let run_name = run.name_any();
        match sequences.create(&PostParams::default(), &run).await {
            Ok(_) => {
                ctx.metrics.scheduled("started");
                publish(
                    &ctx.recorder,
                    &reference,
                    EventType::Normal,
                    "RunStarted",
                    &format!(
                        "started {run_name} for {}",
                        in_zone(occurrence, &settings.zone)
                    ),
                )
                .await;
            }
            // Created by an earlier reconcile that ended before recording it.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        started = Some((occurrence, run_name));
    }

    let recorded = started
        .as_ref()
        .map(|(t, _)| *t)
        .or(decision.already_started)
        .max(last);
    let deleted: Vec<&String> = decision.stop.iter().chain(&decision.delete).collect();
    write_status(&parents, &parent, |status| {
        status.last_schedule_time = recorded.map(Time);
        status.next_schedule_time = (!parent.spec.suspend)
            .then_some(decision.next)
            .flatten()
            .map(Time);
        status.active = owned
            .iter()
            .filter(|s| !deleted.contains(&&s.name_any()) && run_of(s).state == RunState::Active)
            .map(|s| ActiveRun {
                name: s.name_any(),
                uid: s.uid(),
            })
            .collect();
        if let Some((_, run)) = &started
            && !status.active.iter().any(|a| &a.name == run)
        {
            status.active.push(ActiveRun {
                name: run.clone(),
                uid: None,
            });
        }
        if let Some((request, run)) = &manual {
            status.last_manual_run = Some(request.clone());
            if !status.active.iter().any(|a| &a.name == run) {
                status.active.push(ActiveRun {
                    name: run.clone(),
                    uid: None,
                });
            }
        }
        status.active_count = u32::try_from(status.active.len()).unwrap_or(u32::MAX);
        if let Some(newest) = owned
            .iter()
            .map(run_of)
            .filter(|r| matches!(r.state, RunState::Succeeded | RunState::Failed))
            .max_by_key(|r| (r.scheduled.unwrap_or(r.created), r.created))
        {
            status.last_run = Some(FinishedRun {
                phase: if newest.state == RunState::Succeeded {
                    "Succeeded"
                } else {
                    "Failed"
                }
                .into(),
                name: newest.name,
            });
        }
        if let Some(done) = last_success(&owned) {
            let newer = status
                .last_successful_time
                .as_ref()
                .is_none_or(|t| t.0 < done);
            if newer {
                status.last_successful_time = Some(Time(done));
            }
        }
        let ready = format!(
            "next run at {}",
            decision
                .next
                .map_or("never".into(), |t| in_zone(t, &settings.zone))
        );
        set_condition(status, &parent, "Ready", true, "Scheduled", &ready);
        let (suspended, why) = if parent.spec.suspend {
            (true, "spec.suspend is true: no run starts")
        } else {
            (false, "spec.suspend is false")
        };
        set_condition(
            status,
            &parent,
            "Suspended",
            suspended,
            if suspended {
                "Suspended"
            } else {
                "NotSuspended"
            },
            why,
        );
    })
    .await?;

    let wake = decision
        .wake_at
        .map(|t| t.duration_since(Timestamp::now()))
        .map_or(LONGEST_SLEEP, |d| {
            Duration::try_from(d).unwrap_or_default() + Duration::from_millis(100)
        })
        .min(LONGEST_SLEEP);
    Ok(Action::requeue(wake))
}

pub fn error_policy(_: Arc<ScheduledSequence>, error: &Error, _: Arc<ScheduleContext>) -> Action {
    tracing::warn!(error = %error, "scheduled sequence reconcile failed; trying again in 5 s");
    Action::requeue(Duration::from_secs(5))
}

struct Settings {
    schedule: Schedule,
    zone: TimeZone,
    template: SequenceSpec,
}

/// The schedule and zone, or why they are refused (naming the field).
fn settings_of(parent: &ScheduledSequence) -> Result<Settings, String> {
    let name = parent.name_any();
    if name.len() > MAX_NAME {
        return Err(format!(
            "metadata.name: {} characters; at most {MAX_NAME}, so that each run's name (the name, `-` and the occurrence in minutes) stays a valid name",
            name.len()
        ));
    }
    let schedule =
        Schedule::parse(&parent.spec.schedule).map_err(|e| format!("spec.schedule: {e}"))?;
    let zone = match parent.spec.time_zone.as_deref() {
        None => TimeZone::UTC,
        Some(zone) => TimeZone::get(zone).map_err(|_| {
            format!("spec.timeZone: `{zone}` is not a time zone; give an IANA name such as UTC, Europe/Berlin or America/New_York")
        })?,
    };
    let template = serde_json::from_value::<SequenceSpec>(parent.spec.template.spec.clone())
        .map_err(|e| {
            format!(
                "spec.template.{}",
                e.to_string().trim_start_matches("spec.")
            )
        })?;
    Ok(Settings {
        schedule,
        zone,
        template,
    })
}

fn is_owned_by(run: &GuardedSequence, parent: &ScheduledSequence) -> bool {
    let uid = parent.uid();
    run.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
}

fn phase_of(run: &GuardedSequence) -> Option<&str> {
    match &run.0 {
        Ok(seq) => seq.status.as_ref().and_then(|s| s.phase.as_deref()),
        // Refused by the Sequence controller as unreadable: it will never run.
        Err(_) => Some("Failed"),
    }
}

/// A run as the rule sees it.
fn run_of(run: &GuardedSequence) -> Run {
    let scheduled = run
        .annotations()
        .get(SCHEDULED_AT)
        .and_then(|t| t.parse::<Timestamp>().ok());
    let created = run
        .meta()
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    let phase = phase_of(run);
    let state = if run.meta().deletion_timestamp.is_some() {
        RunState::Deleting
    } else {
        match phase {
            Some("Succeeded") => RunState::Succeeded,
            Some("Failed") => RunState::Failed,
            _ => RunState::Active,
        }
    };
    Run {
        name: run.name_any(),
        scheduled,
        created,
        state,
    }
}

/// The one field of a stored run that schedules look at.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunEnd {
    completion_time: Option<Timestamp>,
}

/// When the newest successful run finished.
fn last_success(runs: &[GuardedSequence]) -> Option<Timestamp> {
    runs.iter()
        .filter_map(|r| r.0.as_ref().ok())
        .filter(|r| r.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        .filter_map(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.run.as_ref())
                .and_then(|run| run.parse::<RunEnd>().ok())
                .and_then(|run| run.completion_time)
        })
        .max()
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

/// RFC 3339 in the ScheduledSequence's zone (`2026-03-29T03:00:00+02:00`).
fn in_zone(t: Timestamp, zone: &TimeZone) -> String {
    t.to_zoned(zone.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// The run a new `sequencer.dev/run-now` value asks for: created (named after the value, so that
/// a retry finds it) and returned with the value, to be recorded as handled.
async fn manual_run(
    ctx: &ScheduleContext,
    parent: &ScheduledSequence,
    sequences: &Api<Sequence>,
    settings: &Settings,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
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
    match sequences.create(&PostParams::default(), &run).await {
        Ok(_) => {
            ctx.metrics.scheduled("manual");
            let note = format!("started {name} by hand ({RUN_NOW}: {request})");
            publish(
                &ctx.recorder,
                reference,
                EventType::Normal,
                "RunStarted",
                &note,
            )
            .await;
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
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

/// Events for what was not started, and for many missed occurrences.
async fn report(
    ctx: &ScheduleContext,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    d: &ScheduleDecision,
    settings: &Settings,
) {
    let zone = &settings.zone;
    if let Some(missed) = d.many_missed {
        ctx.metrics.scheduled("many_missed");
        let note = format!(
            "{missed} or more occurrences were missed (was the controller down, or the clock wrong?); only the latest runs. Set or lower spec.startingDeadlineSeconds to skip old ones"
        );
        publish(
            &ctx.recorder,
            reference,
            EventType::Warning,
            "TooManyMissedTimes",
            &note,
        )
        .await;
    }
    match d.skipped {
        Some(Skipped::AlreadyActive(t)) => {
            ctx.metrics.scheduled("skipped_active");
            let note = format!(
                "the run for {} did not start: the last run is still active and concurrencyPolicy is Forbid",
                in_zone(t, zone)
            );
            publish(
                &ctx.recorder,
                reference,
                EventType::Normal,
                "RunSkipped",
                &note,
            )
            .await;
        }
        Some(Skipped::TooLate(t)) => {
            ctx.metrics.scheduled("missed_deadline");
            let note = format!(
                "the run for {} did not start: it is later than startingDeadlineSeconds allows",
                in_zone(t, zone)
            );
            publish(
                &ctx.recorder,
                reference,
                EventType::Warning,
                "MissedSchedule",
                &note,
            )
            .await;
        }
        None => {}
    }
    for run in &d.stop {
        ctx.metrics.scheduled("replaced");
        let note = format!(
            "stopping the active run {run} (concurrencyPolicy Replace): its tasks are stopped before the next run starts"
        );
        publish(
            &ctx.recorder,
            reference,
            EventType::Normal,
            "RunReplaced",
            &note,
        )
        .await;
    }
}

/// Writes `.status` through the status subresource (merge patch, the controller's field
/// manager), after `change` edits a copy of the current one.
async fn write_status(
    api: &Api<ScheduledSequence>,
    parent: &ScheduledSequence,
    change: impl FnOnce(&mut ScheduledSequenceStatus),
) -> Result<(), Error> {
    let mut status = parent.status.clone().unwrap_or_default();
    change(&mut status);
    status.observed_generation = parent.meta().generation;
    if parent.status.as_ref() == Some(&status) {
        return Ok(());
    }
    // A merge patch leaves out what is absent: clear what is no longer set.
    let mut value = serde_json::to_value(&status).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        for key in ["lastScheduleTime", "lastSuccessfulTime", "nextScheduleTime"] {
            fields.entry(key).or_insert(serde_json::Value::Null);
        }
        fields.entry("active").or_insert(json!([]));
    }
    let patch = json!({ "status": value });
    api.patch_status(
        &parent.name_any(),
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Sets a condition, keeping its transition time while its status stays the same.
fn set_condition(
    status: &mut ScheduledSequenceStatus,
    parent: &ScheduledSequence,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
) {
    let value = if value { "True" } else { "False" };
    let previous = status.conditions.iter().find(|c| c.type_ == type_);
    let transition = match previous {
        Some(c) if c.status == value => c.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    let condition = Condition {
        type_: type_.into(),
        status: value.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: parent.meta().generation,
        last_transition_time: transition,
    };
    status.conditions.retain(|c| c.type_ != type_);
    status.conditions.push(condition);
    status.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

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
