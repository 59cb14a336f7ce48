//! The Sequence controller: runs each Sequence with the same engine and the same drive loop as the
//! CLI, keeping the run in `.status` instead of a state file.
//!
//! Per reconcile: read the Sequence; resolve its plan (pinned in `.status` when the run starts: a
//! later spec edit does not change a running plan and is reported in the `SpecChanged` condition);
//! drive the engine until it asks for nothing more, writing `.status` before every action with the
//! object's resourceVersion as precondition (a stale read fails with a conflict and the next
//! reconcile starts from the stored status); then requeue at the engine's next timer. Running tasks
//! are watched by the shared poller (`poller.rs`), which wakes a Sequence when its tasks change.
//! Deleting a Sequence stops its tasks first (finalizer).

mod error;
mod events;
mod plan_source;
mod run;
mod status_store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, ResourceExt};
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource};
use tracing::Instrument;

pub use error::Error;
use events::{EventCollector, publish};
use plan_source::resolve;
pub use run::{RunError, Settings, run};
use status_store::KubeStore;

use crate::aws_clients::AwsClients;
use crate::conditions::{self, SPEC_CHANGED, conditions};
use crate::metrics::{KindLabel, Metrics};
use crate::observation::Observation;
use crate::plan::Plan;
use crate::poller::{ClusterKey, PolledEcs, Poller};
use crate::runner::drive;
use crate::sequence::Sequence;
use crate::status::RunStatus;

pub const FINALIZER: &str = "sequencer.dev/stop-tasks";
pub const FIELD_MANAGER: &str = "sequencer-controller";

/// A running Sequence is looked at at least this often even when neither its tasks nor its
/// timers call for it: a safety net, not the way progress is made.
const RESYNC: Duration = Duration::from_secs(300);

/// How often a Sequence whose source could not be read tries again.
const SOURCE_RETRY: Duration = Duration::from_secs(20);

pub struct Context {
    pub client: Client,
    pub aws: Arc<AwsClients>,
    pub recorder: Recorder,
    pub poller: Arc<Poller>,
    pub metrics: Arc<Metrics>,
    /// For Sequences without `spec.pollIntervalSeconds`.
    pub default_poll_interval_seconds: u64,
}

pub(crate) fn error_policy(
    _: Arc<DeserializeGuard<Sequence>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
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
        e => {
            tracing::warn!(error = %e, "reconcile failed; trying again in 5 s");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

pub(crate) async fn reconcile(
    guard: Arc<DeserializeGuard<Sequence>>,
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

async fn reconcile_guarded(
    guard: Arc<DeserializeGuard<Sequence>>,
    ctx: &Context,
) -> Result<Action, Error> {
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

/// A Sequence whose spec cannot be decoded: report it on the object itself and wait for a change.
async fn refuse_undecodable(invalid: &InvalidObject, ctx: &Context) -> Result<Action, Error> {
    let meta = &invalid.metadata;
    let (Some(name), Some(namespace)) = (meta.name.clone(), meta.namespace.clone()) else {
        return Ok(Action::await_change());
    };
    let resource = ApiResource::erase::<Sequence>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &namespace, &resource);
    let message = format!("the Sequence cannot be read: {}", invalid.error);
    let current = api.get(&name).await?;
    let previous: Vec<Condition> = current
        .data
        .pointer("/status/conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let run = RunStatus::new(meta.uid.clone().unwrap_or_default(), &Plan::new(vec![]));
    let cond_ctx = conditions::Context {
        refused: Some(("InvalidSpec", &message)),
        generation: meta.generation,
        ..Default::default()
    };
    let wanted = conditions(&previous, &run, &cond_ctx, Timestamp::now());
    if wanted == previous {
        return Ok(Action::await_change());
    }
    let patch = serde_json::json!({"status": {"phase": "Failed", "observedGeneration": meta.generation, "conditions": wanted}});
    // The same field manager as every other status write.
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.patch_status(&name, &params, &Patch::Merge(&patch))
        .await?;
    let reference = ObjectReference {
        api_version: Some(resource.api_version.clone()),
        kind: Some(resource.kind.clone()),
        name: Some(name),
        namespace: Some(namespace),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    };
    tracing::warn!(%message, "refusing an undecodable Sequence");
    publish(
        &ctx.recorder,
        &reference,
        EventType::Warning,
        "InvalidSpec",
        &message,
    )
    .await;
    Ok(Action::await_change())
}

/// The poller's name for a Sequence.
fn owner_of(seq: &Sequence) -> crate::poller::Owner {
    ObjectRef::new(&seq.name_any()).within(&seq.namespace().unwrap_or_default())
}

async fn apply(
    api: &Api<Sequence>,
    seq: &Sequence,
    ctx: &Context,
    observations: Vec<Observation>,
) -> Result<Action, Error> {
    let reference = seq.object_ref(&());
    let region = seq
        .status
        .as_ref()
        .and_then(|s| s.pinned.as_ref())
        .map(|p| p.region.clone())
        .or_else(|| seq.spec.region.clone());
    let clients = ctx.aws.region(region.as_deref());
    let mut store = KubeStore::new(api.clone(), seq);
    let resolved = match resolve(
        seq,
        &clients,
        &ctx.client,
        ctx.default_poll_interval_seconds,
    )
    .await
    {
        Ok(resolved) => resolved,
        Err(refusal) => {
            tracing::warn!(reason = refusal.reason, message = %refusal.message, "refusing the Sequence");
            if store.refuse(refusal.reason, &refusal.message).await? {
                publish(
                    &ctx.recorder,
                    &reference,
                    EventType::Warning,
                    refusal.reason,
                    &refusal.message,
                )
                .await;
            }
            // A bad spec waits for an edit; a source may appear or become readable by itself
            // (the ConfigMap is created, the S3 permission granted), so it is read again.
            return Ok(if refusal.reason == "SourceError" {
                Action::requeue(SOURCE_RETRY)
            } else {
                Action::await_change()
            });
        }
    };
    let plan = resolved.plan;
    let started = seq.status.as_ref().is_some_and(|s| s.plan.is_some());
    if !started {
        store.plan = serde_json::to_value(&plan.steps).ok();
        store.pinned = Some(resolved.pinned);
    }
    store.spec_changed = resolved.spec_changed.clone();
    let status = match stored_run(seq) {
        Some(Ok(status)) => status,
        Some(Err(e)) => {
            store
                .refuse("InvalidStatus", &format!("status.run cannot be read: {e}"))
                .await?;
            return Ok(Action::await_change());
        }
        None => RunStatus::new(seq.uid().unwrap_or_default(), &plan),
    };
    let owner = owner_of(seq);
    let ecs = PolledEcs {
        clients,
        poller: &ctx.poller,
        owner: owner.clone(),
        poll_interval_seconds: plan.poll_interval_seconds,
        metrics: &ctx.metrics,
    };
    let mut sink = EventCollector::new(&ctx.metrics);
    let driven = drive(&plan, status, observations, &ecs, &mut store, &mut sink).await?;
    // The run may not have changed while the spec did: keep conditions and observedGeneration true.
    let reported = has_true_condition(seq, SPEC_CHANGED);
    store.refresh(&driven.status).await?;
    let newly_changed = has_true_condition(store.object(), SPEC_CHANGED) && !reported;
    sink.publish_all(&ctx.recorder, &reference).await;
    if newly_changed && let Some(message) = &resolved.spec_changed {
        publish(
            &ctx.recorder,
            &reference,
            EventType::Warning,
            "SpecChangedDuringRun",
            message,
        )
        .await;
    }
    if driven.status.is_finished() {
        ctx.poller.release(&owner);
        return Ok(Action::await_change());
    }
    // Tasks launched in this reconcile are handed to the poller now, not at the next look.
    for attempt in driven.status.steps.iter().flat_map(|s| &s.attempts) {
        let arns = attempt.unfinished_task_arns();
        if !arns.is_empty() {
            let key = ClusterKey {
                region: ecs.clients.region.clone(),
                cluster: attempt.cluster.clone(),
            };
            ctx.poller
                .answer(&owner, &key, plan.poll_interval_seconds, &arns);
        }
    }
    // Nothing to wake for (e.g. suspended between steps): wait for the Sequence to change.
    if driven.wake_at.is_none() {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let wait = match driven.timer_at {
        Some(at) if at > now => at.duration_since(now).unsigned_abs().min(RESYNC),
        Some(_) => Duration::ZERO,
        None => RESYNC,
    };
    Ok(Action::requeue(wait.max(Duration::from_millis(100))))
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
    let running = stored_run(seq)
        .and_then(Result::ok)
        .is_some_and(|r| !r.is_finished());
    if !running {
        ctx.poller.release(&owner_of(seq));
        return Ok(Action::await_change());
    }
    apply(
        api,
        seq,
        ctx,
        vec![
            Observation::Tick,
            Observation::CancelRequested {
                reason: "the Sequence was deleted".into(),
            },
        ],
    )
    .await?;
    // The finalizer is removed only once the run has ended (its stops acknowledged).
    let fresh = api.get(&seq.name_any()).await?;
    let finished = stored_run(&fresh)
        .and_then(Result::ok)
        .is_none_or(|r| r.is_finished());
    if finished {
        ctx.poller.release(&owner_of(seq));
        Ok(Action::await_change())
    } else {
        Err(Error::TasksStopping)
    }
}

/// The run kept in `.status.run`, if the run has started.
fn stored_run(seq: &Sequence) -> Option<Result<RunStatus, serde_json::Error>> {
    let run = seq.status.as_ref()?.run.clone()?;
    Some(serde_json::from_value(run))
}
