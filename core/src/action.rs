//! What the engine asks for (actions), and the decision that carries them with the new status.
//! What it reports is in `event.rs`.
//! Rule for every runner: persist the decision's status first, then carry out its actions.

use jiff::Timestamp;

use crate::event::RunEvent;
use crate::log_tail::LogTarget;
use crate::run_task::{LaunchIdentity, RunTaskParameters};
use crate::status::RunStatus;

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
    /// The last `tail_lines` log lines of each target container, from CloudWatch Logs. Answered
    /// with `LogsFetched`, always (a read that fails says why in its tail); never retried.
    FetchLogs {
        step: usize,
        attempt: u32,
        tail_lines: u32,
        targets: Vec<LogTarget>,
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
