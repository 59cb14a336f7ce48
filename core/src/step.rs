//! One step of a batch: what to run (an ECS task) and the options that say how to judge and retry it.
//!
//! The seed's fixture carried `ignore_failure` and `active` without implementing them; here they mean
//! what they say. New options are spelled in camelCase; files may write them in snake_case too.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::run_task::RunTaskParameters;

/// A step as a batch file writes it under its name (`- name: {type: ecs_task, parameters: ...}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepDefinition {
    /// The kind of step. Only `ecs_task` exists.
    #[serde(rename = "type")]
    pub step_type: StepType,
    /// The ECS RunTask request.
    pub parameters: RunTaskParameters,
    /// When true, a failure of this step is recorded and the run goes on to the next step.
    #[serde(default)]
    pub ignore_failure: bool,
    /// When false, the step is skipped (recorded as Skipped, nothing launched).
    #[serde(default = "default_true")]
    pub active: bool,
    /// Fail an attempt whose tasks run longer than this (counted from RunTask); its tasks are stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout_seconds: Option<u64>,
    /// Start a new attempt after some kinds of failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Which containers decide the result, and which exit codes mean success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<SuccessPolicy>,
    /// How many of a failed container's last CloudWatch log lines to show. Default: 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogsPolicy>,
}

/// Which log lines a finished attempt's record carries (read from CloudWatch Logs, as the task
/// definition's `awslogs` configuration names the stream).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogsPolicy {
    /// How many of the last lines to read per container (0 to 500; 0 turns log reading off).
    #[serde(default = "default_tail_lines")]
    #[schemars(range(max = 500))]
    pub tail_lines: u32,
    /// Also read them when the attempt succeeded (by default only failed attempts are read).
    #[serde(default)]
    pub always: bool,
}

/// The number of log lines read when a step says nothing.
pub const DEFAULT_TAIL_LINES: u32 = 20;

fn default_tail_lines() -> u32 {
    DEFAULT_TAIL_LINES
}

impl Default for LogsPolicy {
    fn default() -> Self {
        LogsPolicy {
            tail_lines: DEFAULT_TAIL_LINES,
            always: false,
        }
    }
}

fn default_true() -> bool {
    true
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StepType {
    #[serde(rename = "ecs_task")]
    EcsTask,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// How many further attempts after the first (0 to 100).
    #[schemars(range(max = 100))]
    pub limit: u32,
    /// Which kinds of failure start a new attempt. Default: launch and infrastructure failures.
    /// (Not `on`: YAML 1.1 parsers, kubectl's among them, read a bare `on:` key as `true`.)
    #[serde(default = "default_retry_on")]
    pub when: Vec<RetryOn>,
    #[serde(default)]
    pub backoff: Backoff,
}

fn default_retry_on() -> Vec<RetryOn> {
    vec![RetryOn::Launch, RetryOn::Infrastructure]
}

/// A failure class a retry policy can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RetryOn {
    /// RunTask failed or returned `failures[]` (capacity, placement, bad parameters).
    Launch,
    /// The task was stopped by ECS (TaskFailedToStart, SpotInterruption, TerminationNotice) or vanished.
    Infrastructure,
    /// A counted container exited with a code that is not a success code, or with none.
    ExitCode,
    /// The attempt ran past `timeoutSeconds`.
    Timeout,
    /// Whether the attempt ran is not known: ECS forgot its task (MISSING), or its launch could not
    /// be confirmed within the clientToken window. A retry may run the step a second time while
    /// the first still runs, so this is never a default: name it only for steps that are safe to
    /// run twice.
    OutcomeUnknown,
}

/// Exponential backoff between attempts: initial × factor^(n-1), capped, with jitter (50–100 %).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backoff {
    /// The first wait, in seconds (1 to 86400, a day).
    #[serde(default = "default_initial")]
    #[schemars(range(min = 1, max = 86400))]
    pub initial_seconds: u64,
    /// The longest wait, in seconds (1 to 86400, a day).
    #[serde(default = "default_max")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_seconds: u64,
    #[serde(default = "default_factor")]
    #[schemars(range(min = 1, max = 10))]
    pub factor: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_seconds: default_initial(),
            max_seconds: default_max(),
            factor: default_factor(),
        }
    }
}

fn default_initial() -> u64 {
    10
}
fn default_max() -> u64 {
    300
}
fn default_factor() -> u32 {
    2
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuccessPolicy {
    /// `all` (every container: the seed's rule and the default), `essential` (containers marked
    /// essential in the task definition), or a list of container names.
    #[serde(default)]
    pub containers: ContainerSelection,
    /// Exit codes that count as success. Default: [0].
    #[serde(default = "default_exit_codes")]
    #[schemars(length(min = 1))]
    pub exit_codes: Vec<i32>,
}

pub fn default_exit_codes() -> Vec<i32> {
    vec![0]
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ContainerSelection {
    Policy(ContainerPolicy),
    /// At least one name (checked by the batch-file reader).
    Named(Vec<String>),
}

impl Default for ContainerSelection {
    fn default() -> Self {
        ContainerSelection::Policy(ContainerPolicy::All)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ContainerPolicy {
    All,
    Essential,
}

impl SuccessPolicy {
    /// The seed's rule: every container must exit 0.
    pub fn default_policy() -> Self {
        SuccessPolicy {
            containers: ContainerSelection::default(),
            exit_codes: default_exit_codes(),
        }
    }
}

impl StepDefinition {
    /// An `ecs_task` step with every option at its default.
    pub fn ecs_task(parameters: RunTaskParameters) -> Self {
        StepDefinition {
            step_type: StepType::EcsTask,
            parameters,
            ignore_failure: false,
            active: true,
            timeout_seconds: None,
            retry: None,
            success: None,
            logs: None,
        }
    }

    pub fn logs_policy(&self) -> LogsPolicy {
        self.logs.clone().unwrap_or_default()
    }

    pub fn success_policy(&self) -> SuccessPolicy {
        self.success
            .clone()
            .unwrap_or_else(SuccessPolicy::default_policy)
    }

    pub fn needs_essential_containers(&self) -> bool {
        matches!(
            self.success.as_ref().map(|s| &s.containers),
            Some(ContainerSelection::Policy(ContainerPolicy::Essential))
        )
    }
}
