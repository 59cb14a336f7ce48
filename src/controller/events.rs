//! What the engine reports during a reconcile becomes Kubernetes Events on the Sequence, log
//! lines carrying the Sequence, step and task ARN, and the step metrics. The words come from each
//! event's description (`sequencer_core::event`), shared with the CLI.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use sequencer_core::event::{Description, RunEvent};
use sequencer_core::plan::Plan;
use sequencer_core::status::RunStatus;

use super::metrics::{Metrics, PhaseLabel};
use crate::drive::EventSink;

/// Collects the engine's events during a drive; they are published afterwards so that a slow
/// Events API never delays a status write.
pub struct EventCollector<'a> {
    /// Type, reason, action and note of each Event to publish.
    pub events: Vec<(EventType, String, String, String)>,
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
        for (type_, reason, action, note) in self.events {
            publish_as(recorder, reference, type_, &reason, &action, &note).await;
        }
    }

    /// The step and run metrics an event moves.
    fn count(&self, status: &RunStatus, event: &RunEvent) {
        match event {
            RunEvent::StepSucceeded { step, .. } => self.step_ended(status, *step, "succeeded"),
            RunEvent::StepFailed { step, ignored, .. } => {
                let outcome = if *ignored { "failed_ignored" } else { "failed" };
                self.step_ended(status, *step, outcome);
            }
            RunEvent::ForeignTasksIgnored { task_arns, .. } => {
                let count = task_arns.len() as u64;
                self.metrics.foreign_tasks_ignored.inc_by(count);
            }
            RunEvent::StepSkipped { .. } => {
                self.metrics.step_ended("skipped", None);
            }
            RunEvent::RunFinished { phase } => {
                let label = PhaseLabel {
                    phase: format!("{phase:?}"),
                };
                self.metrics.runs_finished.get_or_create(&label).inc();
            }
            _ => {}
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
    fn events(&mut self, plan: &Plan, status: &RunStatus, events: &[RunEvent]) {
        for event in events {
            self.count(status, event);
            let description = event.describe(plan, status);
            log(&description);
            if description.published {
                let type_ = if description.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                self.events.push((
                    type_,
                    description.reason(),
                    action(&description),
                    description.note(),
                ));
            }
        }
    }
}

/// One log line per event (one per task where it names several), inside the reconcile's span
/// (namespace, sequence), with the step, attempt and task ARN as fields.
fn log(d: &Description) {
    let step = d.step.as_ref().map(|(_, name)| name.as_str());
    let arns: Vec<Option<&str>> = if d.task_arns.is_empty() {
        vec![None]
    } else {
        d.task_arns.iter().map(|a| Some(a.as_str())).collect()
    };
    for task_arn in arns {
        if d.warning {
            tracing::warn!(step, attempt = d.attempt, task_arn, detail = %d.text, "{}", d.headline);
        } else {
            tracing::info!(step, attempt = d.attempt, task_arn, detail = %d.text, "{}", d.headline);
        }
    }
}

/// The Event's action: which step and attempt it is about. The Recorder folds an Event into an
/// earlier one of the same reason and action (a series, keeping the first note), so without the
/// step in the action, step 2's "started" and "succeeded" would only count up step 1's Events.
fn action(d: &Description) -> String {
    match (&d.step, d.attempt) {
        (Some((step, _)), Some(attempt)) => format!("Step{}Attempt{attempt}", step + 1),
        (Some((step, _)), None) => format!("Step{}", step + 1),
        (None, _) => "Reconcile".into(),
    }
}

/// Publishes one Event about the whole Sequence; a failure to publish is logged, never fatal.
pub async fn publish(
    recorder: &Recorder,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    publish_as(recorder, reference, type_, reason, "Reconcile", note).await;
}

async fn publish_as(
    recorder: &Recorder,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let event = KubeEvent {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1024).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, "could not publish an event");
    }
}
