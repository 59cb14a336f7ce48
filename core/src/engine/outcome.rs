//! How attempts, steps and the run end: success, retry or failure, and the run's verdict.

use super::*;
use crate::log_tail::headline;

/// The log line quoted in a failed run's message is cut to this many bytes.
const HEADLINE_BYTES: usize = 200;

impl DecisionDraft<'_> {
    pub(super) fn succeed_step(&mut self, index: usize, number: u32) {
        let now = self.now;
        if let Some(a) = self.attempt_mut(index, number) {
            a.phase = AttemptPhase::Succeeded;
            a.finished_at = Some(now);
        }
        let s = &mut self.status.steps[index];
        s.phase = StepPhase::Succeeded;
        s.completion_time = Some(now);
        self.events.push(RunEvent::StepSucceeded {
            step: index,
            attempt: number,
        });
    }

    /// The attempt is over and failed: retry if the policy says so, else fail the step.
    pub(super) fn end_attempt_failed(&mut self, index: usize, number: u32) -> bool {
        let now = self.now;
        let failure = {
            let Some(a) = self.attempt_mut(index, number) else {
                return false;
            };
            a.phase = AttemptPhase::Failed;
            a.finished_at = Some(now);
            // A task ECS forgot may still be running or may have succeeded: whatever its siblings
            // did, and in whatever order they were judged, the attempt's outcome is unknown, so
            // that it is retried only where running the step twice is allowed.
            if let Some(forgotten) = a.tasks.iter().find(|t| t.missing)
                && a.failure
                    .as_ref()
                    .is_some_and(|f| f.class != FailureClass::OutcomeUnknown)
            {
                let policy = crate::step::SuccessPolicy::default_policy();
                a.failure = judge_task(forgotten, &policy, None);
            }
            a.failure.clone().unwrap_or_else(|| Failure {
                class: FailureClass::Infrastructure,
                reason: "Unknown".into(),
                message: "the attempt failed".into(),
            })
        };
        self.events.push(RunEvent::AttemptFailed {
            step: index,
            attempt: number,
            failure: failure.clone(),
        });
        let definition = &self.plan.steps[index].definition;
        if let Some(retry) = definition.retry.as_ref().filter(|_| self.halt().is_none()) {
            let retryable = retry
                .when
                .iter()
                .any(|when| retry_class(*when) == failure.class);
            if retryable && number <= retry.limit {
                let seed = crate::identity::client_token(&self.status.run_id, index, number + 1);
                let at = self.later(retry_delay(&retry.backoff, number, &seed));
                self.status.steps[index].next_attempt_at = Some(at);
                self.events.push(RunEvent::RetryScheduled {
                    step: index,
                    next_attempt: number + 1,
                    at,
                });
                return false;
            }
        }
        self.fail_step(index, failure);
        true
    }

    pub(super) fn fail_step(&mut self, index: usize, failure: Failure) {
        // `ignoreFailure` is about the step's own failure, not about the run being stopped.
        let ignored = self.plan.steps[index].definition.ignore_failure && self.halt().is_none();
        let mut failure = failure;
        if ignored && failure.class == FailureClass::OutcomeUnknown {
            failure.message.push_str(
                "; ignoreFailure lets the run go on, though this step's task may still be running beside the next step's",
            );
        }
        let s = &mut self.status.steps[index];
        s.phase = StepPhase::Failed;
        s.completion_time = Some(self.now);
        s.failure = Some(failure.clone());
        s.failure_ignored = ignored;
        s.next_attempt_at = None;
        self.events.push(RunEvent::StepFailed {
            step: index,
            failure,
            ignored,
        });
    }

    pub(super) fn end_run(&mut self) {
        let failed = self
            .status
            .steps
            .iter()
            .find(|s| s.phase == StepPhase::Failed && !s.failure_ignored);
        let (phase, message) = match failed {
            Some(s) => {
                let f = s.failure.as_ref();
                // The line of its logs that most likely says why, where there is one.
                let log_line = s
                    .attempts
                    .last()
                    .and_then(|a| a.logs.as_ref())
                    .and_then(|l| headline(&l.tails, HEADLINE_BYTES))
                    .map(|l| format!("; log: {l}"))
                    .unwrap_or_default();
                (
                    RunPhase::Failed,
                    format!(
                        "step {} failed: {}{log_line}",
                        s.name,
                        f.map(|f| f.message.as_str()).unwrap_or("")
                    ),
                )
            }
            None => {
                let ignored = self
                    .status
                    .steps
                    .iter()
                    .filter(|s| s.failure_ignored)
                    .count();
                let note = if ignored > 0 {
                    format!(" ({ignored} failure(s) ignored)")
                } else {
                    String::new()
                };
                (
                    RunPhase::Succeeded,
                    format!("all {} steps done{note}", self.status.steps.len()),
                )
            }
        };
        self.status.phase = phase;
        self.status.current_step = None;
        self.status.completion_time = Some(self.now);
        self.status.start_time.get_or_insert(self.now);
        self.status.message = Some(message);
        self.events.push(RunEvent::RunFinished { phase });
    }
}

fn retry_class(on: RetryOn) -> FailureClass {
    match on {
        RetryOn::Launch => FailureClass::Launch,
        RetryOn::Infrastructure => FailureClass::Infrastructure,
        RetryOn::ExitCode => FailureClass::ExitCode,
        RetryOn::Timeout => FailureClass::Timeout,
        RetryOn::OutcomeUnknown => FailureClass::OutcomeUnknown,
    }
}

pub(super) fn cancelled_failure(cancel: Option<&CancelRequest>) -> Failure {
    let reason = cancel.map(|c| c.reason.as_str()).unwrap_or("cancelled");
    Failure {
        class: FailureClass::Cancelled,
        reason: "Cancelled".into(),
        message: format!("the run was cancelled: {reason}"),
    }
}

/// The reason given to StopTask; ECS shows it as the task's stoppedReason.
pub(super) fn stop_reason(failure: Option<&Failure>, run_halted: bool) -> String {
    let why = match failure.map(|f| f.class) {
        Some(FailureClass::Timeout) if run_halted => "run deadline exceeded",
        Some(FailureClass::Timeout) => "step timeout exceeded",
        Some(FailureClass::Cancelled) => "run cancelled",
        Some(FailureClass::Launch) => "the launch partly failed",
        _ => "another task of the step failed",
    };
    format!("sequencer: {why}")
}
