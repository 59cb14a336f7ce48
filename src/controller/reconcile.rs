//! One reconcile of one Sequence: resolve its plan, drive the engine from `.status`, write
//! `.status` before every action, publish what happened, and say when to look again. Deleting a
//! Sequence stops its tasks first (finalizer).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::api::{Api, ResourceExt};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use sequencer_core::engine::mismatch;
use sequencer_core::observation::Observation;
use sequencer_core::plan::{Plan, PlannedStep};
use sequencer_core::status::RunStatus;
use tracing::Instrument;

use super::conditions::SPEC_CHANGED;
use super::events::{EventCollector, publish};
use super::json_text::JsonText;
use super::metrics::KindLabel;
use super::plan_source::{POLICY_DENIED, Resolved, check_remaining, resolve};
use super::poller::{ClusterKey, Owner, PolledEcs};
use super::sequence::{PinnedSpec, Sequence};
use super::sequence_policy::assumed_role;
use super::status_store::KubeStore;
use super::undecodable::{GuardedSequence, refuse_undecodable};
use super::{Context, Error, FINALIZER};
use crate::drive::{Driven, drive};
use crate::ecs::clients::RegionClients;
use crate::ecs::sessions::AssumedRole;

/// A running Sequence is looked at at least this often even when neither its tasks nor its
/// timers call for it: a safety net, not the way progress is made.
const RESYNC: Duration = Duration::from_secs(300);

/// How often a Sequence whose source could not be read tries again.
const SOURCE_RETRY: Duration = Duration::from_secs(20);

/// How often a Sequence with a batch source that a policy refused reads it again (the file may be
/// fixed where it is; a change of the Sequence or of the policies wakes it at once).
const POLICY_RECHECK: Duration = Duration::from_secs(60);

pub(crate) fn error_policy(_: Arc<GuardedSequence>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&KindLabel {
            kind: error.metric_label().into(),
        })
        .inc();
    // Conflicts resolve on the next read; stops are acknowledged within seconds; other errors
    // are usually transient API trouble.
    match error.innermost() {
        Error::Conflict => {
            tracing::debug!("status write conflicted; reconciling again from the stored status");
            Action::requeue(Duration::from_millis(200))
        }
        Error::TasksStopping => Action::requeue(Duration::from_secs(1)),
        // Waits for the status to be repaired; a change of the Sequence wakes it sooner.
        Error::HeldOnDeletion => Action::requeue(Duration::from_secs(60)),
        e => {
            tracing::warn!(error = %e, "reconcile failed; trying again in 5 s");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

pub(crate) async fn reconcile(
    guard: Arc<GuardedSequence>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    // `sequence`, not `name`: a JSON log line already uses `name` for the span's own name.
    let span = tracing::info_span!(
        "reconcile",
        namespace = guard.namespace().unwrap_or_default(),
        sequence = guard.name_any()
    );
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let result = reconcile_guarded(guard, &ctx).instrument(span).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_guarded(guard: Arc<GuardedSequence>, ctx: &Context) -> Result<Action, Error> {
    let Some(guard) = latest(guard, ctx).await? else {
        return Ok(Action::await_change());
    };
    let seq = match &guard.0 {
        Ok(seq) => Arc::new(seq.clone()),
        Err(invalid) => return refuse_undecodable(invalid, ctx).await,
    };
    let api: Api<Sequence> =
        Api::namespaced(ctx.client.clone(), &seq.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, seq, |event| async {
        match event {
            Finalizer::Apply(seq) => apply(&api, &seq, ctx, vec![Observation::Tick]).await,
            Finalizer::Cleanup(seq) => cleanup(&api, &seq, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// The cached copy, or the stored object when the cache has not caught up with this controller's
/// last write of it (see `freshness`); `None` when it is gone.
async fn latest(
    cached: Arc<GuardedSequence>,
    ctx: &Context,
) -> Result<Option<Arc<GuardedSequence>>, Error> {
    let uid = cached.uid();
    if ctx
        .freshness
        .is_current(uid.as_deref(), cached.resource_version().as_deref())
    {
        return Ok(Some(cached));
    }
    ctx.metrics.stale_cache_reads.inc();
    let api: Api<GuardedSequence> =
        Api::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    match api.get_opt(&cached.name_any()).await? {
        Some(mut stored) if stored.uid() == uid => {
            super::run::slim(&mut stored);
            tracing::debug!(
                cached = cached.resource_version(),
                stored = stored.resource_version(),
                "the cache is behind this controller's last write: using the stored Sequence"
            );
            ctx.freshness
                .saw(uid.as_deref(), stored.resource_version().as_deref());
            Ok(Some(Arc::new(stored)))
        }
        // Deleted (or deleted and created again: the new one arrives through the watch).
        _ => {
            ctx.freshness.forget(uid.as_deref());
            Ok(None)
        }
    }
}

/// A Warning Event on the Sequence.
async fn warn(ctx: &Context, reference: &ObjectReference, reason: &str, message: &str) {
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
fn owner_of(seq: &Sequence) -> Owner {
    ObjectRef::new(&seq.name_any()).within(&seq.namespace().unwrap_or_default())
}

/// Runs the Sequence as far as it can go now, then says when to look again.
async fn apply(
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
    // A deleted Sequence only stops its tasks, which no policy forbids.
    let governing = if deleting {
        Ok(Vec::new())
    } else {
        ctx.tenancy.synced().await;
        ctx.tenancy.governing(&namespace)
    };
    // A run acts as the identity pinned when it started; a new one as its policies say now.
    let (governing, role) = match pinned {
        Some(pinned) => (governing, pinned_role(pinned, &namespace)),
        None => match governing.map(|policies| {
            let role = assumed_role(&namespace, &policies);
            (policies, role)
        }) {
            Ok((policies, Ok(role))) => (Ok(policies), role),
            Ok((_, Err(why))) | Err(why) => (Err(why), None),
        },
    };
    // Every call for this Sequence is signed in a session naming it (see `ecs::sessions`).
    let clients = ctx
        .aws
        .for_sequence(region.as_deref(), role.as_ref(), &seq.name_any());
    let mut store = KubeStore::new(api.clone(), seq, ctx.freshness.clone());
    let client = &ctx.client;
    let interval = ctx.default_poll_interval_seconds;
    let resolved = match resolve(seq, &clients, client, &governing, interval).await {
        Ok(resolved) => resolved,
        Err(refusal) if refusal.reason == "InvalidStatus" => {
            // The pinned plan cannot be read: hold, never overwrite the run with a refusal.
            hold(seq, &mut store, ctx, "StatusUnreadable", &refusal.message).await?;
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
                "SourceError" => Action::requeue(SOURCE_RETRY),
                POLICY_DENIED if seq.spec.source.is_some() => Action::requeue(POLICY_RECHECK),
                _ => Action::await_change(),
            });
        }
    };
    let started = seq.status.as_ref().is_some_and(|s| s.plan.is_some());
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
    hold(seq, store, ctx, "StatusUnreadable", &unreadable).await?;
    Ok(None)
}

/// Holds the Sequence (see `KubeStore::hold`) with a Warning Event when it is newly held.
async fn hold(
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

/// The role a started run acts as, from its pinned record.
fn pinned_role(pinned: &PinnedSpec, namespace: &str) -> Option<AssumedRole> {
    pinned.aws_role_arn.as_ref().map(|arn| AssumedRole {
        role_arn: arn.clone(),
        external_id: pinned.aws_external_id.clone(),
        namespace: namespace.to_owned(),
    })
}

/// Whether the stored status says a policy holds the run.
fn held_by_policy(seq: &Sequence) -> bool {
    seq.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == super::conditions::HELD && c.status == "True" && c.reason == POLICY_DENIED
        })
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

/// The Sequence is being deleted: stop its running tasks, then let it go.
async fn cleanup(api: &Api<Sequence>, seq: &Sequence, ctx: &Context) -> Result<Action, Error> {
    if let Some(Err(e)) = stored_run(seq) {
        return cleanup_unreadable(api, seq, ctx, &e.to_string()).await;
    }
    let running = stored_run(seq)
        .and_then(Result::ok)
        .is_some_and(|r| !r.is_finished());
    if !running {
        let_go(seq, ctx);
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
        let_go(seq, ctx);
        Ok(Action::await_change())
    } else {
        Err(Error::TasksStopping)
    }
}

/// Forgets a deleted Sequence whose tasks have all stopped: the poller's watch, the freshness
/// record of its writes, and its STS session.
fn let_go(seq: &Sequence, ctx: &Context) {
    ctx.poller.release(&owner_of(seq));
    ctx.freshness.forget(seq.uid().as_deref());
    ctx.aws
        .forget_sequence(&seq.namespace().unwrap_or_default(), &seq.name_any());
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
        hold(seq, &mut store, ctx, "StatusUnreadable", &message).await?;
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
    let_go(seq, ctx);
    Ok(Action::await_change())
}

/// The run kept in `.status.run`, if the run has started.
fn stored_run(seq: &Sequence) -> Option<Result<RunStatus, serde_json::Error>> {
    let run = seq.status.as_ref()?.run.as_ref()?;
    Some(run.parse())
}
