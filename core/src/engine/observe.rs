//! Observations folded into the draft: launch and lookup answers, task states, stop answers.

use super::*;

impl DecisionDraft<'_> {
    pub(super) fn observe(&mut self, observation: &Observation) {
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
                    for missing in &response.missing {
                        self.mark_missing(missing);
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
                // ECS refused (e.g. AccessDenied): the step can never be judged; fail it now rather
                // than wait for a deadline that may not exist. Its running tasks are stopped.
                Err(e) if !e.transient => {
                    if let Some(a) = self.attempt_mut(*step, *attempt)
                        && !a.phase.is_terminal()
                    {
                        a.phase = AttemptPhase::Stopping;
                        a.failure.get_or_insert(Failure {
                            class: FailureClass::Infrastructure,
                            reason: e.code.clone(),
                            message: format!(
                                "DescribeTaskDefinition failed, so the step cannot be judged under `containers: essential`: {e}"
                            ),
                        });
                    }
                }
                // Judging waits for it and it is asked again every tick; say why the step waits.
                Err(e) => self.events.push(RunEvent::PollFailed {
                    error: format!(
                        "DescribeTaskDefinition (needed for `containers: essential`): {e}"
                    ),
                }),
            },
            Observation::LogsFetched {
                step,
                attempt,
                tails,
            } => self.on_logs_fetched(*step, *attempt, tails),
        }
    }

    /// The log read's answer, kept bounded; only while the attempt still waits for it.
    pub(super) fn on_logs_fetched(&mut self, step: usize, attempt: u32, tails: &[LogTail]) {
        self.answered.insert((step, attempt));
        if let Some(logs) = self
            .attempt_mut(step, attempt)
            .and_then(|a| a.logs.as_mut())
            .filter(|l| !l.done)
        {
            logs.tails = bound_tails(tails.to_vec(), STATUS_BUDGET_BYTES);
            logs.done = true;
        }
    }

    pub(super) fn on_launched(
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
            Ok(response) if response.token_conflict => {
                self.on_token_conflict(step, attempt, &response.tasks)
            }
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
                    message: format!("RunTask failed: {e}{}", hint(&e.code)),
                });
            }
        }
    }

    pub(super) fn on_looked_up(
        &mut self,
        step: usize,
        attempt: u32,
        outcome: &Result<Vec<TaskRecord>, ApiError>,
    ) {
        self.answered.insert((step, attempt));
        let now = self.now;
        let cancelled = self.halt();
        let expected = self
            .plan
            .steps
            .get(step)
            .map_or(1, |s| s.definition.parameters.count.unwrap_or(1) as usize);
        // Only this run's tasks: a startedBy carries just a hash of the run, so another run's
        // tasks may share it. They are reported and left alone.
        let outcome: Result<Vec<TaskRecord>, ApiError> = match outcome {
            Ok(tasks) => Ok(self.own_tasks(step, attempt, tasks)),
            Err(e) => Err(e.clone()),
        };
        let outcome = &outcome;
        let Some(a) = self.launching_mut(step, attempt) else {
            return;
        };
        match outcome {
            // Every task of the launch is there: adopt them.
            Ok(tasks) if tasks.len() >= expected => {
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
            // A halted run re-issues nothing. What the lookup lists is adopted and stopped; but
            // an empty or partial answer proves nothing while RunTask may still show up (ListTasks
            // lags it), so it looks again until the launch has settled.
            Ok(tasks) if cancelled.is_some() => {
                if launch_settled(a, now) {
                    a.tasks = tasks.clone();
                    a.phase = AttemptPhase::Stopping;
                    a.failure = cancelled;
                } else {
                    let retry_at = now.checked_add(LOOK_AGAIN).unwrap_or(now);
                    a.retry_launch_at = Some(retry_at);
                    self.events.push(RunEvent::LaunchDeferred {
                        step,
                        attempt,
                        error: format!(
                            "the run is stopping and ECS lists {} of the launch's {expected} task(s) so far; looking again before concluding what was launched",
                            tasks.len()
                        ),
                        retry_at,
                    });
                }
            }
            // None, or only some (ListTasks is eventually consistent): RunTask again with the same
            // clientToken, which ECS answers with the tasks it started, all of them; never adopt
            // part of a launch, or a task would run untracked while the next step starts.
            Ok(tasks) => {
                let age = now.duration_since(a.created_at);
                if age.is_positive() && age.unsigned_abs() > RELAUNCH_WINDOW {
                    a.phase = AttemptPhase::Stopping;
                    a.tasks = tasks.clone();
                    a.failure = Some(Failure {
                        class: FailureClass::OutcomeUnknown,
                        reason: "LaunchOutcomeUnknown".into(),
                        message: format!(
                            "this attempt was recorded {} minutes ago but ECS lists {} of its {expected} task(s) with startedBy {}; \
                             a task that ran and stopped over an hour ago may no longer be listed, so re-launching now could run the step twice: \
                             the attempt is failed instead",
                            age.unsigned_abs().as_secs() / 60,
                            tasks.len(),
                            a.started_by
                        ),
                    });
                    return;
                }
                self.events.push(RunEvent::LaunchReissued {
                    step,
                    attempt,
                    found: tasks.len(),
                });
                self.push_launch(step, attempt);
            }
            // A refusal (no access, no such cluster) will not change by waiting, and a halted run
            // whose launch has settled can wait no longer: whether the launch started a task is
            // unknown, and the attempt ends so, saying where to look.
            Err(e) if !e.transient || (cancelled.is_some() && launch_settled(a, now)) => {
                let halted = cancelled
                    .as_ref()
                    .map(|c| format!(" while the run is stopping ({})", c.message))
                    .unwrap_or_default();
                a.phase = AttemptPhase::Stopping;
                a.failure = Some(Failure {
                    class: FailureClass::OutcomeUnknown,
                    reason: "LaunchLookupFailed".into(),
                    message: format!(
                        "the launch could not be looked up ({e}){halted}, so whether it started a task is unknown: \
                         a task with startedBy {} may be left running in cluster {}; stop it if so",
                        a.started_by,
                        a.cluster.as_deref().unwrap_or("default")
                    ),
                });
            }
            Err(e) => self.defer_launch(step, attempt, e),
        }
    }

    /// This run's tasks among `tasks` (by their run tag); any other's are reported and left alone.
    fn own_tasks(&mut self, step: usize, attempt: u32, tasks: &[TaskRecord]) -> Vec<TaskRecord> {
        let run_id = self.status.run_id.as_str();
        let (own, foreign): (Vec<TaskRecord>, Vec<TaskRecord>) = tasks
            .iter()
            .cloned()
            .partition(|t| t.run_tag.as_deref() == Some(run_id));
        if !foreign.is_empty() {
            let task_arns = foreign.into_iter().map(|t| t.task_arn).collect();
            self.events.push(RunEvent::ForeignTasksIgnored {
                step,
                attempt,
                task_arns,
            });
        }
        own
    }

    /// RunTask answered `ConflictException`: the attempt's clientToken was used before with other
    /// parameters (a re-issue after an upgrade changed what is sent, say), so the first call did
    /// launch, and ECS names its tasks. They are adopted, checked by their run tag; a new token is
    /// never tried, since that would run the step a second time. When none is this run's, whether
    /// the step ran is unknown: the attempt ends so, and is not retried unless the step says
    /// `when: [outcomeUnknown]`.
    fn on_token_conflict(&mut self, step: usize, attempt: u32, tasks: &[TaskRecord]) {
        let own = self.own_tasks(step, attempt, tasks);
        let now = self.now;
        let Some(a) = self.launching_mut(step, attempt) else {
            return;
        };
        if own.is_empty() {
            a.phase = AttemptPhase::Stopping;
            a.failure = Some(Failure {
                class: FailureClass::OutcomeUnknown,
                reason: "LaunchTokenConflict".into(),
                message: format!(
                    "RunTask answered ConflictException: clientToken {} was used before with other parameters, \
                     but none of the {} task(s) ECS names for it carries this run's tag; whether the step ran is unknown, \
                     and a new token could run it twice",
                    a.client_token,
                    tasks.len()
                ),
            });
            return;
        }
        a.tasks = own;
        a.launched_at = Some(now);
        a.retry_launch_at = None;
        a.phase = AttemptPhase::Running;
        let task_arns = a.tasks.iter().map(|t| t.task_arn.clone()).collect();
        self.events.push(RunEvent::TasksFound {
            step,
            attempt,
            task_arns,
        });
        self.request_task_definition(step, attempt);
    }

    pub(super) fn defer_launch(&mut self, step: usize, attempt: u32, error: &ApiError) {
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

    pub(super) fn find_task_mut(&mut self, arn: &str) -> Option<(usize, u32, &mut TaskRecord)> {
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

    pub(super) fn update_task(&mut self, seen: &TaskRecord) {
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

    /// Judged only on an answer ECS gave past the grace period after the launch.
    pub(super) fn mark_missing(&mut self, missing: &MissingTask) {
        let arn = missing.task_arn.as_str();
        let answered = missing.answered_at.unwrap_or(self.now).min(self.now);
        let launched_at = self
            .status
            .steps
            .iter()
            .flat_map(|s| &s.attempts)
            .find(|a| a.tasks.iter().any(|t| t.task_arn == arn))
            .and_then(|a| a.launched_at);
        let past_grace =
            launched_at.is_none_or(|at| answered.duration_since(at) >= MISSING_GRACE_SIGNED);
        if let Some((_, _, task)) = self.find_task_mut(arn).filter(|_| past_grace) {
            task.missing = true;
        }
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
            "RunTask could not start {} task(s): {}{}",
            response.failures.len(),
            reasons.join("; "),
            response
                .failures
                .iter()
                .find_map(|f| f.reason.as_deref().and_then(crate::explain::launch))
                .map(|h| format!(". {h}"))
                .unwrap_or_default()
        ),
    })
}

/// ". <what to check>" for a RunTask refusal sequencer knows, else nothing.
fn hint(code: &str) -> String {
    crate::explain::launch(code)
        .map(|h| format!(". {h}"))
        .unwrap_or_default()
}

/// Whether `LOOKUP_SETTLE` has passed since RunTask was last asked for (for a status written
/// before that was recorded: since the attempt's latest recorded launch time).
fn launch_settled(a: &Attempt, now: Timestamp) -> bool {
    let since = a
        .last_launch_at
        .or(a.retry_launch_at)
        .unwrap_or(a.created_at)
        .max(a.created_at);
    let waited = now.duration_since(since);
    waited.is_positive() && waited.unsigned_abs() >= LOOKUP_SETTLE
}
