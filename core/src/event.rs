//! What the engine reports, and how each report reads.
//!
//! Every event has one [`Description`]: its stable name, whether it is a warning, whether it
//! becomes a Kubernetes Event, the step, attempt and tasks it concerns, a sentence for people and
//! the structured fields for machines. The CLI's lines and JSON objects, the controller's
//! Kubernetes Events and its log lines are all rendered from it, so adding an event, or changing
//! how one reads, is one change here.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::judge::short_task_id;
use crate::log_tail::{fit, render};
use crate::plan::Plan;
use crate::status::{Attempt, Failure, RunPhase, RunStatus, StepStatus};

/// Something that happened, for people (progress lines, Kubernetes Events) and metrics.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEvent {
    RunStarted,
    StepSkipped {
        step: usize,
    },
    StepStarted {
        step: usize,
        attempt: u32,
    },
    TasksLaunched {
        step: usize,
        attempt: u32,
        task_arns: Vec<String>,
    },
    /// A resumed run found tasks it had launched but not recorded.
    TasksFound {
        step: usize,
        attempt: u32,
        task_arns: Vec<String>,
    },
    /// A lookup by startedBy found tasks of another run (the startedBy carries only a hash of the
    /// run): they are left alone, never adopted.
    ForeignTasksIgnored {
        step: usize,
        attempt: u32,
        task_arns: Vec<String>,
    },
    /// A resumed run found none (or only some) of the launch's tasks and re-issues RunTask with
    /// the same clientToken.
    LaunchReissued {
        step: usize,
        attempt: u32,
        /// How many of the launch's tasks the lookup found.
        found: usize,
    },
    LaunchDeferred {
        step: usize,
        attempt: u32,
        error: String,
        retry_at: Timestamp,
    },
    TaskStatusChanged {
        step: usize,
        attempt: u32,
        task_arn: String,
        last_status: String,
    },
    StopRequested {
        step: usize,
        attempt: u32,
        task_arn: String,
        reason: String,
    },
    PollFailed {
        error: String,
    },
    AttemptFailed {
        step: usize,
        attempt: u32,
        failure: Failure,
    },
    RetryScheduled {
        step: usize,
        next_attempt: u32,
        at: Timestamp,
    },
    StepSucceeded {
        step: usize,
        attempt: u32,
    },
    StepFailed {
        step: usize,
        failure: Failure,
        ignored: bool,
    },
    RunFinished {
        phase: RunPhase,
    },
}

/// How one event reads, for every audience.
#[derive(Clone, Debug, PartialEq)]
pub struct Description {
    /// The stable name (`--output json`'s `event`); its capitalised form is the Kubernetes
    /// Event's reason unless `reason` says otherwise.
    pub kind: &'static str,
    reason: Option<&'static str>,
    /// A short fixed phrase, the message of log lines ("task launched").
    pub headline: &'static str,
    pub warning: bool,
    /// Shown as a line to a person following the CLI (run start and end have their own lines).
    pub shown: bool,
    /// Published as a Kubernetes Event on the Sequence.
    pub published: bool,
    /// The step (0-based) and its name.
    pub step: Option<(usize, String)>,
    pub attempt: Option<u32>,
    pub task_arns: Vec<String>,
    /// A sentence for people, without the step's label.
    pub text: String,
    /// The details for machines, beside `step`, `name`, `time` and `event`.
    pub fields: Map<String, Value>,
    /// Lines shown under `text`: the attempt's last log lines (see `log_tail::render`).
    pub log_block: Vec<String>,
}

impl Description {
    fn new(kind: &'static str, headline: &'static str, text: String) -> Self {
        Description {
            kind,
            reason: None,
            headline,
            warning: false,
            shown: true,
            published: false,
            step: None,
            attempt: None,
            task_arns: Vec::new(),
            text,
            fields: Map::new(),
            log_block: Vec::new(),
        }
    }

    /// The attempt's log lines, for people (`block`) and, with `logs`, for machines.
    fn logs(mut self, attempt: Option<&Attempt>, block: bool) -> Self {
        let Some(logs) = attempt.and_then(|a| a.logs.as_ref()) else {
            return self;
        };
        if block {
            self.log_block = render(&logs.tails);
            if let Some(note) = &logs.note {
                self.log_block.push(format!("no logs: {note}"));
            }
        }
        self.field("logTail", json!(logs))
    }

    fn step(mut self, status: &RunStatus, step: usize) -> Self {
        let name = status.steps.get(step).map(|s| s.name.clone());
        self.step = Some((step, name.unwrap_or_default()));
        self
    }

    fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = Some(attempt);
        self.field("attempt", attempt)
    }

    fn tasks(mut self, arns: &[String]) -> Self {
        self.task_arns = arns.to_vec();
        self
    }

    /// The event concerns one attempt of a step.
    fn attempt_of(self, status: &RunStatus, step: usize, attempt: u32) -> Self {
        self.step(status, step).attempt(attempt)
    }

    /// The event names these tasks.
    fn task_list(self, arns: &[String]) -> Self {
        self.field("taskArns", arns.to_vec()).tasks(arns)
    }

    /// The event concerns one task of one attempt.
    fn task(self, status: &RunStatus, step: usize, attempt: u32, task_arn: &str) -> Self {
        self.attempt_of(status, step, attempt)
            .field("taskArn", task_arn)
            .tasks(&[task_arn.to_owned()])
    }

    fn field(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }

    fn warning(mut self) -> Self {
        self.warning = true;
        self
    }

    fn published(mut self) -> Self {
        self.published = true;
        self
    }

    fn hidden(mut self) -> Self {
        self.shown = false;
        self
    }

    /// The Kubernetes Event reason: the kind, capitalised, unless the event names its own.
    pub fn reason(&self) -> String {
        if let Some(reason) = self.reason {
            return reason.into();
        }
        let mut chars = self.kind.chars();
        chars
            .next()
            .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
            .unwrap_or_default()
    }

    /// `[2/5 load]`: the step's place in the run, for lines a person reads.
    pub fn label(&self, total_steps: usize) -> Option<String> {
        let (step, name) = self.step.as_ref()?;
        Some(format!("[{}/{total_steps} {name}]", step + 1))
    }

    /// `step 2 (load): ...`: the sentence with its step, for Kubernetes Events.
    pub fn note(&self) -> String {
        match &self.step {
            Some((step, name)) => format!("step {} ({name}): {}", step + 1, self.text),
            None => self.text.clone(),
        }
    }

    /// The Kubernetes Event's note: `note()` and then as much of the log block as fits in
    /// `max` bytes (the newest lines first).
    pub fn event_note(&self, max: usize) -> String {
        fit(&self.note(), &self.log_block, max)
    }

    /// The JSON object of `--output json`.
    pub fn json(&self, time: Timestamp) -> Value {
        let mut object = Map::new();
        if let Some((step, name)) = &self.step {
            object.insert("step".into(), (step + 1).into());
            object.insert("name".into(), name.clone().into());
        }
        object.extend(self.fields.clone());
        object.insert("time".into(), time.to_string().into());
        object.insert("event".into(), self.kind.into());
        Value::Object(object)
    }
}

impl RunEvent {
    /// How this event reads; `plan` and `status` are the run's as the event was reported.
    pub fn describe(&self, plan: &Plan, status: &RunStatus) -> Description {
        match self {
            RunEvent::RunStarted => run_started(status),
            RunEvent::RunFinished { phase } => run_finished(status, *phase),
            RunEvent::StepSkipped { step } => {
                let text = "skipped (active: false)".into();
                Description::new("stepSkipped", "step skipped", text).step(status, *step)
            }
            RunEvent::StepStarted { step, attempt } => step_started(plan, status, *step, *attempt),
            RunEvent::TasksLaunched {
                step,
                attempt,
                task_arns,
            } => {
                let text = format!("launched {}", task_arns.join(", "));
                Description::new("tasksLaunched", "task launched", text)
                    .attempt_of(status, *step, *attempt)
                    .task_list(task_arns)
                    .published()
            }
            RunEvent::TasksFound {
                step,
                attempt,
                task_arns,
            } => {
                let text = format!(
                    "resumed: found the task(s) launched before the restart: {}",
                    task_arns.join(", ")
                );
                Description::new("tasksFound", "found a task launched before a restart", text)
                    .attempt_of(status, *step, *attempt)
                    .task_list(task_arns)
            }
            RunEvent::LaunchReissued {
                step,
                attempt,
                found,
            } => launch_reissued(status, *step, *attempt, *found),
            RunEvent::ForeignTasksIgnored {
                step,
                attempt,
                task_arns,
            } => {
                let text = format!(
                    "ignored task(s) of another run that carry the same startedBy: {}",
                    task_arns.join(", ")
                );
                Description::new("foreignTasksIgnored", "foreign task ignored", text)
                    .attempt_of(status, *step, *attempt)
                    .task_list(task_arns)
                    .warning()
            }
            RunEvent::LaunchDeferred {
                step,
                attempt,
                error,
                retry_at,
            } => {
                let text = format!(
                    "RunTask did not get through ({error}); trying again at {}",
                    clock(*retry_at)
                );
                Description::new("launchDeferred", "launch deferred", text)
                    .attempt_of(status, *step, *attempt)
                    .field("error", error.clone())
                    .field("retryAt", retry_at.to_string())
                    .warning()
                    .published()
            }
            RunEvent::TaskStatusChanged {
                step,
                attempt,
                task_arn,
                last_status,
            } => {
                let text = format!("task {} is {last_status}", short_task_id(task_arn));
                Description::new("taskStatusChanged", "task status changed", text)
                    .task(status, *step, *attempt, task_arn)
                    .field("lastStatus", last_status.clone())
            }
            RunEvent::StopRequested {
                step,
                attempt,
                task_arn,
                reason,
            } => {
                let text = format!("stopping task {} ({reason})", short_task_id(task_arn));
                Description::new("stopRequested", "stopping task", text)
                    .task(status, *step, *attempt, task_arn)
                    .field("reason", reason.clone())
            }
            RunEvent::PollFailed { error } => {
                let text = format!("warning: DescribeTasks failed ({error}); will look again");
                Description::new("pollFailed", "poll failed", text)
                    .field("error", error.clone())
                    .warning()
            }
            RunEvent::AttemptFailed {
                step,
                attempt,
                failure,
            } => attempt_failed(status, *step, *attempt, failure),
            RunEvent::RetryScheduled {
                step,
                next_attempt,
                at,
            } => {
                let text = format!("will retry as attempt {next_attempt} at {}", clock(*at));
                Description::new("retryScheduled", "retry scheduled", text)
                    .step(status, *step)
                    .field("nextAttempt", *next_attempt)
                    .field("at", at.to_string())
            }
            RunEvent::StepSucceeded { step, attempt } => step_succeeded(status, *step, *attempt),
            RunEvent::StepFailed {
                step,
                failure,
                ignored,
            } => step_failed(status, *step, failure, *ignored),
        }
    }
}

fn run_started(status: &RunStatus) -> Description {
    Description::new("runStarted", "run started", "run started".into())
        .field("runId", status.run_id.clone())
        .field("totalSteps", status.total_steps)
        .hidden()
}

fn launch_reissued(status: &RunStatus, step: usize, attempt: u32, found: usize) -> Description {
    let started_by = attempt_of(status, step, attempt)
        .map(|a| a.started_by.clone())
        .unwrap_or_default();
    let text = if found == 0 {
        format!(
            "resumed: no task with startedBy {started_by} exists; re-issuing RunTask with the same clientToken"
        )
    } else {
        format!(
            "resumed: only {found} task(s) with startedBy {started_by} are listed yet; re-issuing RunTask with the same clientToken, which ECS answers with all the tasks it started"
        )
    };
    Description::new(
        "launchReissued",
        "an unconfirmed launch was not found whole: re-issuing RunTask with the same clientToken",
        text,
    )
    .attempt_of(status, step, attempt)
    .field("found", found)
}

fn step_failed(status: &RunStatus, step: usize, failure: &Failure, ignored: bool) -> Description {
    let note = if ignored {
        " (ignore_failure: the run goes on)"
    } else {
        ""
    };
    let text = format!("FAILED [{}]{note}: {}", failure.reason, failure.message);
    let last = status.steps.get(step).and_then(|s| s.attempts.last());
    Description::new("stepFailed", "step failed", text)
        .step(status, step)
        .logs(last, true)
        .field("failure", json!(failure))
        .field("ignored", ignored)
        .warning()
        .published()
}

fn run_finished(status: &RunStatus, phase: RunPhase) -> Description {
    let message = status.message.clone().unwrap_or_default();
    let mut d = Description::new("runFinished", "run finished", message.clone())
        .field("phase", json!(phase))
        .field("message", json!(status.message))
        .published()
        .hidden();
    if phase == RunPhase::Succeeded {
        d.reason = Some("Completed");
    } else {
        d.reason = Some("Failed");
        d.warning = true;
    }
    d
}

fn step_started(plan: &Plan, status: &RunStatus, step: usize, attempt: u32) -> Description {
    let what = if attempt == 1 {
        "starting".to_owned()
    } else {
        format!("attempt {attempt} starting")
    };
    let text = match plan.steps.get(step) {
        Some(planned) => {
            let p = &planned.definition.parameters;
            format!(
                "{what}: task definition {} on cluster {}, {} task(s)",
                p.task_definition,
                p.cluster.as_deref().unwrap_or("default"),
                p.count.unwrap_or(1)
            )
        }
        None => what,
    };
    Description::new("stepStarted", "step started", text)
        .step(status, step)
        .attempt(attempt)
        .published()
}

fn attempt_failed(status: &RunStatus, step: usize, attempt: u32, failure: &Failure) -> Description {
    let found = attempt_of(status, step, attempt);
    let containers = found.map(container_summary).unwrap_or_default();
    let tasks = found.map(|a| a.tasks.clone()).unwrap_or_default();
    Description::new(
        "attemptFailed",
        "attempt failed",
        format!(
            "attempt {attempt} failed [{}]: {}{containers}",
            failure.reason, failure.message
        ),
    )
    .step(status, step)
    .attempt(attempt)
    .field("failure", json!(failure))
    .field("tasks", json!(tasks))
    // The step's failure shows the lines of its last attempt; an attempt retried shows its own.
    .logs(found, !step_failed_with(status, step, attempt))
    .warning()
}

/// Whether `attempt` is the last of a step that failed (its StepFailed shows its log lines).
fn step_failed_with(status: &RunStatus, step: usize, attempt: u32) -> bool {
    status.steps.get(step).is_some_and(|s| {
        s.phase == crate::status::StepPhase::Failed
            && s.attempts.last().is_some_and(|a| a.attempt == attempt)
    })
}

fn step_succeeded(status: &RunStatus, step: usize, attempt: u32) -> Description {
    let found = attempt_of(status, step, attempt);
    let duration = status
        .steps
        .get(step)
        .map(step_duration)
        .unwrap_or_default();
    let containers = found.map(container_summary).unwrap_or_default();
    let tasks = found.map(|a| a.tasks.clone()).unwrap_or_default();
    Description::new(
        "stepSucceeded",
        "step succeeded",
        format!("succeeded in {duration}{containers}"),
    )
    .step(status, step)
    .attempt(attempt)
    .field("tasks", json!(tasks))
    .logs(found, true)
    .published()
}

fn attempt_of(status: &RunStatus, step: usize, attempt: u32) -> Option<&Attempt> {
    status
        .steps
        .get(step)?
        .attempts
        .iter()
        .find(|a| a.attempt == attempt)
}

/// `HH:MM:SS` (UTC), for lines a person follows.
pub fn clock(t: Timestamp) -> String {
    t.strftime("%H:%M:%S").to_string()
}

/// "; exit codes: task abcd app=0 sidecar=137 (reason)"
pub fn container_summary(attempt: &Attempt) -> String {
    let parts: Vec<String> = attempt
        .tasks
        .iter()
        .map(|t| {
            let containers: Vec<String> = t
                .containers
                .iter()
                .map(|c| {
                    let code = c
                        .exit_code
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "none".into());
                    let reason = c
                        .reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default();
                    format!("{}={code}{reason}", c.name)
                })
                .collect();
            format!(
                "task {} {}",
                short_task_id(&t.task_arn),
                containers.join(" ")
            )
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("; exit codes: {}", parts.join(", "))
    }
}

/// How long a step ran, or `-` while it has no start and end.
pub fn step_duration(s: &StepStatus) -> String {
    match (s.start_time, s.completion_time) {
        (Some(a), Some(b)) => format_duration(b.duration_since(a).unsigned_abs()),
        _ => "-".into(),
    }
}

/// `3.0s`, `1m07s`, `1h02m05s`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..=59 => format!("{}.{}s", secs, d.subsec_millis() / 100),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!(
            "{}h{:02}m{:02}s",
            secs / 3600,
            (secs % 3600) / 60,
            secs % 60
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_millis(3_040)), "3.0s");
        assert_eq!(format_duration(Duration::from_secs(67)), "1m07s");
        assert_eq!(format_duration(Duration::from_secs(3_725)), "1h02m05s");
    }
}
