//! What the engine asks for (actions) and what it reports (events).
//! Rule for every runner: persist the decision's status first, then carry out its actions.

use jiff::Timestamp;

use crate::run_task::{LaunchIdentity, RunTaskParameters};
use crate::status::{Failure, RunPhase, RunStatus};

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// ECS RunTask with exactly these parameters and identity.
    Launch {
        step: usize,
        attempt: u32,
        parameters: Box<RunTaskParameters>,
        identity: LaunchIdentity,
    },
    /// ListTasks by startedBy (running and stopped), then DescribeTasks of what was found.
    Lookup {
        step: usize,
        attempt: u32,
        cluster: Option<String>,
        started_by: String,
    },
    /// DescribeTasks; at most 100 ARNs.
    Describe {
        cluster: Option<String>,
        task_arns: Vec<String>,
    },
    StopTask {
        cluster: Option<String>,
        task_arn: String,
        reason: String,
    },
    DescribeTaskDefinition {
        step: usize,
        attempt: u32,
        task_definition: String,
    },
}

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
    /// A resumed run found nothing and re-issues RunTask with the same clientToken.
    LaunchReissued {
        step: usize,
        attempt: u32,
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

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: RunStatus,
    pub actions: Vec<Action>,
    pub events: Vec<RunEvent>,
    /// When to call the engine again with a `Tick` if nothing else happens first.
    pub wake_at: Option<Timestamp>,
    /// The same without the regular looks at running tasks: for a runner that learns of task
    /// changes by other means (the controller's shared poller) and only needs the timers.
    pub timer_at: Option<Timestamp>,
}
