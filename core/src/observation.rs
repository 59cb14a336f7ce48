//! What the engine is told: answers from ECS, the clock ticking, a request to cancel.
//! Adapters turn AWS responses into these; the engine never sees an SDK type.

use jiff::Timestamp;

use crate::log_record::LogTail;
use crate::status::TaskRecord;

#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// The poll interval has passed: time to look at running tasks and retry what failed.
    Tick,
    /// Stop the run (Ctrl-C, SIGTERM, deletion of a Sequence).
    CancelRequested { reason: String },
    /// The answer to `Action::Launch`.
    Launched {
        step: usize,
        attempt: u32,
        outcome: Result<LaunchResponse, ApiError>,
    },
    /// The answer to `Action::Lookup`: the tasks that carry the attempt's startedBy.
    LookedUp {
        step: usize,
        attempt: u32,
        outcome: Result<Vec<TaskRecord>, ApiError>,
    },
    /// The answer to `Action::Describe`.
    Described {
        outcome: Result<DescribeResponse, ApiError>,
    },
    /// The answer to `Action::Stop`.
    StopAnswered {
        task_arn: String,
        outcome: Result<(), ApiError>,
    },
    /// The answer to `Action::DescribeTaskDefinition`: names of the essential containers.
    TaskDefinitionDescribed {
        step: usize,
        attempt: u32,
        outcome: Result<Vec<String>, ApiError>,
    },
    /// The answer to `Action::FetchLogs`: one tail per target, lines or the reason for none.
    LogsFetched {
        step: usize,
        attempt: u32,
        tails: Vec<LogTail>,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LaunchResponse {
    pub tasks: Vec<TaskRecord>,
    pub failures: Vec<EcsFailure>,
    /// ECS answered `ConflictException`: the clientToken was already used in this cluster with
    /// other parameters, so the first call did launch, and `tasks` are the ones it started (the
    /// error's `resourceIds`, described). Nothing new was started.
    pub token_conflict: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DescribeResponse {
    pub tasks: Vec<TaskRecord>,
    /// Tasks ECS answered MISSING for.
    pub missing: Vec<MissingTask>,
}

/// A task DescribeTasks answered MISSING for, and when ECS gave that answer. A MISSING shortly
/// after the launch is ECS's eventual consistency, not a lost task: the engine judges a task
/// missing only on an answer given after the grace period, however late the answer is served.
#[derive(Clone, Debug, PartialEq)]
pub struct MissingTask {
    pub task_arn: String,
    /// `None`: the answer is fresh (given just now).
    pub answered_at: Option<Timestamp>,
}

impl MissingTask {
    /// A MISSING answered just now.
    pub fn fresh(task_arn: impl Into<String>) -> Self {
        MissingTask {
            task_arn: task_arn.into(),
            answered_at: None,
        }
    }
}

/// An entry of an ECS `failures[]` list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EcsFailure {
    pub arn: Option<String>,
    pub reason: Option<String>,
    pub detail: Option<String>,
}

/// An AWS API call that failed.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// Throttling, 5xx, timeouts and network errors: worth trying again, never a step failure.
    pub transient: bool,
    /// The AWS error code (e.g. `ClusterNotFoundException`) or a short label.
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}
