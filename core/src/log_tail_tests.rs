use super::*;
use crate::run_task::RunTaskParameters;
use crate::status::{AttemptPhase, ContainerRecord, Failure, StopRequest, TaskRecord};
use crate::step::StepDefinition;
use jiff::Timestamp;

fn tail(container: &str, lines: &[&str]) -> LogTail {
    LogTail {
        task_id: "t1".into(),
        container: container.into(),
        lines: lines.iter().map(|l| (*l).to_owned()).collect(),
        ..Default::default()
    }
}

fn step() -> PlannedStep {
    PlannedStep {
        name: "s".into(),
        definition: StepDefinition::ecs_task(RunTaskParameters {
            task_definition: "td".into(),
            ..Default::default()
        }),
    }
}

fn task(arn: &str, exits: &[(&str, Option<i32>)], stop_code: &str) -> TaskRecord {
    TaskRecord {
        task_arn: arn.into(),
        task_definition_arn: Some("arn:td:1".into()),
        last_status: Some("STOPPED".into()),
        stop_code: Some(stop_code.into()),
        containers: exits
            .iter()
            .map(|(n, c)| ContainerRecord {
                name: (*n).into(),
                exit_code: *c,
                reason: None,
                last_status: Some("STOPPED".into()),
            })
            .collect(),
        ..Default::default()
    }
}

fn attempt(tasks: Vec<TaskRecord>, class: FailureClass) -> Attempt {
    Attempt {
        attempt: 1,
        client_token: "c".into(),
        started_by: "s".into(),
        cluster: None,
        phase: AttemptPhase::Stopping,
        created_at: Timestamp::UNIX_EPOCH,
        launched_at: None,
        last_launch_at: None,
        finished_at: None,
        tasks,
        launch_errors: 0,
        retry_launch_at: None,
        last_error: None,
        essential_containers: None,
        failure: Some(Failure {
            class,
            reason: "r".into(),
            message: "m".into(),
        }),
        logs: None,
    }
}

fn names(targets: &[LogTarget]) -> Vec<(String, String)> {
    targets
        .iter()
        .map(|t| (short_task_id(&t.task_arn).to_owned(), t.container.clone()))
        .collect()
}

#[test]
fn a_failed_attempt_reads_only_the_containers_that_failed_on_their_own() {
    let failed = task(
        "a/t1",
        &[("app", Some(1)), ("side", Some(0))],
        "EssentialContainerExited",
    );
    // A sibling sequencer stopped because t1 failed: its 143 says nothing new.
    let mut sibling = task("a/t2", &[("app", Some(143))], "UserInitiated");
    sibling.stop_request = Some(StopRequest {
        reason: "sequencer: another task of the step failed".into(),
        requested_at: Timestamp::UNIX_EPOCH,
        acknowledged: true,
    });
    let a = attempt(vec![failed, sibling], FailureClass::ExitCode);
    assert_eq!(
        names(&log_targets(&step(), &a, false)),
        vec![("t1".to_owned(), "app".to_owned())]
    );
}

#[test]
fn ecs_stops_and_timeouts_read_every_counted_container_and_cancels_read_none() {
    let spot = task(
        "a/t1",
        &[("app", Some(0)), ("side", None)],
        "SpotInterruption",
    );
    let a = attempt(vec![spot.clone()], FailureClass::Infrastructure);
    assert_eq!(log_targets(&step(), &a, false).len(), 2);
    let mut stopped = task("a/t1", &[("app", Some(143))], "UserInitiated");
    stopped.stop_request = Some(StopRequest {
        reason: "sequencer: step timeout exceeded".into(),
        requested_at: Timestamp::UNIX_EPOCH,
        acknowledged: true,
    });
    let a = attempt(vec![stopped.clone()], FailureClass::Timeout);
    assert_eq!(log_targets(&step(), &a, false).len(), 1);
    let a = attempt(vec![stopped], FailureClass::Cancelled);
    assert!(log_targets(&step(), &a, false).is_empty());
    let mut gone = spot;
    gone.missing = true;
    let a = attempt(vec![gone], FailureClass::OutcomeUnknown);
    assert!(log_targets(&step(), &a, false).is_empty());
}

#[test]
fn at_most_ten_streams_are_read() {
    let tasks: Vec<TaskRecord> = (0..10)
        .map(|i| {
            task(
                &format!("a/t{i}"),
                &[("a", Some(1)), ("b", Some(2))],
                "EssentialContainerExited",
            )
        })
        .collect();
    let a = attempt(tasks, FailureClass::ExitCode);
    assert_eq!(log_targets(&step(), &a, false).len(), MAX_STREAMS);
}

#[test]
fn the_record_keeps_the_newest_lines_within_its_budget() {
    let long = "x".repeat(3 * LINE_MAX_BYTES);
    let many: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let bounded = bound_tails(
        vec![tail("app", &many), tail("side", &[&long, "après"])],
        4096,
    );
    let bytes: usize = bounded
        .iter()
        .flat_map(|t| &t.lines)
        .map(|l| l.len() + 1)
        .sum();
    assert!(bytes <= 4096, "{bytes}");
    let app = &bounded[0];
    assert_eq!(app.lines.last().map(String::as_str), Some("line 499"));
    assert_eq!(app.omitted_lines as usize + app.lines.len(), 500);
    let side = &bounded[1];
    assert!(side.lines[0].ends_with(CUT_MARK) && side.lines[0].len() <= LINE_MAX_BYTES);
    assert_eq!(side.lines[1], "après");
}

#[test]
fn cutting_respects_characters() {
    let mut line = "é".repeat(300);
    cut_line(&mut line, 101);
    assert!(line.len() <= 101 && line.ends_with(CUT_MARK));
}

#[test]
fn the_headline_is_the_last_line_that_reads_like_an_error() {
    let python = tail(
        "app",
        &[
            "loading rows",
            "Traceback (most recent call last):",
            "  File \"etl.py\", line 3, in <module>",
            "ValueError: bad row 17",
            "",
        ],
    );
    assert_eq!(
        headline(&[python], 200).as_deref(),
        Some("ValueError: bad row 17")
    );
    let plain = tail("app", &["starting", "done with 3 rows"]);
    assert_eq!(headline(&[plain], 200).as_deref(), Some("done with 3 rows"));
    assert_eq!(headline(&[tail("app", &[])], 200), None);
}

#[test]
fn an_event_note_keeps_the_newest_lines_that_fit() {
    let many: Vec<String> = (0..200)
        .map(|i| format!("line {i:03} {}", "y".repeat(20)))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let block = render(&[tail("app", &many)]);
    let note = fit("step 1 (s): FAILED", &block, 1024);
    assert!(note.len() <= 1024, "{}", note.len());
    assert!(
        note.starts_with("step 1 (s): FAILED\nlast 200 log line(s) of container app (task t1):")
    );
    assert!(note.contains("  | …\n"), "{note}");
    assert!(
        note.ends_with(&format!("line 199 {}", "y".repeat(20))),
        "{note}"
    );
    // All of it, when it fits.
    let short = render(&[
        tail("app", &["a", "b"]),
        LogTail {
            note: Some("no log stream".into()),
            ..tail("side", &[])
        },
    ]);
    assert_eq!(
        fit("head", &short, 1024),
        "head\nlast 2 log line(s) of container app (task t1):\n  | a\n  | b\nno logs of container side (task t1): no log stream"
    );
}
