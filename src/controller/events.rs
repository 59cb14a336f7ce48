//! What the engine reports during a reconcile becomes Kubernetes Events on the Sequence, log
//! lines carrying the Sequence, step and task ARN, and the step metrics.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};

use crate::action::RunEvent;
use crate::metrics::Metrics;
use crate::plan::Plan;
use crate::runner::EventSink;
use crate::status::{RunPhase, RunStatus};

/// Collects the engine's events during a drive; they are published afterwards so that a slow
/// Events API never delays a status write.
pub struct EventCollector<'a> {
    pub events: Vec<(EventType, String, String)>,
    metrics: &'a Metrics,
}

impl<'a> EventCollector<'a> {
    pub fn new(metrics: &'a Metrics) -> Self {
        EventCollector {
            events: Vec::new(),
            metrics,
        }
    }

    pub async fn publish_all(self, recorder: &Recorder, reference: &ObjectReference) {
        for (type_, reason, note) in self.events {
            publish(recorder, reference, type_, &reason, &note).await;
        }
    }

    fn step_ended(&self, status: &RunStatus, step: usize, outcome: &str) {
        let duration = status.steps.get(step).and_then(|s| {
            let span = s.completion_time?.duration_since(s.start_time?);
            span.unsigned_abs().into()
        });
        self.metrics.step_ended(outcome, duration);
    }
}

impl EventSink for EventCollector<'_> {
    fn events(&mut self, _: &Plan, status: &RunStatus, events: &[RunEvent]) {
        let name = |i: &usize| {
            status
                .steps
                .get(*i)
                .map(|s| s.name.clone())
                .unwrap_or_default()
        };
        for event in events {
            log(status, event, &name);
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
                RunEvent::StepSucceeded { step, .. } => {
                    self.step_ended(status, *step, "succeeded");
                    (
                        EventType::Normal,
                        "StepSucceeded",
                        format!("step {} ({})", step + 1, name(step)),
                    )
                }
                RunEvent::StepFailed {
                    step,
                    failure,
                    ignored,
                } => {
                    let outcome = if *ignored { "failed_ignored" } else { "failed" };
                    self.step_ended(status, *step, outcome);
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
                RunEvent::StepSkipped { .. } => {
                    self.metrics.step_ended("skipped", None);
                    continue;
                }
                RunEvent::LaunchDeferred { step, error, .. } => (
                    EventType::Warning,
                    "LaunchDeferred",
                    format!("step {} ({}): {error}", step + 1, name(step)),
                ),
                RunEvent::RunFinished { phase } => {
                    self.metrics
                        .runs_finished
                        .get_or_create(&crate::metrics::PhaseLabel {
                            phase: format!("{phase:?}"),
                        })
                        .inc();
                    let message = status.message.clone().unwrap_or_default();
                    if *phase == RunPhase::Succeeded {
                        (EventType::Normal, "Completed", message)
                    } else {
                        (EventType::Warning, "Failed", message)
                    }
                }
                _ => continue,
            };
            self.events.push((type_, reason.into(), note));
        }
    }
}

/// One log line per engine event, inside the reconcile's span (namespace, name), with the step
/// and the task ARN as fields.
fn log(status: &RunStatus, event: &RunEvent, name: &dyn Fn(&usize) -> String) {
    match event {
        RunEvent::TasksLaunched {
            step,
            attempt,
            task_arns,
        } => {
            for arn in task_arns {
                tracing::info!(step = %name(step), attempt, task_arn = %arn, "task launched");
            }
        }
        RunEvent::TasksFound {
            step,
            attempt,
            task_arns,
        } => {
            for arn in task_arns {
                tracing::info!(step = %name(step), attempt, task_arn = %arn, "found a task launched before a restart");
            }
        }
        RunEvent::LaunchReissued { step, attempt } => {
            tracing::info!(step = %name(step), attempt, "no task found for an unconfirmed launch: re-issuing RunTask with the same clientToken")
        }
        RunEvent::TaskStatusChanged {
            step,
            attempt,
            task_arn,
            last_status,
        } => {
            tracing::info!(step = %name(step), attempt, task_arn = %task_arn, last_status = %last_status, "task status changed")
        }
        RunEvent::StopRequested {
            step,
            attempt,
            task_arn,
            reason,
        } => {
            tracing::info!(step = %name(step), attempt, task_arn = %task_arn, reason = %reason, "stopping task")
        }
        RunEvent::StepStarted { step, attempt } => {
            tracing::info!(step = %name(step), attempt, "step started")
        }
        RunEvent::StepSucceeded { step, attempt } => {
            tracing::info!(step = %name(step), attempt, "step succeeded")
        }
        RunEvent::StepFailed {
            step,
            failure,
            ignored,
        } => {
            tracing::warn!(step = %name(step), reason = %failure.reason, ignored, message = %failure.message, "step failed")
        }
        RunEvent::AttemptFailed {
            step,
            attempt,
            failure,
        } => {
            tracing::warn!(step = %name(step), attempt, reason = %failure.reason, message = %failure.message, "attempt failed")
        }
        RunEvent::LaunchDeferred { step, error, .. } => {
            tracing::warn!(step = %name(step), error = %error, "launch deferred")
        }
        RunEvent::PollFailed { error } => tracing::warn!(error = %error, "poll failed"),
        RunEvent::RunFinished { phase } => {
            tracing::info!(phase = ?phase, message = status.message.as_deref().unwrap_or(""), "run finished")
        }
        _ => tracing::debug!(?event, "run event"),
    }
}

/// Publishes one Event; a failure to publish is logged, never fatal.
pub async fn publish(
    recorder: &Recorder,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = KubeEvent {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1024).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, "could not publish an event");
    }
}
