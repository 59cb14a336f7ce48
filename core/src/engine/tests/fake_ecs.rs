//! `FakeEcs`: an in-process ECS, each task following a script.

use super::simulation::container;
use super::*;
use crate::identity::TAG_RUN;
use crate::log_record::LogTail;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Outcome {
    Exit(i32),
    NoExitCode,
    StopCode(&'static str),
    /// RunTask answers with `failures[]` and no task.
    LaunchFailure,
    /// RunTask throws a transient error (the call has no effect).
    Throttled,
    /// The task keeps running, but DescribeTasks forgets it (answers MISSING).
    Vanish,
}

#[derive(Default)]
pub(crate) struct FakeEcs {
    pub(crate) honours_client_token: bool,
    pub(crate) tasks: Vec<(
        TaskRecord,
        String, /* startedBy */
        u32,    /* ticks left */
        Outcome,
    )>,
    pub(crate) launches_by_token: HashMap<String, Vec<String>>,
    pub(crate) run_task_calls: u32,
    /// Outcome per (step, attempt); default success.
    pub(crate) script: HashMap<(usize, u32), (Outcome, u32)>,
    pub(crate) next_id: u32,
    /// ListTasks answers with one task at most (eventual consistency: the others not yet listed).
    pub(crate) partial_lists: bool,
    /// ListTasks also lists a task of another run with the same startedBy (a hash collision).
    pub(crate) foreign_tasks: bool,
    /// FetchLogs calls answered.
    pub(crate) log_reads: u32,
}

impl FakeEcs {
    pub(crate) fn execute(&mut self, action: &Action) -> Observation {
        match action {
            Action::Launch {
                step,
                attempt,
                parameters,
                identity,
            } => {
                self.run_task_calls += 1;
                let (outcome, ticks) = self
                    .script
                    .get(&(*step, *attempt))
                    .copied()
                    .unwrap_or((Outcome::Exit(0), 2));
                if outcome == Outcome::Throttled && self.run_task_calls % 2 == 1 {
                    let e = ApiError {
                        transient: true,
                        code: "ThrottlingException".into(),
                        message: "Rate exceeded".into(),
                    };
                    return Observation::Launched {
                        step: *step,
                        attempt: *attempt,
                        outcome: Err(e),
                    };
                }
                if outcome == Outcome::LaunchFailure {
                    let failures = vec![EcsFailure {
                        arn: None,
                        reason: Some("RESOURCE:MEMORY".into()),
                        detail: None,
                    }];
                    return Observation::Launched {
                        step: *step,
                        attempt: *attempt,
                        outcome: Ok(LaunchResponse {
                            tasks: vec![],
                            failures,
                            token_conflict: false,
                        }),
                    };
                }
                if self.honours_client_token
                    && let Some(arns) = self.launches_by_token.get(&identity.client_token)
                {
                    let tasks = arns.iter().map(|a| self.snapshot(a)).collect();
                    return Observation::Launched {
                        step: *step,
                        attempt: *attempt,
                        outcome: Ok(LaunchResponse {
                            tasks,
                            failures: vec![],
                            token_conflict: false,
                        }),
                    };
                }
                let count = parameters.count.unwrap_or(1);
                let mut arns = Vec::new();
                for _ in 0..count {
                    self.next_id += 1;
                    let arn = format!("arn:aws:ecs:us-east-1:1:task/c/t{}", self.next_id);
                    let run_tag = identity.tags.iter().find(|(k, _)| k == TAG_RUN);
                    let record = TaskRecord {
                        run_tag: run_tag.map(|(_, v)| v.clone()),
                        task_arn: arn.clone(),
                        task_definition_arn: Some(parameters.task_definition.clone()),
                        last_status: Some("PROVISIONING".into()),
                        ..Default::default()
                    };
                    self.tasks
                        .push((record, identity.started_by.clone(), ticks, outcome));
                    arns.push(arn);
                }
                self.launches_by_token
                    .entry(identity.client_token.clone())
                    .or_default()
                    .extend(arns.clone());
                let tasks = arns.iter().map(|a| self.snapshot(a)).collect();
                Observation::Launched {
                    step: *step,
                    attempt: *attempt,
                    outcome: Ok(LaunchResponse {
                        tasks,
                        failures: vec![],
                        token_conflict: false,
                    }),
                }
            }
            Action::Lookup {
                step,
                attempt,
                started_by,
                ..
            } => {
                let listed = self
                    .tasks
                    .iter()
                    .filter(|t| &t.1 == started_by)
                    .map(|t| t.0.clone());
                let mut tasks: Vec<TaskRecord> = listed
                    .take(if self.partial_lists { 1 } else { 10 })
                    .collect();
                if self.foreign_tasks {
                    let foreign = TaskRecord {
                        task_arn: format!("arn:aws:ecs:us-east-1:1:task/c/foreign-{started_by}"),
                        last_status: Some("RUNNING".into()),
                        run_tag: Some("another-run".into()),
                        ..Default::default()
                    };
                    tasks.insert(0, foreign);
                }
                Observation::LookedUp {
                    step: *step,
                    attempt: *attempt,
                    outcome: Ok(tasks),
                }
            }
            Action::Describe { task_arns, .. } => {
                let vanished = |arn: &String| {
                    self.tasks
                        .iter()
                        .any(|t| &t.0.task_arn == arn && t.3 == Outcome::Vanish)
                };
                let (missing, known): (Vec<String>, Vec<String>) =
                    task_arns.iter().cloned().partition(vanished);
                let tasks = known.iter().map(|a| self.snapshot(a)).collect();
                let missing = missing.into_iter().map(MissingTask::fresh).collect();
                Observation::Described {
                    outcome: Ok(DescribeResponse { tasks, missing }),
                }
            }
            Action::StopTask {
                task_arn, reason, ..
            } => {
                if let Some(t) = self.tasks.iter_mut().find(|t| &t.0.task_arn == task_arn)
                    && t.0.last_status.as_deref() != Some("STOPPED")
                {
                    t.0.last_status = Some("STOPPED".into());
                    t.0.stop_code = Some("UserInitiated".into());
                    t.0.stopped_reason = Some(reason.clone());
                    t.0.containers = vec![container(Some(143))];
                }
                Observation::StopAnswered {
                    task_arn: task_arn.clone(),
                    outcome: Ok(()),
                }
            }
            Action::DescribeTaskDefinition { step, attempt, .. } => {
                Observation::TaskDefinitionDescribed {
                    step: *step,
                    attempt: *attempt,
                    outcome: Ok(vec!["app".into()]),
                }
            }
            Action::FetchLogs {
                step,
                attempt,
                tail_lines,
                targets,
            } => {
                self.log_reads += 1;
                let tails = targets
                    .iter()
                    .map(|t| {
                        let id = crate::judge::short_task_id(&t.task_arn).to_owned();
                        let lines = [
                            "starting".to_owned(),
                            format!("{} failed in {id}", t.container),
                        ];
                        let keep = lines.len().min(*tail_lines as usize);
                        LogTail {
                            task_id: id,
                            container: t.container.clone(),
                            lines: lines[lines.len() - keep..].to_vec(),
                            ..Default::default()
                        }
                    })
                    .collect();
                Observation::LogsFetched {
                    step: *step,
                    attempt: *attempt,
                    tails,
                }
            }
        }
    }

    pub(crate) fn snapshot(&self, arn: &str) -> TaskRecord {
        self.tasks
            .iter()
            .find(|t| t.0.task_arn == arn)
            .map(|t| t.0.clone())
            .unwrap_or_default()
    }

    /// Time passes: running tasks get closer to their end.
    pub(crate) fn tick(&mut self) {
        for (task, _, ticks, outcome) in &mut self.tasks {
            if task.last_status.as_deref() == Some("STOPPED") || *outcome == Outcome::Vanish {
                continue;
            }
            if *ticks > 0 {
                *ticks -= 1;
                task.last_status = Some("RUNNING".into());
                continue;
            }
            task.last_status = Some("STOPPED".into());
            match *outcome {
                Outcome::Exit(code) => {
                    task.stop_code = Some("EssentialContainerExited".into());
                    task.containers = vec![container(Some(code))];
                }
                Outcome::NoExitCode => {
                    task.stop_code = Some("EssentialContainerExited".into());
                    task.containers = vec![container(None)];
                }
                Outcome::StopCode(code) => {
                    task.stop_code = Some(code.into());
                    task.containers = vec![container(None)];
                }
                _ => task.containers = vec![container(Some(0))],
            }
        }
    }
}
