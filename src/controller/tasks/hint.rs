//! What a pushed ECS task event says about a task, and what became of it.

/// What a message says about a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskChange {
    pub task_arn: String,
    pub last_status: Option<String>,
    /// `detail.version`: higher is later; a repeat has the same.
    pub version: Option<i64>,
}

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// A watched task: it is described at once.
    Described,
    /// Already seen (a repeat, an older version, or a task already known to have stopped).
    Duplicate,
    /// No Sequence of this controller watches the task (another controller's, or one whose run
    /// has moved on).
    Unwatched,
    /// Not an ECS Task State Change event.
    Malformed,
}

impl Hint {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Hint::Described => "described",
            Hint::Duplicate => "duplicate",
            Hint::Unwatched => "unwatched",
            Hint::Malformed => "malformed",
        }
    }
}
