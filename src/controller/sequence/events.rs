//! What the engine reports during a reconcile becomes Kubernetes Events on the Sequence, log
//! lines carrying the Sequence, step and task ARN, and the step metrics. The words come from each
//! event's description (`sequencer_core::event`), shared with the CLI.

use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::EventType;
use sequencer_core::event::{Description, RunEvent};
use sequencer_core::plan::Plan;
use sequencer_core::status::RunStatus;

use crate::controller::runtime::event_recorder::{EventRecorder, NOTE_MAX_BYTES, publish_as};
use crate::controller::runtime::metrics::{Metrics, PhaseLabel};
use crate::drive::EventSink;

/// Whether a denied log read has been reported (once per process).
static LOGS_DENIED_REPORTED: AtomicBool = AtomicBool::new(false);

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

    pub async fn publish_all(self, recorder: &EventRecorder, reference: &ObjectReference) {
        for (type_, reason, action, note) in self.events {
            publish_as(recorder, reference, type_, &reason, &action, &note).await;
        }
    }

    /// A log read the controller was not allowed to make is said once per controller process, as
    /// a Warning on the Sequence where it was first seen; each step's record says it in one line.
    fn report_logs_denied(&mut self, description: &Description) {
        let denied = description
            .fields
            .get("logTail")
            .and_then(|l| l.get("tails"))
            .and_then(|t| t.as_array())
            .is_some_and(|tails| {
                tails
                    .iter()
                    .any(|t| t.get("unavailable").and_then(|u| u.as_str()) == Some("AccessDenied"))
            });
        if denied && !LOGS_DENIED_REPORTED.swap(true, Ordering::Relaxed) {
            self.events.push((
                EventType::Warning,
                "LogsAccessDenied".into(),
                "ReadLogs".into(),
                "the controller may not read the failed containers' CloudWatch Logs: grant its role \
                 logs:GetLogEvents on the tasks' log groups (and ecs:DescribeTaskDefinition) to see \
                 their last lines in status and Events; reported once per controller start"
                    .into(),
            ));
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
                    description.event_note(NOTE_MAX_BYTES),
                ));
            }
            self.report_logs_denied(&description);
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

/// The Event's action: which step and attempt it is about, so `kubectl get events` can sort and
/// filter by it.
fn action(d: &Description) -> String {
    match (&d.step, d.attempt) {
        (Some((step, _)), Some(attempt)) => format!("Step{}Attempt{attempt}", step + 1),
        (Some((step, _)), None) => format!("Step{}", step + 1),
        (None, _) => "Reconcile".into(),
    }
}
