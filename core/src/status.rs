//! The status of a run: everything needed to resume it, and all a person wants to know about it.
//!
//! The CLI keeps it in memory or in a state file; the controller will keep it in `Sequence.status`.
//! The engine reads only this (plus the plan, observations and the clock), so a status written
//! before an action is enough to resume after a crash at any instant.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::log_record::AttemptLogs;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// Unique per run; every clientToken and startedBy is derived from it.
    pub run_id: String,
    pub plan_digest: String,
    pub phase: RunPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Timestamp>,
    /// Index of the step in progress (0-based); absent before the first and after the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<usize>,
    pub total_steps: usize,
    pub steps: Vec<StepStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<CancelRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl RunPhase {
    pub fn is_terminal(self) -> bool {
        matches!(self, RunPhase::Succeeded | RunPhase::Failed)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelRequest {
    pub reason: String,
    pub requested_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    pub name: String,
    pub phase: StepPhase,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// When the next attempt may start (after a retryable failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Timestamp>,
    /// Why the step failed (the last attempt's failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The step failed but `ignoreFailure` let the run go on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failure_ignored: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepPhase {
    Pending,
    Skipped,
    Running,
    Succeeded,
    Failed,
}

impl StepPhase {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepPhase::Skipped | StepPhase::Succeeded | StepPhase::Failed
        )
    }
}

/// One try at a step: one RunTask call (repeated only with the same clientToken) and its tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1-based.
    pub attempt: u32,
    pub client_token: String,
    pub started_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub phase: AttemptPhase,
    /// When this attempt was recorded, before its RunTask call.
    pub created_at: Timestamp,
    /// When RunTask answered with tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_at: Option<Timestamp>,
    /// When RunTask was last asked for (the first call or a re-issue), recorded before the call:
    /// until `LOOKUP_SETTLE` has passed since, a lookup that lists nothing proves nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_launch_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskRecord>,
    /// Transient errors while launching (throttling, 5xx, network), and when to try again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub launch_errors: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_launch_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Names of the task definition's essential containers, when the success policy needs them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub essential_containers: Option<Vec<String>>,
    /// Set when the attempt is judged failed (it may still be stopping its tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The last log lines of its containers, read once its tasks stopped (see `log_tail`).
    #[serde(rename = "logTail", default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<AttemptLogs>,
}

impl Attempt {
    /// The ARNs of its tasks that have not stopped yet: what still needs looking at.
    pub fn unfinished_task_arns(&self) -> Vec<String> {
        self.tasks
            .iter()
            .filter(|t| !t.is_finished())
            .map(|t| t.task_arn.clone())
            .collect()
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptPhase {
    /// Recorded; RunTask may or may not have happened. On resume: look the tasks up first.
    Launching,
    /// Tasks are known and being watched.
    Running,
    /// Judged failed; waiting for the remaining tasks to stop.
    Stopping,
    Succeeded,
    Failed,
}

impl AttemptPhase {
    pub fn is_terminal(self) -> bool {
        matches!(self, AttemptPhase::Succeeded | AttemptPhase::Failed)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    pub task_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerRecord>,
    /// ECS answered MISSING for this ARN: it no longer knows the task.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_request: Option<StopRequest>,
    /// The task's `sequencer.dev/run` tag as ECS reported it: which run launched it. Used to tell
    /// a lookup's own tasks from a foreign run's whose startedBy happens to be the same; not kept.
    #[serde(skip)]
    pub run_tag: Option<String>,
}

impl TaskRecord {
    /// Nothing more will happen to this task: ECS says STOPPED, or has forgotten it.
    pub fn is_finished(&self) -> bool {
        self.missing || self.last_status.as_deref() == Some("STOPPED")
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopRequest {
    pub reason: String,
    pub requested_at: Timestamp,
    /// StopTask answered without error.
    #[serde(default)]
    pub acknowledged: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub class: FailureClass,
    /// A short CamelCase reason, e.g. `EssentialContainerExited`, `RESOURCE:MEMORY`, `DeadlineExceeded`.
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureClass {
    Launch,
    Infrastructure,
    ExitCode,
    Timeout,
    Cancelled,
    /// Whether the attempt's tasks ran, or still run, is not known (ECS forgot a task; a launch
    /// could not be confirmed in time). Never retried unless a step opts in: a new attempt could
    /// run the step twice.
    OutcomeUnknown,
}

impl RunStatus {
    /// The status of a run that has not started.
    pub fn new(run_id: String, plan: &crate::plan::Plan) -> Self {
        RunStatus {
            run_id,
            plan_digest: plan.digest(),
            phase: RunPhase::Pending,
            start_time: None,
            completion_time: None,
            current_step: None,
            total_steps: plan.steps.len(),
            steps: plan
                .steps
                .iter()
                .map(|s| StepStatus {
                    name: s.name.clone(),
                    phase: StepPhase::Pending,
                    attempts: Vec::new(),
                    next_attempt_at: None,
                    start_time: None,
                    completion_time: None,
                    failure: None,
                    failure_ignored: false,
                })
                .collect(),
            cancel: None,
            message: None,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.phase.is_terminal()
    }
}
