//! The last log lines of a finished attempt's containers: which containers are read, how much of
//! their output a run's record keeps, and how the lines read in a message.
//!
//! The lines come from CloudWatch Logs (the adapter reads them, as the task definition's `awslogs`
//! configuration names the stream); here is only what is pure: choosing, bounding, rendering. A
//! log read is a diagnosis, never part of the verdict: whatever it answers, the attempt's result
//! is the same, and the verdict waits for it at most [`LOGS_WAIT`].

use std::time::Duration;

use crate::judge::{counted_containers, failing_containers, judge_task, short_task_id};
use crate::log_record::LogTail;
use crate::plan::PlannedStep;
use crate::status::{Attempt, FailureClass};

/// How long a finished attempt's verdict waits for its log read (a resumed run asks again).
pub const LOGS_WAIT: Duration = Duration::from_secs(30);
/// At most this many bytes of log lines per attempt in the run's record (`.status` is stored in
/// etcd, whose objects are limited to about 1.5 MiB).
pub const STATUS_BUDGET_BYTES: usize = 4096;
/// A longer line is cut to this many bytes, and marked.
pub const LINE_MAX_BYTES: usize = 400;
/// At most this many containers' logs are read per attempt.
pub const MAX_STREAMS: usize = 10;
/// Earlier attempts of a step keep their notes but lose their lines beyond this many attempts.
pub const ATTEMPTS_WITH_LINES: usize = 3;
/// Marks a line that was cut.
pub const CUT_MARK: &str = " …[cut]";

/// One container whose lines to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogTarget {
    pub task_arn: String,
    pub task_definition_arn: Option<String>,
    pub container: String,
}

/// The containers whose logs explain how `attempt` ended: for a failed attempt, each counted
/// container that failed in a task that failed on its own (a task sequencer stopped because a
/// sibling failed says nothing new), or every counted container when the tasks were stopped for
/// running too long or by ECS; for a succeeded one, every counted container. Nothing for a
/// cancelled run (the user knows why) or a launch that started no task. At most [`MAX_STREAMS`].
pub fn log_targets(step: &PlannedStep, attempt: &Attempt, succeeded: bool) -> Vec<LogTarget> {
    let policy = step.definition.success_policy();
    let essential = attempt.essential_containers.as_deref();
    let class = attempt.failure.as_ref().map(|f| f.class);
    if class == Some(FailureClass::Cancelled) {
        return Vec::new();
    }
    let mut targets = Vec::new();
    for task in attempt.tasks.iter().filter(|t| !t.missing) {
        let containers = if succeeded || class == Some(FailureClass::Timeout) {
            counted_containers(task, &policy, essential)
        } else if task.stop_request.is_some() {
            Vec::new()
        } else {
            match judge_task(task, &policy, essential) {
                Some(f) if f.class == FailureClass::ExitCode => {
                    failing_containers(task, &policy, essential)
                }
                Some(_) => counted_containers(task, &policy, essential),
                None => Vec::new(),
            }
        };
        for container in containers {
            // A named container absent from the task has no stream either.
            if task.containers.iter().any(|c| c.name == container) {
                targets.push(LogTarget {
                    task_arn: task.task_arn.clone(),
                    task_definition_arn: task.task_definition_arn.clone(),
                    container,
                });
            }
        }
    }
    targets.truncate(MAX_STREAMS);
    targets
}

/// `tails` cut to fit the record: long lines cut and marked, then the oldest lines dropped (and
/// counted) until all of them together take at most `budget` bytes, shared evenly.
pub fn bound_tails(mut tails: Vec<LogTail>, budget: usize) -> Vec<LogTail> {
    for tail in &mut tails {
        for line in &mut tail.lines {
            cut_line(line, LINE_MAX_BYTES);
        }
    }
    let share = budget / tails.len().max(1);
    for tail in &mut tails {
        let mut used = 0;
        let keep = tail
            .lines
            .iter()
            .rev()
            .take_while(|l| {
                used += l.len() + 1;
                used <= share
            })
            .count();
        let dropped = tail.lines.len() - keep;
        tail.lines.drain(..dropped);
        tail.omitted_lines = tail.omitted_lines.saturating_add(dropped as u32);
    }
    tails
}

/// Cuts `line` to at most `max` bytes (on a character boundary), marking the cut.
pub fn cut_line(line: &mut String, max: usize) {
    if line.len() <= max {
        return;
    }
    let mut end = max.saturating_sub(CUT_MARK.len());
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.truncate(end);
    line.push_str(CUT_MARK);
}

/// The line that most likely says what went wrong: the last one that reads like an error
/// (a Python traceback's last line, a Java exception, a Go panic, `ERROR ...`), else the last
/// line; cut to `max` bytes.
pub fn headline(tails: &[LogTail], max: usize) -> Option<String> {
    const WORDS: &[&str] = &[
        "error",
        "exception",
        "fatal",
        "panic",
        "traceback",
        "failed",
        "killed",
        "denied",
    ];
    let lines: Vec<&str> = tails
        .iter()
        .flat_map(|t| t.lines.iter())
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    let erroneous = |l: &&&str| {
        let lower = l.to_ascii_lowercase();
        WORDS.iter().any(|w| lower.contains(w)) && !lower.starts_with("traceback (most recent")
    };
    let found = lines
        .iter()
        .rev()
        .find(erroneous)
        .or(lines.last())
        .map(|l| (*l).to_owned())?;
    let mut found = found;
    cut_line(&mut found, max);
    Some(found)
}

/// The tails as lines for people: a heading per container, then its lines, or why there are none.
pub fn render(tails: &[LogTail]) -> Vec<String> {
    let mut out = Vec::new();
    for tail in tails {
        let who = format!("container {} (task {})", tail.container, tail.task_id);
        if tail.lines.is_empty() {
            let why = tail.note.as_deref().unwrap_or("no lines");
            out.push(format!("no logs of {who}: {why}"));
            continue;
        }
        let earlier = if tail.omitted_lines > 0 {
            format!(", {} earlier left out", tail.omitted_lines)
        } else {
            String::new()
        };
        out.push(format!(
            "last {} log line(s) of {who}{earlier}:",
            tail.lines.len()
        ));
        out.extend(tail.lines.iter().map(|l| format!("  | {l}")));
    }
    out
}

/// `head` and then as many of `block`'s lines as fit in `max` bytes, keeping a heading line
/// (one not starting with `  |`) and the newest log lines first when something must go.
pub fn fit(head: &str, block: &[String], max: usize) -> String {
    let mut text = head.to_owned();
    let total: usize = block.iter().map(|l| l.len() + 1).sum();
    if text.len() + total <= max {
        for line in block {
            text.push('\n');
            text.push_str(line);
        }
        return truncate_bytes(text, max);
    }
    // Not everything fits: keep headings, then the newest lines of each container that fit.
    const MORE: &str = "\n  | …";
    let headings: usize = block
        .iter()
        .filter(|l| !l.starts_with("  |"))
        .map(|l| l.len() + 1 + MORE.len())
        .sum();
    let mut room = max.saturating_sub(text.len() + headings);
    let mut kept = vec![false; block.len()];
    for (i, line) in block.iter().enumerate().rev() {
        if line.starts_with("  |") {
            if line.len() < room {
                room -= line.len() + 1;
                kept[i] = true;
            } else {
                room = 0;
            }
        }
    }
    let mut previous_kept = true;
    for (i, line) in block.iter().enumerate() {
        if !line.starts_with("  |") || kept[i] {
            text.push('\n');
            text.push_str(line);
            previous_kept = true;
        } else if previous_kept {
            text.push_str(MORE);
            previous_kept = false;
        }
    }
    truncate_bytes(text, max)
}

fn truncate_bytes(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A short task id for the record.
pub fn task_id(arn: &str) -> String {
    short_task_id(arn).to_owned()
}

#[cfg(test)]
#[path = "log_tail_tests.rs"]
mod tests;
