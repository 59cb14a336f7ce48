//! The Sequence controller: runs each Sequence with the same engine and the same drive loop as the
//! CLI, keeping the run in `.status` instead of a state file.
//!
//! Per reconcile: read the Sequence; pin its plan in `.status` when the run starts (a later spec
//! edit does not change a running plan); drive the engine until it asks for nothing more, writing
//! `.status` before every action with the object's resourceVersion as precondition (a stale read
//! fails with a conflict and the next reconcile starts from the stored status); then requeue at the
//! engine's wake time. Deleting a Sequence stops its tasks first (finalizer).
//!
//! Not built yet (see the issue): the shared poller, metrics and health endpoints, leader election.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams, ResourceExt};
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter as EventReporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde_json::Value;

use crate::action::RunEvent;
use crate::conditions::{self, conditions};
use crate::ecs::Ecs;
use crate::observation::Observation;
use crate::plan::{Plan, PlannedStep};
use crate::runner::{EventSink, StatusStore, drive};
use crate::sequence::{Sequence, SequenceStatus};
use crate::status::{RunPhase, RunStatus, StepPhase};

pub const FINALIZER: &str = "sequencer.dev/stop-tasks";
pub const FIELD_MANAGER: &str = "sequencer-controller";

pub struct Context {
    pub client: Client,
    pub s3: aws_sdk_s3::Client,
    pub recorder: Recorder,
    pub ecs: Ecs,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(
        "the Sequence changed while being reconciled; the next reconcile starts from its stored status"
    )]
    Conflict,
    /// Deletion waits until the Sequence's tasks have acknowledged StopTask; keeping the
    /// finalizer needs an error here (the finalizer helper removes it on success).
    #[error("the deleted Sequence's tasks are still being stopped")]
    TasksStopping,
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self.innermost() {
            Error::Kube(_) => "kube",
            Error::Conflict => "conflict",
            Error::TasksStopping => "tasks_stopping",
            Error::Finalizer(_) => "finalizer",
        }
    }

    /// Reconcile errors come wrapped by the finalizer helper; policies are about the cause.
    pub fn innermost(&self) -> &Error {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Finalizer(inner) => match inner.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.innermost(),
                _ => self,
            },
            other => other,
        }
    }
}

/// Runs the controller until SIGTERM or Ctrl-C. Running ECS tasks are left running: the next
/// controller resumes them from `.status`.
pub async fn run(client: Client, ecs: Ecs, s3: aws_sdk_s3::Client, namespace: Option<String>) {
    // Through DeserializeGuard, a Sequence that cannot be decoded (the API server keeps
    // `success.containers` as written) is handed to reconcile as an error instead of failing the
    // whole watch, which would stall every other Sequence.
    let sequences: Api<DeserializeGuard<Sequence>> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let recorder = Recorder::new(
        client.clone(),
        EventReporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let ctx = Arc::new(Context {
        client,
        s3,
        recorder,
        ecs,
    });
    Controller::new(sequences, watcher::Config::default().any_semantic())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::warn!(error = %e, "reconcile failed");
            }
        })
        .await;
}

fn error_policy(_: Arc<DeserializeGuard<Sequence>>, error: &Error, _: Arc<Context>) -> Action {
    // Conflicts resolve on the next read; stops are acknowledged within seconds; other errors
    // are usually transient API trouble.
    match error.innermost() {
        Error::Conflict => Action::requeue(Duration::from_millis(200)),
        Error::TasksStopping => Action::requeue(Duration::from_secs(1)),
        _ => Action::requeue(Duration::from_secs(5)),
    }
}

async fn reconcile(
    guard: Arc<DeserializeGuard<Sequence>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let seq = match &guard.0 {
        Ok(seq) => Arc::new(seq.clone()),
        Err(invalid) => return refuse_undecodable(invalid, &ctx).await,
    };
    let api: Api<Sequence> =
        Api::namespaced(ctx.client.clone(), &seq.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, seq, |event| async {
        match event {
            Finalizer::Apply(seq) => apply(&api, &seq, &ctx, vec![Observation::Tick]).await,
            Finalizer::Cleanup(seq) => cleanup(&api, &seq, &ctx).await,
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
        suspended: false,
    };
    let wanted = conditions(&previous, &run, &cond_ctx, Timestamp::now());
    if wanted == previous {
        return Ok(Action::await_change());
    }
    let patch = serde_json::json!({"status": {"phase": "Failed", "observedGeneration": meta.generation, "conditions": wanted}});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
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
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: "InvalidSpec".into(),
        note: Some(message.chars().take(1024).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(error = %e, "could not publish an event");
    }
    Ok(Action::await_change())
}

/// The plan pinned in `.status` when the run started, else the one the spec gives now.
async fn plan_of(seq: &Sequence, ctx: &Context) -> Result<Plan, (&'static str, String)> {
    let pinned = seq.status.as_ref().and_then(|s| s.plan.clone());
    let steps: Vec<PlannedStep> = match pinned {
        Some(plan) => serde_json::from_value(plan)
            .map_err(|e| ("InvalidStatus", format!("status.plan cannot be read: {e}")))?,
        None if seq.spec.source.is_some() && !seq.spec.steps.is_empty() => {
            return Err((
                "InvalidSpec",
                "give either spec.steps or spec.source, not both".into(),
            ));
        }
        None if seq.spec.source.is_some() => read_source(seq, ctx).await?,
        None if seq.spec.steps.is_empty() => {
            return Err((
                "InvalidSpec",
                "spec.steps is empty: give at least one step (or spec.source)".into(),
            ));
        }
        None => {
            check_steps(&seq.spec.steps)?;
            seq.spec.steps.clone()
        }
    };
    let mut plan = Plan::new(steps);
    if let Some(seconds) = seq.spec.poll_interval_seconds {
        plan.poll_interval_seconds = seconds;
    }
    // Run options are read from the spec at every reconcile: they may change during the run.
    plan.suspended = seq.spec.suspend;
    plan.active_deadline_seconds = seq.spec.active_deadline_seconds;
    Ok(plan)
}

/// Reads a seed-format batch file from the Sequence's source. It is read once: the steps are then
/// pinned in `.status.plan`, so a later change of the object or the ConfigMap does not alter the run.
async fn read_source(
    seq: &Sequence,
    ctx: &Context,
) -> Result<Vec<PlannedStep>, (&'static str, String)> {
    let source = seq.spec.source.as_ref().map(|s| (&s.s3, &s.config_map));
    let loaded = match source {
        Some((Some(s3), None)) => {
            let mut location = match crate::source::BatchSource::parse(&s3.uri) {
                Ok(crate::source::BatchSource::S3(location)) => location,
                _ => {
                    return Err((
                        "InvalidSpec",
                        format!("spec.source.s3.uri: `{}` is not s3://bucket/key", s3.uri),
                    ));
                }
            };
            location.version_id = s3.version_id.clone();
            crate::source::load_s3(&ctx.s3, &location)
                .await
                .map_err(|e| ("SourceError", e.to_string()))?
        }
        Some((None, Some(cm))) => {
            let namespace = seq.namespace().unwrap_or_default();
            let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
            let label = format!("configmap {namespace}/{} key {}", cm.name, cm.key);
            let map = match api.get_opt(&cm.name).await {
                Ok(Some(map)) => map,
                Ok(None) => {
                    return Err((
                        "SourceError",
                        format!("{label}: the ConfigMap does not exist"),
                    ));
                }
                Err(e) => return Err(("SourceError", format!("{label}: {e}"))),
            };
            let Some(text) = map.data.as_ref().and_then(|d| d.get(&cm.key)).cloned() else {
                let keys: Vec<String> = map.data.unwrap_or_default().into_keys().collect();
                return Err((
                    "SourceError",
                    format!(
                        "{label}: no such key (the ConfigMap has: {})",
                        keys.join(", ")
                    ),
                ));
            };
            crate::source::LoadedBatch {
                label,
                text,
                s3: None,
            }
        }
        _ => {
            return Err((
                "InvalidSpec",
                "spec.source needs exactly one of s3 and configMap".into(),
            ));
        }
    };
    crate::batch_file::parse(&loaded.label, &loaded.text).map_err(|invalid| {
        let problems: Vec<String> = invalid.0.iter().map(ToString::to_string).collect();
        ("InvalidSpec", problems.join("; "))
    })
}

/// The same checks a batch file gets (the API server checked the schema; these are the ECS limits
/// and the rules a schema cannot say), with the key path of every problem.
fn check_steps(steps: &[PlannedStep]) -> Result<(), (&'static str, String)> {
    let checker = crate::batch_file::step_checker();
    let mut problems = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let body = serde_json::to_value(&step.definition).unwrap_or(Value::Null);
        if let Err(found) = crate::batch_file::check_step(&checker, &crate::yaml::from_json(&body))
        {
            problems.extend(found.into_iter().map(|p| {
                let path = if p.path.is_empty() {
                    String::new()
                } else {
                    format!(".{}", p.path)
                };
                format!("spec.steps[{i}]{path} ({}): {}", step.name, p.message)
            }));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(("InvalidSpec", problems.join("; ")))
    }
}

async fn apply(
    api: &Api<Sequence>,
    seq: &Sequence,
    ctx: &Context,
    observations: Vec<Observation>,
) -> Result<Action, Error> {
    let mut store = KubeStore::new(api.clone(), seq);
    let plan = match plan_of(seq, ctx).await {
        Ok(plan) => plan,
        Err((reason, message)) => {
            store.refuse(reason, &message).await?;
            publish(ctx, seq, EventType::Warning, reason, &message).await;
            return Ok(Action::await_change());
        }
    };
    store.plan = Some(serde_json::to_value(&plan.steps).unwrap_or(Value::Null));
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
    let mut sink = EventCollector::default();
    let driven = drive(&plan, status, observations, &ctx.ecs, &mut store, &mut sink).await?;
    for (type_, reason, note) in sink.events {
        publish(ctx, seq, type_, &reason, &note).await;
    }
    if driven.status.is_finished() {
        return Ok(Action::await_change());
    }
    // Nothing to wake for (e.g. suspended between steps): wait for the Sequence to change.
    let Some(at) = driven.wake_at else {
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    let wait = if at > now {
        at.duration_since(now).unsigned_abs()
    } else {
        Duration::ZERO
    };
    Ok(Action::requeue(wait.max(Duration::from_millis(100))))
}

/// The Sequence is being deleted: stop its running tasks, then let it go.
async fn cleanup(api: &Api<Sequence>, seq: &Sequence, ctx: &Context) -> Result<Action, Error> {
    let running = stored_run(seq)
        .and_then(Result::ok)
        .is_some_and(|r| !r.is_finished());
    if !running {
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

async fn publish(ctx: &Context, seq: &Sequence, type_: EventType, reason: &str, note: &str) {
    let event = KubeEvent {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1024).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &seq.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish an event");
    }
}

/// Writes `.status` through the status subresource, with the last seen resourceVersion as
/// precondition: never from a stale read.
struct KubeStore {
    api: Api<Sequence>,
    object: Sequence,
    plan: Option<Value>,
}

impl KubeStore {
    fn new(api: Api<Sequence>, seq: &Sequence) -> Self {
        KubeStore {
            api,
            object: seq.clone(),
            plan: None,
        }
    }

    async fn write(&mut self, status: SequenceStatus) -> Result<(), Error> {
        let mut object = self.object.clone();
        object.status = Some(status);
        object.metadata.managed_fields = None;
        tracing::debug!(status = %serde_json::to_string(&object.status).unwrap_or_default(), "writing status");
        // A replace carries the resourceVersion last read: a stale write fails with 409.
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match self
            .api
            .replace_status(&object.name_any(), &params, &object)
            .await
        {
            Ok(stored) => {
                self.object = stored;
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Err(Error::Conflict),
            Err(e) => Err(Error::Kube(e)),
        }
    }

    async fn refuse(&mut self, reason: &str, message: &str) -> Result<(), Error> {
        let previous = self.object.status.clone().unwrap_or_default();
        let run = RunStatus::new(self.object.uid().unwrap_or_default(), &Plan::new(vec![]));
        let ctx = conditions::Context {
            refused: Some((reason, message)),
            generation: self.object.meta().generation,
            suspended: self.object.spec.suspend,
        };
        let status = SequenceStatus {
            phase: Some("Failed".into()),
            progress: None,
            current_step_name: None,
            observed_generation: self.object.meta().generation,
            run: None,
            plan: None,
            conditions: conditions(&previous.conditions, &run, &ctx, Timestamp::now()),
        };
        if self.object.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.write(status).await
    }
}

impl StatusStore for KubeStore {
    type Error = Error;

    async fn save(&mut self, run: &RunStatus) -> Result<(), Error> {
        let previous = self.object.status.clone().unwrap_or_default();
        let done = run.steps.iter().filter(|s| s.phase.is_terminal()).count();
        let current_step_name = run
            .current_step
            .and_then(|i| run.steps.get(i))
            .filter(|s| s.phase == StepPhase::Running)
            .map(|s| s.name.clone());
        let ctx = conditions::Context {
            generation: self.object.meta().generation,
            suspended: self.object.spec.suspend,
            refused: None,
        };
        let status = SequenceStatus {
            phase: Some(format!("{:?}", run.phase)),
            progress: Some(format!("{done}/{}", run.total_steps)),
            current_step_name,
            observed_generation: self.object.meta().generation,
            run: serde_json::to_value(run).ok(),
            plan: self.plan.clone().or(previous.plan.clone()),
            conditions: conditions(&previous.conditions, run, &ctx, Timestamp::now()),
        };
        self.write(status).await
    }
}

/// Collects the engine's events during a drive; they become Kubernetes Events afterwards.
#[derive(Default)]
struct EventCollector {
    events: Vec<(EventType, String, String)>,
}

impl EventSink for EventCollector {
    fn events(&mut self, _: &Plan, status: &RunStatus, events: &[RunEvent]) {
        let name = |i: &usize| {
            status
                .steps
                .get(*i)
                .map(|s| s.name.clone())
                .unwrap_or_default()
        };
        for event in events {
            let (type_, reason, note) = match event {
                RunEvent::StepStarted { step, attempt } => (
                    EventType::Normal,
                    "StepStarted",
                    format!("step {} ({}) attempt {attempt}", step + 1, name(step)),
                ),
                RunEvent::TasksLaunched {
                    step, task_arns, ..
                } => (
                    EventType::Normal,
                    "TasksLaunched",
                    format!(
                        "step {} ({}): {}",
                        step + 1,
                        name(step),
                        task_arns.join(", ")
                    ),
                ),
                RunEvent::StepSucceeded { step, .. } => (
                    EventType::Normal,
                    "StepSucceeded",
                    format!("step {} ({})", step + 1, name(step)),
                ),
                RunEvent::StepFailed {
                    step,
                    failure,
                    ignored,
                } => {
                    let note = format!(
                        "step {} ({}) [{}]{}: {}",
                        step + 1,
                        name(step),
                        failure.reason,
                        if *ignored { " (ignored)" } else { "" },
                        failure.message
                    );
                    (EventType::Warning, "StepFailed", note)
                }
                RunEvent::LaunchDeferred { step, error, .. } => (
                    EventType::Warning,
                    "LaunchDeferred",
                    format!("step {} ({}): {error}", step + 1, name(step)),
                ),
                RunEvent::RunFinished {
                    phase: RunPhase::Succeeded,
                } => (
                    EventType::Normal,
                    "Completed",
                    status.message.clone().unwrap_or_default(),
                ),
                RunEvent::RunFinished { .. } => (
                    EventType::Warning,
                    "Failed",
                    status.message.clone().unwrap_or_default(),
                ),
                _ => continue,
            };
            self.events.push((type_, reason.into(), note));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_see_the_cause_behind_the_finalizer_wrapper() {
        use kube::runtime::finalizer::Error as F;
        let wrapped = Error::Finalizer(Box::new(F::ApplyFailed(Error::Conflict)));
        assert_eq!(wrapped.metric_label(), "conflict");
        let wrapped = Error::Finalizer(Box::new(F::CleanupFailed(Error::TasksStopping)));
        assert_eq!(wrapped.metric_label(), "tasks_stopping");
        let unnamed = Error::Finalizer(Box::new(F::UnnamedObject));
        assert_eq!(unnamed.metric_label(), "finalizer");
    }
}
