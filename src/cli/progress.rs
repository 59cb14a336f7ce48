//! What the CLI prints while a run goes on: lines a person can follow, or one JSON object per
//! event for machines, and a closing summary table.

use jiff::Timestamp;
use serde_json::json;
use std::io::Write;

use sequencer_core::event::{RunEvent, clock, container_summary, format_duration, step_duration};
use sequencer_core::plan::Plan;
use sequencer_core::status::{RunPhase, RunStatus, StepPhase};

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

    /// One line (or JSON object) per event, each rendered from the event's description.
    pub fn events(&mut self, plan: &Plan, status: &RunStatus, events: &[RunEvent]) {
        let now = Timestamp::now();
        for event in events {
            let description = event.describe(plan, status);
            let _ = match self.format {
                OutputFormat::Human if description.shown => {
                    let text = &description.text;
                    let line = match description.label(status.total_steps) {
                        Some(label) => writeln!(self.out, "{} {label} {text}", clock(now)),
                        None => writeln!(self.out, "{} {text}", clock(now)),
                    };
                    // The attempt's last log lines, indented under the line they explain.
                    description
                        .log_block
                        .iter()
                        .try_for_each(|l| writeln!(self.out, "           {l}"))
                        .and(line)
                }
                OutputFormat::Human => Ok(()),
                OutputFormat::Json => writeln!(self.out, "{}", description.json(now)),
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

impl<W: Write> crate::drive::EventSink for Reporter<W> {
    fn events(&mut self, plan: &Plan, status: &RunStatus, events: &[RunEvent]) {
        Reporter::events(self, plan, status, events);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use sequencer_core::status::{Failure, FailureClass, StepStatus};

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
