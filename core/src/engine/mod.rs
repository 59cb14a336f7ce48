//! The engine: every sequencing rule, as one pure function.
//!
//! `advance(plan, status, observations, now)` returns the next status, the actions to carry out and
//! the events to report. It performs no I/O, reads no clock and draws no random number, so the CLI
//! and the controller share it unchanged and it can be tested against any sequence of answers.
//!
//! The exactly-once protocol (DESIGN.md) lives here:
//! 1. A new attempt is recorded as `Launching` with its clientToken and startedBy, and the `Launch`
//!    action is returned in the same decision. Runners persist the status before acting, so the
//!    record exists before RunTask is called.
//! 2. An attempt found `Launching` without an answer (a resumed run) is looked up by startedBy first;
//!    RunTask is re-issued, with the same clientToken, only when nothing is found.
//! 3. A step starts only in a decision that also records the previous step's result.

mod launch;
mod observe;
mod outcome;
mod progress;
#[cfg(test)]
mod tests;
mod wake;

use outcome::{cancelled_failure, stop_reason};

use std::collections::HashSet;
use std::time::Duration;

use jiff::Timestamp;

use crate::action::{Action, Decision};
use crate::backoff::{api_error_delay, retry_delay};
use crate::event::RunEvent;
use crate::identity::launch_identity;
use crate::judge::judge_task;
use crate::log_record::{AttemptLogs, LogTail};
use crate::log_tail::{
    ATTEMPTS_WITH_LINES, LOGS_WAIT, STATUS_BUDGET_BYTES, bound_tails, log_targets,
};
use crate::observation::{ApiError, EcsFailure, LaunchResponse, MissingTask, Observation};
use crate::plan::{Plan, PlannedStep};
use crate::run_task::LaunchIdentity;
use crate::status::{
    Attempt, AttemptPhase, CancelRequest, Failure, FailureClass, RunPhase, RunStatus, StepPhase,
    StopRequest, TaskRecord,
};
use crate::step::RetryOn;

/// ECS may briefly answer MISSING for a task it has just started (eventual consistency).
pub const MISSING_GRACE: Duration = Duration::from_secs(60);
const MISSING_GRACE_SIGNED: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);
/// A launch not seen by lookup is re-issued (same clientToken, deduplicated by ECS) only within
/// this time of being recorded. ECS keeps a stopped task in ListTasks for at least an hour after it
/// stops, and a task stops after it starts, so a lookup within an hour of the first RunTask lists
/// every task any call of the attempt started (but for ListTasks' lag of seconds, which the same
/// token covers). Later, a task that ran and stopped may already be forgotten, and an empty answer
/// no longer proves that nothing ran: the attempt's outcome is unknown instead. See
/// docs/exactly-once.md.
pub const RELAUNCH_WINDOW: Duration = Duration::from_secs(3600);
/// How long after RunTask was last asked for a lookup that lists none of the launch's tasks is
/// taken to mean there are none. A RunTask call ends within the ECS client's 60 s operation
/// timeout (retries included), and ListTasks lists a started task within seconds (it is
/// eventually consistent): five minutes covers both with room. Until then a halted run (deleted,
/// cancelled, past its deadline) keeps looking instead of concluding that nothing was launched.
pub const LOOKUP_SETTLE: Duration = Duration::from_secs(300);
/// How soon a halted run looks again for tasks its launch may still show.
const LOOK_AGAIN: Duration = Duration::from_secs(5);
/// DescribeTasks takes at most this many ARNs.
pub const DESCRIBE_BATCH: usize = 100;

/// Why `status` cannot be a run of `plan`, if it cannot: another plan's status, or one edited by
/// hand. Runners check this before driving a stored status and hold the run with the reason;
/// `advance` refuses such a status too (it decides nothing), so it never indexes past the plan.
pub fn mismatch(plan: &Plan, status: &RunStatus) -> Option<String> {
    if status.plan_digest != plan.digest() {
        return Some(format!(
            "the run's planDigest {} is not the digest of its plan ({})",
            status.plan_digest,
            plan.digest()
        ));
    }
    let steps = plan.steps.len();
    if status.steps.len() != steps || status.total_steps != steps {
        return Some(format!(
            "the run records {} step(s) (totalSteps {}) but its plan has {steps}",
            status.steps.len(),
            status.total_steps
        ));
    }
    let renamed = plan
        .steps
        .iter()
        .zip(&status.steps)
        .position(|(p, s)| p.name != s.name);
    if let Some(i) = renamed {
        return Some(format!(
            "the run's step {} is named {:?} but the plan's is {:?}",
            i + 1,
            status.steps[i].name,
            plan.steps[i].name
        ));
    }
    // Attempts are numbered 1, 2, 3, ... and only the last may still be going on.
    for (i, step) in status.steps.iter().enumerate() {
        for (k, attempt) in step.attempts.iter().enumerate() {
            if attempt.attempt as usize != k + 1 {
                return Some(format!(
                    "the run's step {} lists attempt {} in place {}",
                    i + 1,
                    attempt.attempt,
                    k + 1
                ));
            }
            if k + 1 < step.attempts.len() && !attempt.phase.is_terminal() {
                return Some(format!(
                    "the run's step {} has attempt {} unfinished before a later one",
                    i + 1,
                    attempt.attempt
                ));
            }
        }
    }
    None
}

pub fn advance(
    plan: &Plan,
    status: &RunStatus,
    observations: &[Observation],
    now: Timestamp,
) -> Decision {
    let mut draft = DecisionDraft {
        plan,
        status: status.clone(),
        now,
        actions: Vec::new(),
        events: Vec::new(),
        answered: HashSet::new(),
        tick: false,
    };
    if mismatch(plan, status).is_some() {
        return Decision {
            status: status.clone(),
            actions: Vec::new(),
            events: Vec::new(),
            wake_at: None,
            timer_at: None,
        };
    }
    if draft.status.phase.is_terminal() {
        return draft.finish();
    }
    for observation in observations {
        draft.observe(observation);
    }
    draft.progress();
    draft.finish()
}

/// The decision being drafted: a copy of the status that the observations and the rules change,
/// with the actions and events gathered on the way. `finish` turns it into the `Decision`.
struct DecisionDraft<'a> {
    plan: &'a Plan,
    status: RunStatus,
    now: Timestamp,
    actions: Vec<Action>,
    events: Vec<RunEvent>,
    /// Attempts that got an answer or an action in this decision: no lookup for them now.
    answered: HashSet<(usize, u32)>,
    tick: bool,
}

impl DecisionDraft<'_> {
    /// Why the whole run must stop now, if it must: a cancellation, or its deadline.
    pub(super) fn halt(&self) -> Option<Failure> {
        if let Some(cancel) = &self.status.cancel {
            return Some(cancelled_failure(Some(cancel)));
        }
        let seconds = self.plan.active_deadline_seconds?;
        self.timed_out(self.status.start_time?, seconds, || {
            format!(
                "the run exceeded its activeDeadlineSeconds of {seconds}s; its tasks were stopped"
            )
        })
    }

    /// A timeout failure when `seconds` have passed since `since`.
    pub(super) fn timed_out(
        &self,
        since: Timestamp,
        seconds: u64,
        message: impl FnOnce() -> String,
    ) -> Option<Failure> {
        let deadline = since.checked_add(Duration::from_secs(seconds)).ok()?;
        (self.now >= deadline).then(|| Failure {
            class: FailureClass::Timeout,
            reason: "DeadlineExceeded".into(),
            message: message(),
        })
    }

    pub(super) fn finish(self) -> Decision {
        let (wake_at, timer_at) = if self.status.phase.is_terminal() {
            (None, None)
        } else {
            (self.wake_at(true), self.wake_at(false))
        };
        Decision {
            status: self.status,
            actions: self.actions,
            events: self.events,
            wake_at,
            timer_at,
        }
    }

    pub(super) fn later(&self, d: Duration) -> Timestamp {
        self.now.checked_add(d).unwrap_or(self.now)
    }

    /// The attempt, if it is still waiting for its launch to be confirmed (an answer for an
    /// attempt that has moved on is stale and ignored).
    pub(super) fn launching_mut(&mut self, step: usize, attempt: u32) -> Option<&mut Attempt> {
        self.attempt_mut(step, attempt)
            .filter(|a| a.phase == AttemptPhase::Launching)
    }

    pub(super) fn attempt_mut(&mut self, step: usize, attempt: u32) -> Option<&mut Attempt> {
        self.status
            .steps
            .get_mut(step)?
            .attempts
            .iter_mut()
            .find(|a| a.attempt == attempt)
    }
}
