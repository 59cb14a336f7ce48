//! What a run's record keeps of a finished attempt's log read: the last lines of each container
//! read, or why there are none. Choosing, bounding and rendering them is `log_tail`'s.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What a finished attempt's log read found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptLogs {
    /// When the read was asked for (recorded before it is carried out).
    pub requested_at: Timestamp,
    /// The read answered, or was given up after [`LOGS_WAIT`](crate::log_tail::LOGS_WAIT): the verdict no longer waits.
    #[serde(default)]
    pub done: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tails: Vec<LogTail>,
    /// Why there is nothing at all (the read was given up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The last lines of one container of one task, or why there are none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogTail {
    pub task_id: String,
    pub container: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_stream: Option<String>,
    /// Oldest first; the last is the container's last line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    /// Older lines read but left out to keep the record small.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_lines: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<LogsUnavailable>,
    /// Why there are no lines, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why a container's lines could not be shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogsUnavailable {
    /// ECS did not report the task's definition, or the container is not in it.
    NoTaskDefinition,
    /// The container definition has no `logConfiguration`.
    NoLogConfiguration,
    /// Another log driver (FireLens, splunk, ...): sequencer reads only `awslogs`.
    UnsupportedDriver,
    /// `awslogs` without `awslogs-stream-prefix`: the stream is named after the Docker container id.
    NoStreamPrefix,
    /// The stream does not exist: the container never started, or wrote nothing.
    NoStream,
    /// The stream exists but holds no line.
    NoLines,
    /// The identity may not read the log group (or describe the task definition).
    AccessDenied,
    /// Any other error of the read, or no answer in time.
    ReadFailed,
}
