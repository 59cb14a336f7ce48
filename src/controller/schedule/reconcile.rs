//! One reconcile of a `ScheduledSequence`: read its runs (the Sequences it owns, found by label),
//! ask the rule (`sequencer_core::schedule::decide`) what to do, do it, record it in `.status`, and
//! requeue at the next occurrence. No polling: a run's change wakes its ScheduledSequence (the
//! controller watches the Sequences it owns).
//!
//! Exactly once per occurrence: the run is created *before* `.status` records it, under a name
//! derived from the occurrence (`<name>-<unix minutes>`), so a crash between the two or a second
//! reconcile finds the run already there (AlreadyExists) instead of making another, and the rule
//! counts an existing run's occurrence as started even when the status missed it.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use sequencer_core::schedule::{self, Run, ScheduleInput};

use crate::api::conditions::{INVALID_SPEC, READY};
use crate::api::guarded_sequence::GuardedSequence;
use crate::api::scheduled_sequence::ScheduledSequence;
use crate::api::sequence::Sequence;
use crate::controller::error::Error;
use crate::controller::runtime::event_recorder::publish;
use crate::controller::schedule::context::ScheduleContext;
use crate::controller::schedule::new_run::{manual_run, start_occurrence};
use crate::controller::schedule::runs::{owned_runs, run_of};
use crate::controller::schedule::schedule_status::{
    Outcome, record, report, set_condition, write_status,
};
use crate::controller::schedule::settings::settings_of;

/// A reconcile never sleeps longer than this, so that a clock jump is noticed within the hour.
const LONGEST_SLEEP: Duration = Duration::from_secs(3600);

pub async fn reconcile(
    cached: Arc<ScheduledSequence>,
    ctx: Arc<ScheduleContext>,
) -> Result<Action, Error> {
    let namespace = cached.namespace().unwrap_or_else(|| "default".into());
    let parents: Api<ScheduledSequence> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(parent) = latest(&parents, cached, &ctx).await? else {
        return Ok(Action::await_change());
    };
    let sequences: Api<Sequence> = Api::namespaced(ctx.client.clone(), &namespace);
    let guarded: Api<GuardedSequence> = Api::namespaced(ctx.client.clone(), &namespace);
    let reference = parent.object_ref(&());
    let now = Timestamp::now();

    let settings = match settings_of(&parent) {
        Ok(s) => s,
        Err(message) => {
            // A bad schedule or zone: nothing is created; the object waits for a change.
            write_status(&parents, &parent, &ctx.freshness, |status| {
                set_condition(status, &parent, READY, false, INVALID_SPEC, &message);
                status.next_schedule_time = None;
            })
            .await?;
            let warning = EventType::Warning;
            publish(&ctx.recorder, &reference, warning, INVALID_SPEC, &message).await;
            return Ok(Action::await_change());
        }
    };

    let owned = owned_runs(&guarded, &parent).await?;
    let runs: Vec<Run> = owned.iter().map(run_of).collect();
    let last = parent
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(|t| t.0);
    let decision = schedule::decide(&ScheduleInput {
        schedule: &settings.schedule,
        zone: &settings.zone,
        now,
        created: parent
            .meta()
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0),
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
        let run =
            start_occurrence(&ctx, &parent, &sequences, &settings, occurrence, &reference).await?;
        started = Some((occurrence, run));
    }

    let recorded = started
        .as_ref()
        .map(|(t, _)| *t)
        .or(decision.already_started)
        .max(last);
    let outcome = Outcome {
        decision: &decision,
        owned: &owned,
        deleted: decision.stop.iter().chain(&decision.delete).collect(),
        started,
        manual,
        recorded,
    };
    write_status(&parents, &parent, &ctx.freshness, |status| {
        record(status, &parent, &settings, &outcome)
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

/// The cached copy, or the stored one when the cache has not caught up with this controller's
/// last status write (see `runtime::freshness`): a schedule judged from an older
/// `lastScheduleTime`, whose run for an occurrence is already gone (history limit 0), would start
/// that occurrence again. `None` when it is gone.
async fn latest(
    parents: &Api<ScheduledSequence>,
    cached: Arc<ScheduledSequence>,
    ctx: &ScheduleContext,
) -> Result<Option<Arc<ScheduledSequence>>, Error> {
    let uid = cached.uid();
    let version = cached.resource_version();
    if ctx.freshness.is_current(uid.as_deref(), version.as_deref()) {
        return Ok(Some(cached));
    }
    ctx.metrics.stale_cache_reads.inc();
    match parents.get_opt(&cached.name_any()).await? {
        Some(stored) if stored.uid() == uid => {
            let stored_version = stored.resource_version();
            ctx.freshness.saw(uid.as_deref(), stored_version.as_deref());
            Ok(Some(Arc::new(stored)))
        }
        _ => {
            ctx.freshness.forget(uid.as_deref());
            Ok(None)
        }
    }
}

pub fn error_policy(_: Arc<ScheduledSequence>, error: &Error, _: Arc<ScheduleContext>) -> Action {
    tracing::warn!(error = %error, "scheduled sequence reconcile failed; trying again in 5 s");
    Action::requeue(Duration::from_secs(5))
}
