//! Asking ECS for things: a new attempt and its launch, task definitions, stops, looks at tasks.

use super::*;

impl DecisionDraft<'_> {
    /// The clientToken, startedBy and tags of attempt `number` of step `index`.
    pub(super) fn identity(&self, index: usize, number: u32) -> LaunchIdentity {
        let step = &self.plan.steps[index];
        let label = step.definition.parameters.started_by.as_deref();
        launch_identity(label, &self.status.run_id, index, &step.name, number)
    }

    pub(super) fn start_attempt(&mut self, index: usize, number: u32) {
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
            last_launch_at: None,
            finished_at: None,
            tasks: Vec::new(),
            launch_errors: 0,
            retry_launch_at: None,
            last_error: None,
            essential_containers: None,
            failure: None,
            logs: None,
        });
        forget_old_lines(&mut self.status.steps[index].attempts);
        self.events.push(RunEvent::StepStarted {
            step: index,
            attempt: number,
        });
        self.push_launch(index, number);
    }

    pub(super) fn push_launch(&mut self, index: usize, number: u32) {
        let now = self.now;
        if let Some(a) = self.attempt_mut(index, number) {
            a.last_launch_at = Some(now);
        }
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

    /// Whether the attempt's log read is over (or not wanted), so that its verdict may be given.
    /// The first time, the read is recorded and asked for; a resumed run asks again; after
    /// `LOGS_WAIT` it is given up. The verdict never depends on what the read finds.
    pub(super) fn logs_settled(&mut self, index: usize, number: u32, succeeded: bool) -> bool {
        let policy = self.plan.steps[index].definition.logs_policy();
        if policy.tail_lines == 0 || (succeeded && !policy.always) {
            return true;
        }
        let (now, key) = (self.now, (index, number));
        let first_look = !self.answered.contains(&key);
        let step = &self.plan.steps[index];
        let Some(a) = self.status.steps[index]
            .attempts
            .iter_mut()
            .find(|a| a.attempt == number)
        else {
            return true;
        };
        let targets = log_targets(step, a, succeeded);
        match &mut a.logs {
            Some(logs) if logs.done => return true,
            Some(logs) => {
                let waited = now.duration_since(logs.requested_at);
                if waited.is_positive() && waited.unsigned_abs() >= LOGS_WAIT {
                    logs.done = true;
                    logs.note = Some(format!(
                        "the log read did not answer within {}s",
                        LOGS_WAIT.as_secs()
                    ));
                    return true;
                }
                if !first_look {
                    return false; // asked in this decision already
                }
            }
            None if targets.is_empty() => return true,
            None => {
                a.logs = Some(AttemptLogs {
                    requested_at: now,
                    done: false,
                    tails: Vec::new(),
                    note: None,
                });
            }
        }
        self.answered.insert(key);
        self.actions.push(Action::FetchLogs {
            step: index,
            attempt: number,
            tail_lines: policy.tail_lines,
            targets,
        });
        false
    }

    pub(super) fn request_task_definition(&mut self, index: usize, number: u32) {
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

    pub(super) fn request_stop(
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

    pub(super) fn describe_unfinished(&mut self, attempt: &Attempt) {
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
}

/// Keeps the lines of a step's last `ATTEMPTS_WITH_LINES` attempts only (the notes stay), so a
/// step retried a hundred times does not fill the record.
fn forget_old_lines(attempts: &mut [Attempt]) {
    let keep_from = attempts.len().saturating_sub(ATTEMPTS_WITH_LINES);
    for a in &mut attempts[..keep_from] {
        for tail in a.logs.iter_mut().flat_map(|l| l.tails.iter_mut()) {
            tail.omitted_lines = tail.omitted_lines.saturating_add(tail.lines.len() as u32);
            tail.lines.clear();
        }
    }
}
