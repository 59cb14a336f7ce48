//! A deleted Sequence: its running tasks are stopped (the run is driven with a cancel) before the
//! finalizer lets it go; a run that cannot be read has its tasks found from what is derived from
//! it, or the Sequence is held rather than leave tasks running untracked.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ResourceExt};
use kube::runtime::controller::Action;
use sequencer_core::observation::Observation;
use sequencer_core::plan::PlannedStep;

use crate::api::conditions::STATUS_UNREADABLE;
use crate::api::sequence::Sequence;
use crate::controller::error::Error;
use crate::controller::sequence::apply::{apply, hold, owner, stored_run};
use crate::controller::sequence::context::Context;
use crate::controller::sequence::status_store::KubeStore;
use crate::controller::tenancy::identity::pinned_role;

/// The Sequence is being deleted: stop its running tasks, then let it go.
pub async fn cleanup(api: &Api<Sequence>, seq: &Sequence, ctx: &Context) -> Result<Action, Error> {
    if let Some(Err(e)) = stored_run(seq) {
        return cleanup_unreadable(api, seq, ctx, &e.to_string()).await;
    }
    let running = stored_run(seq)
        .and_then(Result::ok)
        .is_some_and(|r| !r.is_finished());
    if !running {
        let_go(&seq.metadata, ctx);
        return Ok(Action::await_change());
    }
    let deleted = Observation::CancelRequested {
        reason: "the Sequence was deleted".into(),
    };
    apply(api, seq, ctx, vec![Observation::Tick, deleted]).await?;
    // The finalizer is removed only once the run has ended (its stops acknowledged).
    let fresh = api.get(&seq.name_any()).await?;
    let finished = stored_run(&fresh)
        .and_then(Result::ok)
        .is_none_or(|r| r.is_finished());
    if finished {
        let_go(&seq.metadata, ctx);
        Ok(Action::await_change())
    } else {
        Err(Error::TasksStopping)
    }
}

/// Forgets a Sequence this controller no longer runs: one deleted once its tasks stopped, or one
/// its watch no longer selects (moved to another shard, whose controller takes it over): the
/// poller's watch of its tasks, the freshness record of its writes, and its STS session.
pub fn let_go(meta: &ObjectMeta, ctx: &Context) {
    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    ctx.poller.release(&owner(&namespace, &name));
    ctx.freshness.forget(meta.uid.as_deref());
    ctx.aws.forget_sequence(&namespace, &name);
}

/// Most lookups a deletion of an unreadable run may make (each is two ListTasks calls).
const MAX_ORPHAN_LOOKUPS: usize = 200;

/// A deleted Sequence whose run cannot be read: its tasks are found without the run, from what is
/// derived from it (each step's startedBy for every attempt its retry policy allows, in the pinned
/// plan, and the run tag naming this Sequence's run) and stopped before the finalizer goes. When
/// even that cannot be done (the plan is unreadable too, or too large to search), the Sequence is
/// held with its finalizer rather than leave tasks running untracked.
async fn cleanup_unreadable(
    api: &Api<Sequence>,
    seq: &Sequence,
    ctx: &Context,
    error: &str,
) -> Result<Action, Error> {
    let hold_with = |why: String| async move {
        let message = format!(
            "status.run cannot be read ({error}) and {why}, so the deleted Sequence's tasks cannot be found and stopped; \
             the finalizer stays until the status reads again (or is removed by hand once its tasks are stopped)"
        );
        let mut store = KubeStore::new(api.clone(), seq, ctx.freshness.clone());
        hold(seq, &mut store, ctx, STATUS_UNREADABLE, &message).await?;
        Err::<Action, Error>(Error::HeldOnDeletion)
    };
    let status = seq.status.as_ref();
    let Some(plan) = status.and_then(|s| s.plan.as_ref()) else {
        return hold_with("no plan is pinned".into()).await;
    };
    let steps: Vec<PlannedStep> = match plan.parse() {
        Ok(steps) => steps,
        Err(e) => return hold_with(format!("status.plan cannot be read either ({e})")).await,
    };
    let lookups: Vec<(usize, u32)> = steps
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            let attempts = s.definition.retry.as_ref().map_or(0, |r| r.limit) + 1;
            (1..=attempts).map(move |a| (i, a))
        })
        .collect();
    if lookups.len() > MAX_ORPHAN_LOOKUPS {
        let why = format!(
            "searching its {} possible launches would flood ECS",
            lookups.len()
        );
        return hold_with(why).await;
    }
    let run_id = seq.uid().unwrap_or_default();
    let pinned = status.and_then(|s| s.pinned.as_ref());
    let region = pinned.map(|p| p.region.clone());
    let namespace = seq.namespace().unwrap_or_default();
    let role = pinned.and_then(|p| pinned_role(p, &namespace));
    let ecs = &ctx
        .aws
        .for_sequence(region.as_deref(), role.as_ref(), &seq.name_any())
        .ecs;
    let mut running = 0;
    for (index, attempt) in lookups {
        let parameters = &steps[index].definition.parameters;
        let cluster = parameters.cluster.as_deref();
        let label = parameters.started_by.as_deref();
        let started_by = sequencer_core::identity::started_by(label, &run_id, index, attempt);
        let found = ecs.lookup(cluster, &started_by).await.map_err(Error::Ecs)?;
        for task in found
            .iter()
            .filter(|t| t.run_tag.as_deref() == Some(run_id.as_str()) && !t.is_finished())
        {
            running += 1;
            let reason = "sequencer: the Sequence was deleted";
            ecs.stop(cluster, &task.task_arn, reason)
                .await
                .map_err(Error::Ecs)?;
            tracing::info!(task_arn = %task.task_arn, "stopped a task of a deleted Sequence whose run cannot be read");
        }
    }
    if running > 0 {
        // Looked up again until every one of them reports STOPPED.
        return Err(Error::TasksStopping);
    }
    let_go(&seq.metadata, ctx);
    Ok(Action::await_change())
}
