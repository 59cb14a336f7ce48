//! Moving steps forward in order: start, look up, watch, stop; one step at a time.

use super::*;

impl DecisionDraft<'_> {
    /// Settles steps in order until one has to wait, or the run ends.
    pub(super) fn progress(&mut self) {
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
        self.status.current_step = Some(index);
        if self.status.steps[index].phase == StepPhase::Pending {
            return self.start_step(index);
        }
        let Some(attempt) = self.status.steps[index]
            .attempts
            .last()
            .filter(|a| !a.phase.is_terminal())
            .cloned()
        else {
            return self.between_attempts(index);
        };
        match attempt.phase {
            AttemptPhase::Launching => {
                self.look_up_unconfirmed_launch(index, &attempt);
                false
            }
            AttemptPhase::Running => self.watch_running(index, &attempt),
            AttemptPhase::Stopping => self.stop_attempt(index, &attempt),
            AttemptPhase::Succeeded | AttemptPhase::Failed => false,
        }
    }

    /// A step whose turn has come: skipped, failed by a halted run, held by suspension, or started
    /// with its first attempt.
    fn start_step(&mut self, index: usize) -> bool {
        if let Some(failure) = self.halt() {
            self.fail_step(index, failure);
            return true;
        }
        if !self.plan.steps[index].definition.active {
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
        false
    }

    /// Between attempts, waiting for the backoff to pass.
    fn between_attempts(&mut self, index: usize) -> bool {
        if let Some(failure) = self.halt() {
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
        false
    }

    /// An attempt recorded as launching with no answer in this decision (a resumed run, or a
    /// launch deferred by an API error): look its tasks up before anything is launched again.
    fn look_up_unconfirmed_launch(&mut self, index: usize, attempt: &Attempt) {
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
    }

    /// A running attempt: stopped when it must fail, succeeded once every task finished well,
    /// else looked at again.
    fn watch_running(&mut self, index: usize, attempt: &Attempt) -> bool {
        let step = &self.plan.steps[index];
        if let Some(failure) = self.running_failure(step, attempt) {
            // The attempt being watched is the step's last (see `progress_step`).
            let Some(a) = self.status.steps[index].attempts.last_mut() else {
                return false;
            };
            a.phase = AttemptPhase::Stopping;
            a.failure = Some(failure);
            // Now Stopping: this pass requests the stops.
            let stopping = a.clone();
            return self.stop_attempt(index, &stopping);
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
            if !self.logs_settled(index, attempt.attempt, true) {
                return false;
            }
            self.succeed_step(index, attempt.attempt);
            return true;
        }
        self.describe_unfinished(attempt);
        false
    }

    /// A failing attempt: its unfinished tasks are stopped; it ends once they are.
    fn stop_attempt(&mut self, index: usize, attempt: &Attempt) -> bool {
        // The whole run is ending (cancelled, or past its deadline): it ends once every stop is
        // acknowledged; a step's own failure waits for STOPPED instead.
        let run_halted = self.halt().is_some();
        let reason = stop_reason(attempt.failure.as_ref(), run_halted);
        for task in attempt.tasks.iter().filter(|t| !t.is_finished()) {
            let resend = task.stop_request.as_ref().is_some_and(|r| !r.acknowledged) && self.tick;
            if task.stop_request.is_none() || resend {
                let cluster = attempt.cluster.clone();
                self.request_stop(index, attempt.attempt, cluster, &task.task_arn, &reason);
            }
        }
        // Re-read: the stop requests above are recorded on it.
        let Some(attempt) = self.status.steps[index].attempts.last().cloned() else {
            return false;
        };
        // A halted run ends once every stop is acknowledged; otherwise wait for STOPPED so a
        // retry never overlaps its predecessor and the final exit codes are recorded.
        let done = attempt.tasks.iter().all(|t| {
            t.is_finished()
                || (run_halted && t.stop_request.as_ref().is_some_and(|r| r.acknowledged))
        });
        if done {
            if !self.logs_settled(index, attempt.attempt, false) {
                return false;
            }
            return self.end_attempt_failed(index, attempt.attempt);
        }
        self.describe_unfinished(&attempt);
        false
    }

    /// Why a running attempt must stop now, if it must.
    pub(super) fn running_failure(&self, step: &PlannedStep, attempt: &Attempt) -> Option<Failure> {
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
        self.timed_out(attempt.launched_at?, timeout, || {
            format!("the step's tasks ran longer than its timeout of {timeout}s and were stopped")
        })
    }
}
