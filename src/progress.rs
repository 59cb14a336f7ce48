//! What the CLI prints while a run goes on: lines a person can follow, or one JSON object per
//! event for machines, and a closing summary table.

use std::io::Write;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;

use crate::action::RunEvent;
use crate::judge::short_task_id;
use crate::plan::Plan;
use crate::status::{Attempt, RunPhase, RunStatus, StepPhase, StepStatus};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

pub struct Reporter<W: Write> {
    format: OutputFormat,
    out: W,
}

impl<W: Write> Reporter<W> {
    pub fn new(format: OutputFormat, out: W) -> Self {
        Reporter { format, out }
    }

    /// A free-form note (run start, resume, warnings).
    pub fn note(&mut self, kind: &str, text: &str) {
        let now = Timestamp::now();
        let _ = match self.format {
            OutputFormat::Human => writeln!(self.out, "{} {text}", clock(now)),
            OutputFormat::Json => writeln!(
                self.out,
                "{}",
                json!({"time": now.to_string(), "event": kind, "message": text})
            ),
        };
        let _ = self.out.flush();
    }

    pub fn events(&mut self, plan: &Plan, status: &RunStatus, events: &[RunEvent]) {
        let now = Timestamp::now();
        for event in events {
            let _ = match self.format {
                OutputFormat::Human => match human_line(plan, status, event) {
                    Some(line) => writeln!(self.out, "{} {line}", clock(now)),
                    None => Ok(()),
                },
                OutputFormat::Json => writeln!(self.out, "{}", event_json(status, event, now)),
            };
        }
        let _ = self.out.flush();
    }

    pub fn summary(&mut self, status: &RunStatus) {
        let _ = match self.format {
            OutputFormat::Human => write!(self.out, "{}", summary_table(status)),
            OutputFormat::Json => writeln!(
                self.out,
                "{}",
                json!({"time": Timestamp::now().to_string(), "event": "summary", "status": status})
            ),
        };
        let _ = self.out.flush();
    }
}

fn clock(t: Timestamp) -> String {
    t.strftime("%H:%M:%S").to_string()
}

fn label(status: &RunStatus, step: usize) -> String {
    let name = status
        .steps
        .get(step)
        .map(|s| s.name.as_str())
        .unwrap_or("?");
    format!("[{}/{} {name}]", step + 1, status.total_steps)
}

fn human_line(plan: &Plan, status: &RunStatus, event: &RunEvent) -> Option<String> {
    let line = match event {
        RunEvent::RunStarted | RunEvent::RunFinished { .. } => return None,
        RunEvent::StepSkipped { step } => {
            format!("{} skipped (active: false)", label(status, *step))
        }
        RunEvent::StepStarted { step, attempt } => {
            let p = &plan.steps.get(*step)?.definition.parameters;
            let cluster = p.cluster.as_deref().unwrap_or("default");
            let count = p.count.unwrap_or(1);
            let what = if *attempt == 1 {
                "starting".to_owned()
            } else {
                format!("attempt {attempt} starting")
            };
            format!(
                "{} {what}: task definition {} on cluster {cluster}, {count} task(s)",
                label(status, *step),
                p.task_definition
            )
        }
        RunEvent::TasksLaunched {
            step, task_arns, ..
        } => format!("{} launched {}", label(status, *step), task_arns.join(", ")),
        RunEvent::TasksFound {
            step, task_arns, ..
        } => {
            format!(
                "{} resumed: found the task(s) launched before the restart: {}",
                label(status, *step),
                task_arns.join(", ")
            )
        }
        RunEvent::LaunchReissued { step, attempt } => {
            let a = attempt_of(status, *step, *attempt)?;
            format!(
                "{} resumed: no task with startedBy {} exists; re-issuing RunTask with the same clientToken",
                label(status, *step),
                a.started_by
            )
        }
        RunEvent::LaunchDeferred {
            step,
            error,
            retry_at,
            ..
        } => {
            format!(
                "{} RunTask did not get through ({error}); trying again at {}",
                label(status, *step),
                clock(*retry_at)
            )
        }
        RunEvent::TaskStatusChanged {
            step,
            task_arn,
            last_status,
            ..
        } => {
            format!(
                "{} task {} is {last_status}",
                label(status, *step),
                short_task_id(task_arn)
            )
        }
        RunEvent::StopRequested {
            step,
            task_arn,
            reason,
            ..
        } => {
            format!(
                "{} stopping task {} ({reason})",
                label(status, *step),
                short_task_id(task_arn)
            )
        }
        RunEvent::PollFailed { error } => {
            format!("warning: DescribeTasks failed ({error}); will look again")
        }
        RunEvent::AttemptFailed {
            step,
            attempt,
            failure,
        } => {
            let a = attempt_of(status, *step, *attempt);
            let containers = a.map(container_summary).unwrap_or_default();
            format!(
                "{} attempt {attempt} failed [{}]: {}{containers}",
                label(status, *step),
                failure.reason,
                failure.message
            )
        }
        RunEvent::RetryScheduled {
            step,
            next_attempt,
            at,
        } => {
            format!(
                "{} will retry as attempt {next_attempt} at {}",
                label(status, *step),
                clock(*at)
            )
        }
        RunEvent::StepSucceeded { step, attempt } => {
            let s = status.steps.get(*step)?;
            let a = attempt_of(status, *step, *attempt)?;
            format!(
                "{} succeeded in {}{}",
                label(status, *step),
                step_duration(s),
                container_summary(a)
            )
        }
        RunEvent::StepFailed {
            step,
            failure,
            ignored,
        } => {
            let note = if *ignored {
                " (ignore_failure: the run goes on)"
            } else {
                ""
            };
            format!(
                "{} FAILED [{}]{note}: {}",
                label(status, *step),
                failure.reason,
                failure.message
            )
        }
    };
    Some(line)
}

fn attempt_of(status: &RunStatus, step: usize, attempt: u32) -> Option<&Attempt> {
    status
        .steps
        .get(step)?
        .attempts
        .iter()
        .find(|a| a.attempt == attempt)
}

/// "; exit codes: task abcd app=0 sidecar=137 (reason)"
fn container_summary(attempt: &Attempt) -> String {
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

fn step_duration(s: &StepStatus) -> String {
    match (s.start_time, s.completion_time) {
        (Some(a), Some(b)) => format_duration(b.duration_since(a).unsigned_abs()),
        _ => "-".into(),
    }
}

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

fn event_json(status: &RunStatus, event: &RunEvent, now: Timestamp) -> serde_json::Value {
    let step_fields = |step: &usize| json!({"step": step + 1, "name": status.steps.get(*step).map(|s| s.name.clone())});
    let (kind, mut fields) = match event {
        RunEvent::RunStarted => (
            "runStarted",
            json!({"runId": status.run_id, "totalSteps": status.total_steps}),
        ),
        RunEvent::RunFinished { phase } => (
            "runFinished",
            json!({"phase": phase, "message": status.message}),
        ),
        RunEvent::StepSkipped { step } => ("stepSkipped", step_fields(step)),
        RunEvent::StepStarted { step, attempt } => (
            "stepStarted",
            merge(step_fields(step), json!({"attempt": attempt})),
        ),
        RunEvent::TasksLaunched {
            step,
            attempt,
            task_arns,
        } => (
            "tasksLaunched",
            merge(
                step_fields(step),
                json!({"attempt": attempt, "taskArns": task_arns}),
            ),
        ),
        RunEvent::TasksFound {
            step,
            attempt,
            task_arns,
        } => (
            "tasksFound",
            merge(
                step_fields(step),
                json!({"attempt": attempt, "taskArns": task_arns}),
            ),
        ),
        RunEvent::LaunchReissued { step, attempt } => (
            "launchReissued",
            merge(step_fields(step), json!({"attempt": attempt})),
        ),
        RunEvent::LaunchDeferred {
            step,
            attempt,
            error,
            retry_at,
        } => (
            "launchDeferred",
            merge(
                step_fields(step),
                json!({"attempt": attempt, "error": error, "retryAt": retry_at.to_string()}),
            ),
        ),
        RunEvent::TaskStatusChanged {
            step,
            attempt,
            task_arn,
            last_status,
        } => (
            "taskStatusChanged",
            merge(
                step_fields(step),
                json!({"attempt": attempt, "taskArn": task_arn, "lastStatus": last_status}),
            ),
        ),
        RunEvent::StopRequested {
            step,
            attempt,
            task_arn,
            reason,
        } => (
            "stopRequested",
            merge(
                step_fields(step),
                json!({"attempt": attempt, "taskArn": task_arn, "reason": reason}),
            ),
        ),
        RunEvent::PollFailed { error } => ("pollFailed", json!({"error": error})),
        RunEvent::AttemptFailed {
            step,
            attempt,
            failure,
        } => {
            let tasks = attempt_of(status, *step, *attempt)
                .map(|a| a.tasks.clone())
                .unwrap_or_default();
            (
                "attemptFailed",
                merge(
                    step_fields(step),
                    json!({"attempt": attempt, "failure": failure, "tasks": tasks}),
                ),
            )
        }
        RunEvent::RetryScheduled {
            step,
            next_attempt,
            at,
        } => (
            "retryScheduled",
            merge(
                step_fields(step),
                json!({"nextAttempt": next_attempt, "at": at.to_string()}),
            ),
        ),
        RunEvent::StepSucceeded { step, attempt } => {
            let tasks = attempt_of(status, *step, *attempt)
                .map(|a| a.tasks.clone())
                .unwrap_or_default();
            (
                "stepSucceeded",
                merge(
                    step_fields(step),
                    json!({"attempt": attempt, "tasks": tasks}),
                ),
            )
        }
        RunEvent::StepFailed {
            step,
            failure,
            ignored,
        } => (
            "stepFailed",
            merge(
                step_fields(step),
                json!({"failure": failure, "ignored": ignored}),
            ),
        ),
    };
    if let Some(obj) = fields.as_object_mut() {
        obj.insert("time".into(), now.to_string().into());
        obj.insert("event".into(), kind.into());
    }
    fields
}

fn merge(mut a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object()) {
        a.extend(b.clone());
    }
    a
}

/// The closing table: one row per step, then the run's result.
pub fn summary_table(status: &RunStatus) -> String {
    let rows: Vec<[String; 6]> = status
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let result = match (s.phase, s.failure_ignored) {
                (StepPhase::Failed, true) => "Failed (ignored)".to_owned(),
                (StepPhase::Pending, _) if status.phase.is_terminal() => "Not run".to_owned(),
                (phase, _) => format!("{phase:?}"),
            };
            let detail = match (&s.failure, s.attempts.last()) {
                (Some(f), _) => format!("{}: {}", f.reason, f.message),
                (None, Some(a)) => container_summary(a)
                    .trim_start_matches("; exit codes: ")
                    .to_owned(),
                (None, None) => String::new(),
            };
            [
                (i + 1).to_string(),
                s.name.clone(),
                result,
                s.attempts.len().to_string(),
                step_duration(s),
                detail,
            ]
        })
        .collect();
    let headers = ["#", "STEP", "RESULT", "ATTEMPTS", "DURATION", "DETAIL"];
    let width = |c: usize| {
        rows.iter()
            .map(|r| r[c].chars().count())
            .chain([headers[c].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..5).map(width).collect();
    let line = |cells: [&str; 6]| {
        let mut l = String::new();
        for (c, cell) in cells.iter().enumerate().take(5) {
            l.push_str(&format!("{cell:<w$}  ", w = widths[c]));
        }
        l.push_str(cells[5]);
        l.trim_end().to_owned() + "\n"
    };
    let mut out = String::from("\n");
    out.push_str(&line(headers));
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
    }
    let total = match (status.start_time, status.completion_time) {
        (Some(a), Some(b)) => format!(
            " in {}",
            format_duration(b.duration_since(a).unsigned_abs())
        ),
        _ => String::new(),
    };
    let verdict = match status.phase {
        RunPhase::Succeeded => "SUCCEEDED",
        RunPhase::Failed if status.cancel.is_some() => "CANCELLED",
        RunPhase::Failed => "FAILED",
        RunPhase::Running => "RUNNING",
        RunPhase::Pending => "PENDING",
    };
    out.push_str(&format!(
        "\nrun {} {verdict}{total}: {}\n",
        status.run_id,
        status.message.as_deref().unwrap_or("")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Failure, FailureClass, StepStatus};

    fn step(name: &str, phase: StepPhase) -> StepStatus {
        StepStatus {
            name: name.into(),
            phase,
            attempts: vec![],
            next_attempt_at: None,
            start_time: None,
            completion_time: None,
            failure: None,
            failure_ignored: false,
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_millis(3_040)), "3.0s");
        assert_eq!(format_duration(Duration::from_secs(67)), "1m07s");
        assert_eq!(format_duration(Duration::from_secs(3_725)), "1h02m05s");
    }

    #[test]
    fn the_summary_names_every_step_and_the_verdict() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let mut one = step("extract", StepPhase::Failed);
        one.failure_ignored = true;
        one.failure = Some(Failure {
            class: FailureClass::ExitCode,
            reason: "EssentialContainerExited".into(),
            message: "task t: container app exited with 3".into(),
        });
        one.start_time = Some(t0);
        one.completion_time = Some(t0 + Duration::from_secs(65));
        let mut two = step("load", StepPhase::Failed);
        two.failure = Some(Failure {
            class: FailureClass::Launch,
            reason: "RESOURCE:MEMORY".into(),
            message: "no room".into(),
        });
        let status = RunStatus {
            run_id: "r1".into(),
            plan_digest: String::new(),
            phase: RunPhase::Failed,
            start_time: Some(t0),
            completion_time: Some(t0 + Duration::from_secs(70)),
            current_step: None,
            total_steps: 3,
            steps: vec![one, two, step("report", StepPhase::Pending)],
            cancel: None,
            message: Some("step load failed: no room".into()),
        };
        let table = summary_table(&status);
        let lines: Vec<&str> = table.lines().filter(|l| !l.is_empty()).collect();
        assert!(
            lines[0].starts_with("#  STEP     RESULT            ATTEMPTS  DURATION  DETAIL"),
            "{table}"
        );
        assert!(lines[1].contains("extract  Failed (ignored)  0         1m05s     EssentialContainerExited: task t: container app exited with 3"), "{table}");
        assert!(
            lines[2].contains("load     Failed") && lines[2].contains("RESOURCE:MEMORY: no room"),
            "{table}"
        );
        assert!(lines[3].contains("report   Not run"), "{table}");
        assert_eq!(
            lines[4],
            "run r1 FAILED in 1m10s: step load failed: no room"
        );
    }
}
