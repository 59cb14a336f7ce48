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

use std::collections::HashSet;
use std::time::Duration;

use jiff::Timestamp;

use crate::action::{Action, Decision, RunEvent};
use crate::backoff::{api_error_delay, retry_delay};
use crate::identity::launch_identity;
use crate::judge::judge_task;
use crate::observation::{ApiError, EcsFailure, LaunchResponse, Observation};
use crate::plan::{Plan, PlannedStep};
use crate::run_task::LaunchIdentity;
use crate::status::{
    Attempt, AttemptPhase, CancelRequest, Failure, FailureClass, RunPhase, RunStatus, StepPhase,
    StopRequest, TaskRecord,
};
use crate::step::RetryOn;

/// ECS may briefly answer MISSING for a task it has just started (eventual consistency).
pub const MISSING_GRACE: Duration = Duration::from_secs(60);
/// A launch not seen by lookup is re-issued (same clientToken, deduplicated by ECS) only within
/// this time of being recorded. Later, a duplicate could no longer be ruled out: the attempt fails.
pub const RELAUNCH_WINDOW: Duration = Duration::from_secs(12 * 3600);
/// DescribeTasks takes at most this many ARNs.
pub const DESCRIBE_BATCH: usize = 100;

pub fn advance(
    plan: &Plan,
    status: &RunStatus,
    observations: &[Observation],
    now: Timestamp,
) -> Decision {
    let mut run = Run {
        plan,
        status: status.clone(),
        now,
        actions: Vec::new(),
        events: Vec::new(),
        answered: HashSet::new(),
        tick: false,
    };
    if run.status.phase.is_terminal() {
        return run.finish();
    }
    for observation in observations {
        run.observe(observation);
    }
    run.progress();
    run.finish()
}

struct Run<'a> {
    plan: &'a Plan,
    status: RunStatus,
    now: Timestamp,
    actions: Vec<Action>,
    events: Vec<RunEvent>,
    /// Attempts that got an answer or an action in this decision: no lookup for them now.
    answered: HashSet<(usize, u32)>,
    tick: bool,
}

impl Run<'_> {
    /// Why the whole run must stop now, if it must: a cancellation, or its deadline.
    fn halt(&self) -> Option<Failure> {
        if let Some(cancel) = &self.status.cancel {
            return Some(cancelled_failure(Some(cancel)));
        }
        let seconds = self.plan.active_deadline_seconds?;
        let deadline = self
            .status
            .start_time?
            .checked_add(Duration::from_secs(seconds))
            .ok()?;
        (self.now >= deadline).then(|| Failure {
            class: FailureClass::Timeout,
            reason: "DeadlineExceeded".into(),
            message: format!(
                "the run exceeded its activeDeadlineSeconds of {seconds}s; its tasks were stopped"
            ),
        })
    }

    fn finish(self) -> Decision {
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

    fn later(&self, d: Duration) -> Timestamp {
        self.now.checked_add(d).unwrap_or(self.now)
    }

    /// The attempt, if it is still waiting for its launch to be confirmed (an answer for an
    /// attempt that has moved on is stale and ignored).
    fn launching_mut(&mut self, step: usize, attempt: u32) -> Option<&mut Attempt> {
        self.attempt_mut(step, attempt)
            .filter(|a| a.phase == AttemptPhase::Launching)
    }

    fn attempt_mut(&mut self, step: usize, attempt: u32) -> Option<&mut Attempt> {
        self.status
            .steps
            .get_mut(step)?
            .attempts
            .iter_mut()
            .find(|a| a.attempt == attempt)
    }

    // ----- observations -------------------------------------------------------------------------

    fn observe(&mut self, observation: &Observation) {
        match observation {
            Observation::Tick => self.tick = true,
            Observation::CancelRequested { reason } => {
                if self.status.cancel.is_none() {
                    self.status.cancel = Some(CancelRequest {
                        reason: reason.clone(),
                        requested_at: self.now,
                    });
                }
            }
            Observation::Launched {
                step,
                attempt,
                outcome,
            } => self.on_launched(*step, *attempt, outcome),
            Observation::LookedUp {
                step,
                attempt,
                outcome,
            } => self.on_looked_up(*step, *attempt, outcome),
            Observation::Described { outcome } => match outcome {
                Ok(response) => {
                    for task in &response.tasks {
                        self.update_task(task);
                    }
                    for arn in &response.missing {
                        self.mark_missing(arn);
                    }
                }
                Err(e) => self.events.push(RunEvent::PollFailed {
                    error: e.to_string(),
                }),
            },
            Observation::StopAnswered { task_arn, outcome } => {
                if outcome.is_ok()
                    && let Some(request) = self
                        .find_task_mut(task_arn)
                        .and_then(|(_, _, t)| t.stop_request.as_mut())
                {
                    request.acknowledged = true;
                }
            }
            Observation::TaskDefinitionDescribed {
                step,
                attempt,
                outcome,
            } => match outcome {
                Ok(names) => {
                    if let Some(a) = self.attempt_mut(*step, *attempt) {
                        a.essential_containers = Some(names.clone());
                    }
                }
                // Judging waits for it and it is asked again every tick; say why the step waits.
                Err(e) => self.events.push(RunEvent::PollFailed {
                    error: format!(
                        "DescribeTaskDefinition (needed for `containers: essential`): {e}"
                    ),
                }),
            },
        }
    }

    fn on_launched(
        &mut self,
        step: usize,
        attempt: u32,
        outcome: &Result<LaunchResponse, ApiError>,
    ) {
        self.answered.insert((step, attempt));
        let now = self.now;
        let Some(a) = self.launching_mut(step, attempt) else {
            return;
        };
        match outcome {
            Ok(response) => {
                a.tasks = response.tasks.clone();
                a.launched_at = Some(now);
                a.retry_launch_at = None;
                let arns: Vec<String> = a.tasks.iter().map(|t| t.task_arn.clone()).collect();
                let failure = launch_failure(response);
                match failure {
                    None => a.phase = AttemptPhase::Running,
                    Some(f) => {
                        a.phase = AttemptPhase::Stopping;
                        a.failure = Some(f);
                    }
                }
                if !arns.is_empty() {
                    self.events.push(RunEvent::TasksLaunched {
                        step,
                        attempt,
                        task_arns: arns,
                    });
                }
                self.request_task_definition(step, attempt);
            }
            Err(e) if e.transient => self.defer_launch(step, attempt, e),
            Err(e) => {
                a.phase = AttemptPhase::Stopping;
                a.failure = Some(Failure {
                    class: FailureClass::Launch,
                    reason: e.code.clone(),
                    message: format!("RunTask failed: {e}"),
                });
            }
        }
    }

    fn on_looked_up(
        &mut self,
        step: usize,
        attempt: u32,
        outcome: &Result<Vec<TaskRecord>, ApiError>,
    ) {
        self.answered.insert((step, attempt));
        let now = self.now;
        let cancelled = self.halt();
        let Some(a) = self.launching_mut(step, attempt) else {
            return;
        };
        match outcome {
            Ok(tasks) if !tasks.is_empty() => {
                a.tasks = tasks.clone();
                a.launched_at = Some(now);
                a.retry_launch_at = None;
                a.phase = AttemptPhase::Running;
                let task_arns = tasks.iter().map(|t| t.task_arn.clone()).collect();
                self.events.push(RunEvent::TasksFound {
                    step,
                    attempt,
                    task_arns,
                });
                self.request_task_definition(step, attempt);
            }
            Ok(_) if cancelled.is_some() => {
                a.phase = AttemptPhase::Stopping;
                a.failure = cancelled;
            }
            Ok(_) => {
                let age = now.duration_since(a.created_at);
                if age.is_positive() && age.unsigned_abs() > RELAUNCH_WINDOW {
                    a.phase = AttemptPhase::Stopping;
                    a.failure = Some(Failure {
                        class: FailureClass::Infrastructure,
                        reason: "LaunchOutcomeUnknown".into(),
                        message: format!(
                            "this attempt was recorded {} hours ago but no task with startedBy {} is known to ECS; \
                             re-launching now could run the step twice, so the attempt is failed instead",
                            age.unsigned_abs().as_secs() / 3600,
                            a.started_by
                        ),
                    });
                    return;
                }
                self.events.push(RunEvent::LaunchReissued { step, attempt });
                self.push_launch(step, attempt);
            }
            Err(e) => self.defer_launch(step, attempt, e),
        }
    }

    fn defer_launch(&mut self, step: usize, attempt: u32, error: &ApiError) {
        let now = self.now;
        let Some(a) = self.attempt_mut(step, attempt) else {
            return;
        };
        a.launch_errors += 1;
        a.last_error = Some(error.to_string());
        let delay = api_error_delay(
            a.launch_errors,
            &format!("{}/{}", a.client_token, a.launch_errors),
        );
        let retry_at = now.checked_add(delay).unwrap_or(now);
        a.retry_launch_at = Some(retry_at);
        self.events.push(RunEvent::LaunchDeferred {
            step,
            attempt,
            error: error.to_string(),
            retry_at,
        });
    }

    fn find_task_mut(&mut self, arn: &str) -> Option<(usize, u32, &mut TaskRecord)> {
        self.status.steps.iter_mut().enumerate().find_map(|(i, s)| {
            s.attempts
                .iter_mut()
                .filter(|a| !a.phase.is_terminal())
                .find_map(|a| {
                    let n = a.attempt;
                    a.tasks
                        .iter_mut()
                        .find(|t| t.task_arn == arn)
                        .map(|t| (n, t))
                })
                .map(|(n, t)| (i, n, t))
        })
    }

    fn update_task(&mut self, seen: &TaskRecord) {
        let Some((step, attempt, task)) = self.find_task_mut(&seen.task_arn) else {
            return;
        };
        if task.is_finished() {
            return; // terminal facts never change
        }
        let changed = task.last_status != seen.last_status;
        let stop_request = task.stop_request.take();
        *task = TaskRecord {
            stop_request,
            missing: false,
            ..seen.clone()
        };
        if changed && let Some(last_status) = seen.last_status.clone() {
            self.events.push(RunEvent::TaskStatusChanged {
                step,
                attempt,
                task_arn: seen.task_arn.clone(),
                last_status,
            });
        }
    }

    fn mark_missing(&mut self, arn: &str) {
        let now = self.now;
        let launched_at = self
            .status
            .steps
            .iter()
            .flat_map(|s| &s.attempts)
            .find(|a| a.tasks.iter().any(|t| t.task_arn == arn))
            .and_then(|a| a.launched_at);
        let past_grace =
            launched_at.is_none_or(|at| now.duration_since(at).unsigned_abs() >= MISSING_GRACE);
        if let Some((_, _, task)) = self.find_task_mut(arn).filter(|_| past_grace) {
            task.missing = true;
        }
    }

    // ----- progress -----------------------------------------------------------------------------

    fn progress(&mut self) {
        // Each pass settles one step; a bound keeps a bug from looping forever.
        for _ in 0..=self.status.steps.len() * 4 + 4 {
            let Some(index) = self
                .status
                .steps
                .iter()
                .position(|s| !s.phase.is_terminal())
            else {
                return self.end_run();
            };
            if self
                .status
                .steps
                .iter()
                .any(|s| s.phase == StepPhase::Failed && !s.failure_ignored)
            {
                return self.end_run();
            }
            if !self.progress_step(index) {
                return;
            }
        }
    }

    /// Advances one step; true when it reached a terminal phase (so the next step may go).
    fn progress_step(&mut self, index: usize) -> bool {
        let step = &self.plan.steps[index];
        let halt = self.halt();
        self.status.current_step = Some(index);

        if self.status.steps[index].phase == StepPhase::Pending {
            if let Some(failure) = halt {
                self.fail_step(index, failure);
                return true;
            }
            if !step.definition.active {
                let s = &mut self.status.steps[index];
                s.phase = StepPhase::Skipped;
                s.completion_time = Some(self.now);
                self.events.push(RunEvent::StepSkipped { step: index });
                return true;
            }
            if self.plan.suspended {
                return false; // no new step while suspended
            }
            if self.status.phase == RunPhase::Pending {
                self.status.phase = RunPhase::Running;
                self.status.start_time = Some(self.now);
                self.events.push(RunEvent::RunStarted);
            }
            let s = &mut self.status.steps[index];
            s.phase = StepPhase::Running;
            s.start_time = Some(self.now);
            self.start_attempt(index, 1);
            return false;
        }

        let Some(attempt) = self.status.steps[index]
            .attempts
            .last()
            .filter(|a| !a.phase.is_terminal())
            .cloned()
        else {
            // Between attempts, waiting for the backoff to pass.
            if let Some(failure) = halt {
                self.fail_step(index, failure);
                return true;
            }
            if self.plan.suspended {
                return false; // no new attempt while suspended
            }
            let due = self.status.steps[index]
                .next_attempt_at
                .is_none_or(|at| at <= self.now);
            if due {
                let next = self.status.steps[index].attempts.len() as u32 + 1;
                self.status.steps[index].next_attempt_at = None;
                self.start_attempt(index, next);
            }
            return false;
        };

        match attempt.phase {
            AttemptPhase::Launching => {
                let key = (index, attempt.attempt);
                let due = attempt.retry_launch_at.is_none_or(|at| at <= self.now);
                if !self.answered.contains(&key) && due {
                    self.answered.insert(key);
                    self.actions.push(Action::Lookup {
                        step: index,
                        attempt: attempt.attempt,
                        cluster: attempt.cluster.clone(),
                        started_by: attempt.started_by.clone(),
                    });
                }
                false
            }
            AttemptPhase::Running => {
                if let Some(failure) = self.running_failure(step, &attempt) {
                    if let Some(a) = self.attempt_mut(index, attempt.attempt) {
                        a.phase = AttemptPhase::Stopping;
                        a.failure = Some(failure);
                    }
                    // Now Stopping: this pass requests the stops.
                    return self.progress_step(index);
                }
                if attempt.tasks.iter().all(TaskRecord::is_finished) {
                    if step.definition.needs_essential_containers()
                        && attempt.essential_containers.is_none()
                    {
                        if self.tick {
                            self.request_task_definition(index, attempt.attempt);
                        }
                        return false;
                    }
                    self.succeed_step(index, attempt.attempt);
                    return true;
                }
                self.describe_unfinished(&attempt);
                false
            }
            AttemptPhase::Stopping => {
                // The whole run is ending (cancelled, or past its deadline): it ends once every
                // stop is acknowledged; a step's own failure waits for STOPPED instead.
                let run_halted = self.halt().is_some();
                let reason = stop_reason(attempt.failure.as_ref(), run_halted);
                let cancel_only = run_halted;
                for task in attempt.tasks.iter().filter(|t| !t.is_finished()) {
                    let resend =
                        task.stop_request.as_ref().is_some_and(|r| !r.acknowledged) && self.tick;
                    if task.stop_request.is_none() || resend {
                        self.request_stop(
                            index,
                            attempt.attempt,
                            attempt.cluster.clone(),
                            &task.task_arn,
                            &reason,
                        );
                    }
                }
                // Re-read: the stop requests above are recorded on it.
                let Some(attempt) = self.status.steps[index].attempts.last().cloned() else {
                    return false;
                };
                // A cancelled run ends once every stop is acknowledged; otherwise wait for STOPPED so
                // a retry never overlaps its predecessor and the final exit codes are recorded.
                let done = attempt.tasks.iter().all(|t| {
                    t.is_finished()
                        || (cancel_only && t.stop_request.as_ref().is_some_and(|r| r.acknowledged))
                });
                if done {
                    return self.end_attempt_failed(index, attempt.attempt);
                }
                self.describe_unfinished(&attempt);
                false
            }
            AttemptPhase::Succeeded | AttemptPhase::Failed => false,
        }
    }

    /// Why a running attempt must stop now, if it must.
    fn running_failure(&self, step: &PlannedStep, attempt: &Attempt) -> Option<Failure> {
        if let Some(failure) = self.halt() {
            return Some(failure);
        }
        let policy = step.definition.success_policy();
        let essential_known =
            !step.definition.needs_essential_containers() || attempt.essential_containers.is_some();
        if essential_known {
            let essential = attempt.essential_containers.as_deref();
            if let Some(failure) = attempt
                .tasks
                .iter()
                .filter(|t| t.is_finished())
                .find_map(|t| judge_task(t, &policy, essential))
            {
                return Some(failure);
            }
        }
        let timeout = step.definition.timeout_seconds?;
        let deadline = attempt
            .launched_at?
            .checked_add(Duration::from_secs(timeout))
            .ok()?;
        (self.now >= deadline).then(|| Failure {
            class: FailureClass::Timeout,
            reason: "DeadlineExceeded".into(),
            message: format!(
                "the step's tasks ran longer than its timeout of {timeout}s and were stopped"
            ),
        })
    }

    /// The clientToken, startedBy and tags of attempt `number` of step `index`.
    fn identity(&self, index: usize, number: u32) -> LaunchIdentity {
        let step = &self.plan.steps[index];
        let label = step.definition.parameters.started_by.as_deref();
        launch_identity(label, &self.status.run_id, index, &step.name, number)
    }

    fn start_attempt(&mut self, index: usize, number: u32) {
        let identity = self.identity(index, number);
        let cluster = self.plan.steps[index].definition.parameters.cluster.clone();
        self.status.steps[index].attempts.push(Attempt {
            attempt: number,
            client_token: identity.client_token.clone(),
            started_by: identity.started_by.clone(),
            cluster,
            phase: AttemptPhase::Launching,
            created_at: self.now,
            launched_at: None,
            finished_at: None,
            tasks: Vec::new(),
            launch_errors: 0,
            retry_launch_at: None,
            last_error: None,
            essential_containers: None,
            failure: None,
        });
        self.events.push(RunEvent::StepStarted {
            step: index,
            attempt: number,
        });
        self.push_launch(index, number);
    }

    fn push_launch(&mut self, index: usize, number: u32) {
        let identity = self.identity(index, number);
        let parameters = Box::new(self.plan.steps[index].definition.parameters.clone());
        self.answered.insert((index, number));
        self.actions.push(Action::Launch {
            step: index,
            attempt: number,
            parameters,
            identity,
        });
    }

    fn request_task_definition(&mut self, index: usize, number: u32) {
        if !self.plan.steps[index]
            .definition
            .needs_essential_containers()
        {
            return;
        }
        let Some(a) = self.status.steps[index]
            .attempts
            .iter()
            .find(|a| a.attempt == number)
        else {
            return;
        };
        if a.essential_containers.is_some() {
            return;
        }
        if let Some(task_definition) = a.tasks.iter().find_map(|t| t.task_definition_arn.clone()) {
            self.actions.push(Action::DescribeTaskDefinition {
                step: index,
                attempt: number,
                task_definition,
            });
        }
    }

    fn request_stop(
        &mut self,
        index: usize,
        number: u32,
        cluster: Option<String>,
        arn: &str,
        reason: &str,
    ) {
        let now = self.now;
        if let Some(task) = self
            .attempt_mut(index, number)
            .and_then(|a| a.tasks.iter_mut().find(|t| t.task_arn == arn))
            && task.stop_request.is_none()
        {
            task.stop_request = Some(StopRequest {
                reason: reason.to_owned(),
                requested_at: now,
                acknowledged: false,
            });
            self.events.push(RunEvent::StopRequested {
                step: index,
                attempt: number,
                task_arn: arn.to_owned(),
                reason: reason.to_owned(),
            });
        }
        self.actions.push(Action::StopTask {
            cluster,
            task_arn: arn.to_owned(),
            reason: reason.to_owned(),
        });
    }

    fn describe_unfinished(&mut self, attempt: &Attempt) {
        if !self.tick {
            return;
        }
        let arns = attempt.unfinished_task_arns();
        for chunk in arns.chunks(DESCRIBE_BATCH) {
            self.actions.push(Action::Describe {
                cluster: attempt.cluster.clone(),
                task_arns: chunk.to_vec(),
            });
        }
    }

    fn succeed_step(&mut self, index: usize, number: u32) {
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
    fn end_attempt_failed(&mut self, index: usize, number: u32) -> bool {
        let now = self.now;
        let failure = {
            let Some(a) = self.attempt_mut(index, number) else {
                return false;
            };
            a.phase = AttemptPhase::Failed;
            a.finished_at = Some(now);
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

    fn fail_step(&mut self, index: usize, failure: Failure) {
        // `ignoreFailure` is about the step's own failure, not about the run being stopped.
        let ignored = self.plan.steps[index].definition.ignore_failure && self.halt().is_none();
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

    fn end_run(&mut self) {
        let failed = self
            .status
            .steps
            .iter()
            .find(|s| s.phase == StepPhase::Failed && !s.failure_ignored);
        let (phase, message) = match failed {
            Some(s) => {
                let f = s.failure.as_ref();
                (
                    RunPhase::Failed,
                    format!(
                        "step {} failed: {}",
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

    /// When to look again. With `polling`, this includes the next look at running tasks; without,
    /// only the timers (deadlines, backoffs, the missing-task grace), for a runner whose running
    /// tasks are watched by someone else (the controller's shared poller).
    fn wake_at(&self, polling: bool) -> Option<Timestamp> {
        let poll = self.later(Duration::from_secs(self.plan.poll_interval_seconds.max(1)));
        let mut wake: Option<Timestamp> = None;
        let mut at = |t: Timestamp| wake = Some(wake.map_or(t, |w| w.min(t)));
        if let (Some(seconds), Some(start)) =
            (self.plan.active_deadline_seconds, self.status.start_time)
            && let Ok(deadline) = start.checked_add(Duration::from_secs(seconds))
        {
            at(deadline.max(self.now));
        }
        for (index, s) in self
            .status
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.phase.is_terminal())
        {
            if let Some(t) = s.next_attempt_at {
                at(t);
            }
            for a in s.attempts.iter().filter(|a| !a.phase.is_terminal()) {
                match a.phase {
                    AttemptPhase::Launching => at(a.retry_launch_at.unwrap_or(poll)),
                    _ if polling => at(poll),
                    _ => {}
                }
                // A task ECS calls MISSING is judged only after a grace period: look again then.
                if !polling
                    && let Some(grace_end) = a
                        .launched_at
                        .and_then(|t| t.checked_add(MISSING_GRACE).ok())
                        .filter(|t| *t > self.now)
                {
                    at(grace_end);
                }
                // A stop that ECS has not acknowledged is asked again at the next look.
                if !polling
                    && a.tasks.iter().any(|t| {
                        !t.is_finished() && t.stop_request.as_ref().is_some_and(|r| !r.acknowledged)
                    })
                {
                    at(poll);
                }
                let timeout = self.plan.steps[index].definition.timeout_seconds;
                if let (Some(secs), Some(launched)) = (timeout, a.launched_at)
                    && let Ok(deadline) = launched.checked_add(Duration::from_secs(secs))
                {
                    at(deadline.max(self.now));
                }
            }
        }
        wake
    }
}

fn retry_class(on: RetryOn) -> FailureClass {
    match on {
        RetryOn::Launch => FailureClass::Launch,
        RetryOn::Infrastructure => FailureClass::Infrastructure,
        RetryOn::ExitCode => FailureClass::ExitCode,
        RetryOn::Timeout => FailureClass::Timeout,
    }
}

fn launch_failure(response: &LaunchResponse) -> Option<Failure> {
    if response.failures.is_empty() && !response.tasks.is_empty() {
        return None;
    }
    if response.failures.is_empty() {
        return Some(Failure {
            class: FailureClass::Launch,
            reason: "NoTaskStarted".into(),
            message: "RunTask started no task and reported no failure".into(),
        });
    }
    let describe = |f: &EcsFailure| {
        let mut text = f.reason.clone().unwrap_or_else(|| "unknown reason".into());
        if let Some(detail) = f.detail.as_deref().filter(|d| !d.is_empty()) {
            text.push_str(&format!(" ({detail})"));
        }
        if let Some(arn) = &f.arn {
            text.push_str(&format!(" for {arn}"));
        }
        text
    };
    let reasons: Vec<String> = response.failures.iter().map(describe).collect();
    Some(Failure {
        class: FailureClass::Launch,
        reason: response.failures[0]
            .reason
            .clone()
            .unwrap_or_else(|| "RunTaskFailure".into()),
        message: format!(
            "RunTask could not start {} task(s): {}",
            response.failures.len(),
            reasons.join("; ")
        ),
    })
}

fn cancelled_failure(cancel: Option<&CancelRequest>) -> Failure {
    let reason = cancel.map(|c| c.reason.as_str()).unwrap_or("cancelled");
    Failure {
        class: FailureClass::Cancelled,
        reason: "Cancelled".into(),
        message: format!("the run was cancelled: {reason}"),
    }
}

/// The reason given to StopTask; ECS shows it as the task's stoppedReason.
fn stop_reason(failure: Option<&Failure>, run_halted: bool) -> String {
    let why = match failure.map(|f| f.class) {
        Some(FailureClass::Timeout) if run_halted => "run deadline exceeded",
        Some(FailureClass::Timeout) => "step timeout exceeded",
        Some(FailureClass::Cancelled) => "run cancelled",
        Some(FailureClass::Launch) => "the launch partly failed",
        _ => "another task of the step failed",
    };
    format!("sequencer: {why}")
}
