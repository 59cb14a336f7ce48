//! Running a Sequence as far as it can go now: the identity it acts as, its plan (pinned when the
//! run starts), the policies' say over its next launch, the drive of the engine with `.status`
//! written before every action, the Events, and when to look again.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::api::{Api, ResourceExt};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use sequencer_core::engine::mismatch;
use sequencer_core::observation::Observation;
use sequencer_core::plan::Plan;
use sequencer_core::status::RunStatus;

use crate::api::conditions::{
    HELD, INVALID_STATUS, POLICY_DENIED, SOURCE_ERROR, SPEC_CHANGED, STATUS_UNREADABLE,
};
use crate::api::json_text::JsonText;
use crate::api::sequence::Sequence;
use crate::controller::error::Error;
use crate::controller::runtime::event_recorder::publish;
use crate::controller::sequence::context::Context;
use crate::controller::sequence::events::EventCollector;
use crate::controller::sequence::plan_source::{Resolved, check_remaining, resolve};
use crate::controller::sequence::status_store::KubeStore;
use crate::controller::tasks::owner::{ClusterKey, Owner};
use crate::controller::tasks::polled_ecs::PolledEcs;
use crate::controller::tenancy::identity::{assumed_role, pinned_role};
use crate::drive::{Driven, drive};
use crate::ecs::clients::RegionClients;
use crate::ecs::sessions::AssumedRole;

/// A running Sequence is looked at at least this often even when neither its tasks nor its
/// timers call for it: a safety net, not the way progress is made.
const RESYNC: Duration = Duration::from_secs(300);

/// How often a Sequence whose source could not be read tries again.
const SOURCE_RETRY: Duration = Duration::from_secs(20);

/// How soon a Sequence whose namespace the namespace watch has not seen yet looks again.
const NAMESPACE_WAIT: Duration = Duration::from_secs(2);

/// How often a Sequence with a batch source that a policy refused reads it again (the file may be
/// fixed where it is; a change of the Sequence or of the policies wakes it at once).
const POLICY_RECHECK: Duration = Duration::from_secs(60);

/// A Warning Event on the Sequence.
pub async fn warn(ctx: &Context, reference: &ObjectReference, reason: &str, message: &str) {
    publish(
        &ctx.recorder,
        reference,
        EventType::Warning,
        reason,
        message,
    )
    .await;
}

/// The poller's name for a Sequence.
pub fn owner_of(seq: &Sequence) -> Owner {
    owner(&seq.namespace().unwrap_or_default(), &seq.name_any())
}

/// The poller's name for the Sequence `name` in `namespace`.
pub fn owner(namespace: &str, name: &str) -> Owner {
    ObjectRef::new(name).within(namespace)
}

/// Runs the Sequence as far as it can go now, then says when to look again.
pub async fn apply(
    api: &Api<Sequence>,
    seq: &Sequence,
    ctx: &Context,
    observations: Vec<Observation>,
) -> Result<Action, Error> {
    let reference = seq.object_ref(&());
    let namespace = seq.namespace().unwrap_or_default();
    let pinned = seq.status.as_ref().and_then(|s| s.pinned.as_ref());
    let region = pinned
        .map(|p| p.region.clone())
        .or_else(|| seq.spec.region.clone());
    let deleting = seq.metadata.deletion_timestamp.is_some();
    let started = seq.status.as_ref().is_some_and(|s| s.plan.is_some());
    let recorded = pinned.and_then(|p| pinned_role(p, &namespace));
    let (governing, role) = if deleting {
        // A deleted Sequence only stops its tasks, which no policy forbids.
        (Ok(Vec::new()), recorded.clone())
    } else {
        ctx.tenancy.synced().await;
        if !ctx.tenancy.knows(&namespace) {
            // Its labels are not known yet, so neither are the policies that govern it: nothing is
            // judged, written or launched until the namespace watch catches up.
            tracing::debug!(%namespace, "waiting for the namespace watch to see the namespace");
            return Ok(Action::requeue(NAMESPACE_WAIT));
        }
        match ctx.tenancy.governing(&namespace).map(|policies| {
            let role = assumed_role(&namespace, &policies);
            (policies, role)
        }) {
            Ok((policies, Ok(role))) => (Ok(policies), role),
            // A started run goes on being followed (its next launch is held, see below).
            Err(why) if started => (Err(why), recorded.clone()),
            Ok((_, Err(why))) | Err(why) => (Err(why), None),
        }
    };
    // The identity a run acts as comes from the policies, never from its status, which a tenant
    // may write: a started run whose recorded identity is not the one the policies name now (a
    // status edited by hand, a run started before identities were recorded, a policy changed
    // mid-run) is held, neither acting as the one nor as the other, until they agree. A finished
    // run calls nothing more and is left as it ended.
    let finished = stored_run(seq)
        .and_then(Result::ok)
        .is_some_and(|run| run.is_finished());
    let disagree = !same_identity(recorded.as_ref(), role.as_ref());
    if started && !finished && !deleting && governing.is_ok() && disagree {
        let mut store = KubeStore::new(api.clone(), seq, ctx.freshness.clone());
        let name = |r: Option<&AssumedRole>| {
            r.map_or("the controller's own identity".to_owned(), |r| {
                format!("role {}", r.role_arn)
            })
        };
        let message = format!(
            "the run's status records {} but the SequencePolicies governing namespace {namespace} name {}: \
             a run acts only as its policies say, so it is held until they agree",
            name(recorded.as_ref()),
            name(role.as_ref())
        );
        hold(seq, &mut store, ctx, POLICY_DENIED, &message).await?;
        return Ok(Action::requeue(POLICY_RECHECK));
    }
    // Every call for this Sequence is signed in a session naming it (see `ecs::sessions`).
    let clients = ctx
        .aws
        .for_sequence(region.as_deref(), role.as_ref(), &seq.name_any());
    let mut store = KubeStore::new(api.clone(), seq, ctx.freshness.clone());
    let client = &ctx.client;
    let interval = ctx.default_poll_interval_seconds;
    let resolved = match resolve(seq, &clients, client, &governing, interval).await {
        Ok(resolved) => resolved,
        Err(refusal) if refusal.reason == INVALID_STATUS => {
            // The pinned plan cannot be read: hold, never overwrite the run with a refusal.
            hold(seq, &mut store, ctx, STATUS_UNREADABLE, &refusal.message).await?;
            return Ok(Action::await_change());
        }
        Err(refusal) => {
            tracing::warn!(reason = refusal.reason, message = %refusal.message, "refusing the Sequence");
            if store.refuse(refusal.reason, &refusal.message).await? {
                let (reason, message) = (refusal.reason, &refusal.message);
                warn(ctx, &reference, reason, message).await;
            }
            // A bad spec waits for an edit; a source may appear or become readable by itself
            // (the ConfigMap is created, the S3 permission granted), so it is read again. A
            // policy change wakes what it refused (see `tenancy::wakes`).
            return Ok(match refusal.reason {
                SOURCE_ERROR => Action::requeue(SOURCE_RETRY),
                POLICY_DENIED if seq.spec.source.is_some() => Action::requeue(POLICY_RECHECK),
                _ => Action::await_change(),
            });
        }
    };
    let Some(status) = stored_or_new_run(seq, &resolved, &mut store, ctx).await? else {
        return Ok(Action::await_change());
    };
    // A started run's next launches are checked against the policies as they are now. One they
    // forbid holds the run as `spec.suspend` would: its running tasks are still followed and
    // recorded, no new step or attempt is launched (a new run was checked whole in `resolve`).
    let launch_hold = (started && !deleting && !status.is_finished())
        .then(|| check_remaining(&governing, &resolved.plan, &status).err())
        .flatten();
    let held_plan;
    let plan = match &launch_hold {
        Some(_) => {
            held_plan = Plan {
                suspended: true,
                ..resolved.plan.clone()
            };
            &held_plan
        }
        None => &resolved.plan,
    };
    let newly_held = launch_hold.is_some() && !held_by_policy(seq);
    store.launch_hold = launch_hold
        .as_ref()
        .map(|refusal| (refusal.reason, refusal.message.clone()));
    let owner = owner_of(seq);
    let ecs = PolledEcs {
        clients,
        poller: &ctx.poller,
        owner: owner.clone(),
        poll_interval_seconds: plan.poll_interval_seconds,
        metrics: &ctx.metrics,
    };
    let mut sink = EventCollector::new(&ctx.metrics);
    // The Event for a spec changed mid-run goes with the first stored status that says so. That
    // write may come from any save of the drive, and a later save may then fail (a 409): announce
    // it before giving up on this reconcile, or the next one, seeing the condition already
    // stored, would never announce it.
    let reported = has_true_condition(seq, SPEC_CHANGED);
    let mut announced = false;
    let mut announce = async |store: &KubeStore| {
        if !announced
            && !reported
            && has_true_condition(store.object(), SPEC_CHANGED)
            && let Some(message) = &resolved.spec_changed
        {
            announced = true;
            warn(ctx, &reference, "SpecChangedDuringRun", message).await;
        }
    };
    let driven = drive(plan, status, observations, &ecs, &mut store, &mut sink).await;
    announce(&store).await;
    let driven = driven?;
    // The run may not have changed while the spec did: keep conditions and observedGeneration true.
    let refreshed = store.refresh(&driven.status).await;
    announce(&store).await;
    refreshed?;
    sink.publish_all(&ctx.recorder, &reference).await;
    if let Some(refusal) = &launch_hold
        && newly_held
    {
        tracing::warn!(message = %refusal.message, "holding the run: a SequencePolicy does not allow its next launch");
        let note = format!(
            "{}; the run is held: its running tasks are followed, nothing more is launched until the policy allows it",
            refusal.message
        );
        warn(ctx, &reference, refusal.reason, &note).await;
    }
    if driven.status.is_finished() {
        ctx.poller.release(&owner);
        ctx.aws.forget_sequence(&namespace, &seq.name_any());
        return Ok(Action::await_change());
    }
    hand_tasks_to_poller(ctx, &owner, &ecs.clients, plan, &driven.status);
    Ok(match (&launch_hold, next_look(&driven)) {
        // Judged again now and then even when nothing else would wake it (see POLICY_RECHECK).
        (Some(_), look) if look == Action::await_change() => Action::requeue(POLICY_RECHECK),
        (_, look) => look,
    })
}

/// Whether two identities are the same role (with the same external ID), or both the
/// controller's own.
fn same_identity(a: Option<&AssumedRole>, b: Option<&AssumedRole>) -> bool {
    let key = |r: Option<&AssumedRole>| r.map(|r| (r.role_arn.clone(), r.external_id.clone()));
    key(a) == key(b)
}

/// The run as stored in `.status`, or a new one (with the plan pinned for its first write).
/// `None` when the stored run cannot be read or does not fit its plan: the Sequence is held
/// (nothing launched, nothing overwritten) until it reads again.
async fn stored_or_new_run(
    seq: &Sequence,
    resolved: &Resolved,
    store: &mut KubeStore,
    ctx: &Context,
) -> Result<Option<RunStatus>, Error> {
    let started = seq.status.as_ref().is_some_and(|s| s.plan.is_some());
    if !started {
        store.plan = JsonText::of(&resolved.plan.steps);
        store.pinned = Some(resolved.pinned.clone());
    }
    store.spec_changed = resolved.spec_changed.clone();
    let unreadable = match stored_run(seq) {
        Some(Ok(status)) => match mismatch(&resolved.plan, &status) {
            None => return Ok(Some(status)),
            Some(why) => format!("status.run does not fit the pinned plan in status.plan: {why}"),
        },
        Some(Err(e)) => format!("status.run cannot be read: {e}"),
        None => {
            let run = RunStatus::new(seq.uid().unwrap_or_default(), &resolved.plan);
            return Ok(Some(run));
        }
    };
    hold(seq, store, ctx, STATUS_UNREADABLE, &unreadable).await?;
    Ok(None)
}

/// Holds the Sequence (see `KubeStore::hold`) with a Warning Event when it is newly held.
pub async fn hold(
    seq: &Sequence,
    store: &mut KubeStore,
    ctx: &Context,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    tracing::warn!(
        reason,
        message,
        "holding the Sequence: its status cannot be continued"
    );
    if store.hold(reason, message).await? {
        let note = format!("{message}; nothing is launched until the status can be read");
        warn(ctx, &seq.object_ref(&()), reason, &note).await;
    }
    Ok(())
}

/// Whether the stored status says a policy holds the run.
fn held_by_policy(seq: &Sequence) -> bool {
    seq.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == HELD && c.status == "True" && c.reason == POLICY_DENIED)
    })
}

/// Tasks launched in this reconcile are handed to the poller now, not at its next look.
fn hand_tasks_to_poller(
    ctx: &Context,
    owner: &Owner,
    clients: &RegionClients,
    plan: &Plan,
    run: &RunStatus,
) {
    for attempt in run.steps.iter().flat_map(|s| &s.attempts) {
        let arns = attempt.unfinished_task_arns();
        if !arns.is_empty() {
            let key = ClusterKey {
                region: clients.region.clone(),
                cluster: attempt.cluster.clone(),
                role: clients.role.clone(),
            };
            ctx.poller
                .answer(owner, &key, plan.poll_interval_seconds, &arns);
        }
    }
}

/// When to reconcile again: at the engine's next timer (the poller wakes the Sequence when its
/// tasks change), at the latest after `RESYNC`; never when nothing is due (e.g. suspended between
/// steps): then only a change of the Sequence wakes it.
fn next_look(driven: &Driven) -> Action {
    if driven.wake_at.is_none() {
        return Action::await_change();
    }
    let now = Timestamp::now();
    let wait = match driven.timer_at {
        Some(at) if at > now => at.duration_since(now).unsigned_abs().min(RESYNC),
        Some(_) => Duration::ZERO,
        None => RESYNC,
    };
    Action::requeue(wait.max(Duration::from_millis(100)))
}

fn has_true_condition(seq: &Sequence, type_: &str) -> bool {
    seq.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    })
}

/// The run kept in `.status.run`, if the run has started.
pub fn stored_run(seq: &Sequence) -> Option<Result<RunStatus, serde_json::Error>> {
    let run = seq.status.as_ref()?.run.as_ref()?;
    Some(run.parse())
}
