//! What a ScheduledSequence reports: its `.status` (written through the status subresource by the
//! controller's field manager), its conditions, and the Events that explain a decision.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use sequencer_core::schedule::{RunState, ScheduleDecision, Skipped};
use serde_json::json;

use crate::api::conditions::{READY, SUSPENDED};
use crate::api::guarded_sequence::GuardedSequence;
use crate::api::scheduled_sequence::{
    ActiveRun, FinishedRun, ScheduledSequence, ScheduledSequenceStatus,
};
use crate::controller::error::Error;
use crate::controller::runtime::event_recorder::publish;
use crate::controller::runtime::freshness::Freshness;
use crate::controller::runtime::kube_client::FIELD_MANAGER;
use crate::controller::schedule::context::ScheduleContext;
use crate::controller::schedule::runs::{last_success, run_of};
use crate::controller::schedule::settings::{Settings, in_zone};

/// What one reconcile did, to be recorded.
pub struct Outcome<'a> {
    pub decision: &'a ScheduleDecision,
    /// The runs it found, and those it deleted or stopped.
    pub owned: &'a [GuardedSequence],
    pub deleted: Vec<&'a String>,
    /// The occurrence started now, and its run.
    pub started: Option<(Timestamp, String)>,
    /// The run-now request handled now, and its run.
    pub manual: Option<(String, String)>,
    /// The latest occurrence known to have started.
    pub recorded: Option<Timestamp>,
}

/// `status` after `outcome`: the schedule times, the active runs, the last finished one, and the
/// `Ready` and `Suspended` conditions.
pub fn record(
    status: &mut ScheduledSequenceStatus,
    parent: &ScheduledSequence,
    settings: &Settings,
    outcome: &Outcome,
) {
    let decision = outcome.decision;
    status.last_schedule_time = outcome.recorded.map(Time);
    status.next_schedule_time = (!parent.spec.suspend)
        .then_some(decision.next)
        .flatten()
        .map(Time);
    status.active = outcome
        .owned
        .iter()
        .filter(|s| {
            !outcome.deleted.contains(&&s.name_any()) && run_of(s).state == RunState::Active
        })
        .map(|s| ActiveRun {
            name: s.name_any(),
            uid: s.uid(),
        })
        .collect();
    let started = outcome.started.as_ref().map(|(_, run)| run);
    let manual = outcome.manual.as_ref().map(|(_, run)| run);
    for run in started.into_iter().chain(manual) {
        if !status.active.iter().any(|a| &a.name == run) {
            status.active.push(ActiveRun {
                name: run.clone(),
                uid: None,
            });
        }
    }
    if let Some((request, _)) = &outcome.manual {
        status.last_manual_run = Some(request.clone());
    }
    status.active_count = u32::try_from(status.active.len()).unwrap_or(u32::MAX);
    if let Some(newest) = outcome
        .owned
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
    if let Some(done) = last_success(outcome.owned)
        && status
            .last_successful_time
            .as_ref()
            .is_none_or(|t| t.0 < done)
    {
        status.last_successful_time = Some(Time(done));
    }
    let ready = format!(
        "next run at {}",
        decision
            .next
            .map_or("never".into(), |t| in_zone(t, &settings.zone))
    );
    set_condition(status, parent, READY, true, "Scheduled", &ready);
    let (suspended, reason, why) = if parent.spec.suspend {
        (true, "Suspended", "spec.suspend is true: no run starts")
    } else {
        (false, "NotSuspended", "spec.suspend is false")
    };
    set_condition(status, parent, SUSPENDED, suspended, reason, why);
}

/// Events for what was not started, and for many missed occurrences.
pub async fn report(
    ctx: &ScheduleContext,
    reference: &ObjectReference,
    d: &ScheduleDecision,
    settings: &Settings,
) {
    let zone = &settings.zone;
    // (metric label, Event type, reason, note) of each thing to say.
    let mut said: Vec<(&str, EventType, &str, String)> = Vec::new();
    if let Some(missed) = d.many_missed {
        said.push((
            "many_missed",
            EventType::Warning,
            "TooManyMissedTimes",
            format!(
                "{missed} or more occurrences were missed (was the controller down, or the clock wrong?); only the latest runs. Set or lower spec.startingDeadlineSeconds to skip old ones"
            ),
        ));
    }
    match d.skipped {
        Some(Skipped::AlreadyActive(t)) => said.push((
            "skipped_active",
            EventType::Normal,
            "RunSkipped",
            format!(
                "the run for {} did not start: the last run is still active and concurrencyPolicy is Forbid",
                in_zone(t, zone)
            ),
        )),
        Some(Skipped::TooLate(t)) => said.push((
            "missed_deadline",
            EventType::Warning,
            "MissedSchedule",
            format!(
                "the run for {} did not start: it is later than startingDeadlineSeconds allows",
                in_zone(t, zone)
            ),
        )),
        None => {}
    }
    for run in &d.stop {
        said.push((
            "replaced",
            EventType::Normal,
            "RunReplaced",
            format!(
                "stopping the active run {run} (concurrencyPolicy Replace): its tasks are stopped before the next run starts"
            ),
        ));
    }
    for (metric, type_, reason, note) in said {
        ctx.metrics.scheduled(metric);
        publish(&ctx.recorder, reference, type_, reason, &note).await;
    }
}

/// Writes `.status` through the status subresource (merge patch, the controller's field
/// manager), after `change` edits a copy of the current one; the version written is kept in
/// `freshness`, so that no later reconcile acts on an older copy.
pub async fn write_status(
    api: &Api<ScheduledSequence>,
    parent: &ScheduledSequence,
    freshness: &Freshness,
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
    let written = api
        .patch_status(
            &parent.name_any(),
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await?;
    freshness.saw(
        written.uid().as_deref(),
        written.resource_version().as_deref(),
    );
    Ok(())
}

/// Sets a condition, keeping its transition time while its status stays the same.
pub fn set_condition(
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
