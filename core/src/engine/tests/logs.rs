//! The log read of a finished attempt: asked for in the decision that sees the tasks stopped,
//! waited for (never longer than `LOGS_WAIT`), asked again after a crash, and never part of the
//! verdict.

use super::fake_ecs::*;
use super::simulation::*;
use super::*;
use crate::log_record::LogTail;
use crate::log_tail::LOGS_WAIT;
use crate::step::LogsPolicy;

/// Advances `plan` from `status`, carrying out every action but FetchLogs, until the engine asks
/// for a log read (returned with the status that recorded it) or the run ends.
fn until_log_read(
    plan: &Plan,
    mut status: RunStatus,
    ecs: &mut FakeEcs,
    now: &mut Timestamp,
) -> (RunStatus, Option<Action>) {
    let mut observations = vec![Observation::Tick];
    for _ in 0..200 {
        let d = advance(plan, &status, &observations, *now);
        status = d.status;
        if let Some(read) = d
            .actions
            .iter()
            .find(|a| matches!(a, Action::FetchLogs { .. }))
        {
            return (status, Some(read.clone()));
        }
        if status.is_finished() {
            return (status, None);
        }
        observations = d.actions.iter().map(|a| ecs.execute(a)).collect();
        if observations.is_empty() {
            *now += Duration::from_secs(5);
            ecs.tick();
            observations.push(Observation::Tick);
        }
    }
    panic!("no log read and no end: {status:#?}");
}

fn failing_plan() -> (Plan, FakeEcs) {
    let plan = plan_of(vec![step("a"), step("b")]);
    let mut ecs = FakeEcs::default();
    ecs.script.insert((0, 1), (Outcome::Exit(3), 1));
    (plan, ecs)
}

#[test]
fn the_verdict_waits_for_the_log_read_and_the_failure_carries_its_lines() {
    let (plan, mut ecs) = failing_plan();
    let mut now = t0();
    let status = RunStatus::new("run-1".into(), &plan);
    let (status, read) = until_log_read(&plan, status, &mut ecs, &mut now);
    let Some(Action::FetchLogs {
        step: 0,
        attempt: 1,
        tail_lines: 20,
        ref targets,
    }) = read
    else {
        panic!("expected a read of step 1's logs: {read:?}");
    };
    assert_eq!(targets.len(), 1);
    // Recorded before it is carried out; the step waits for it.
    let pending = status.steps[0].attempts[0].logs.as_ref().expect("recorded");
    assert!(!pending.done);
    assert_eq!(status.steps[0].phase, StepPhase::Running);
    let answer = ecs.execute(read.as_ref().expect("read"));
    let d = advance(&plan, &status, &[answer], now);
    assert_eq!(d.status.phase, RunPhase::Failed);
    let logs = d.status.steps[0].attempts[0].logs.as_ref().expect("kept");
    assert!(logs.done);
    assert_eq!(
        logs.tails[0].lines.last().map(String::as_str),
        Some("app failed in t1")
    );
    let message = d.status.message.clone().unwrap_or_default();
    assert!(
        message.ends_with("; log: app failed in t1"),
        "the run's message quotes the telling line: {message}"
    );
    let failed = d
        .events
        .iter()
        .find(|e| matches!(e, RunEvent::StepFailed { .. }))
        .expect("StepFailed")
        .describe(&plan, &d.status);
    assert_eq!(
        failed.log_block,
        vec![
            "last 2 log line(s) of container app (task t1):",
            "  | starting",
            "  | app failed in t1"
        ]
    );
    assert!(failed.event_note(1024).ends_with("  | app failed in t1"));
    assert_eq!(failed.fields["logTail"]["tails"][0]["container"], "app");
}

#[test]
fn a_read_lost_in_a_crash_is_asked_again_and_given_up_after_its_wait() {
    let (plan, mut ecs) = failing_plan();
    let mut now = t0();
    let status = RunStatus::new("run-1".into(), &plan);
    let (stored, read) = until_log_read(&plan, status, &mut ecs, &mut now);
    assert!(read.is_some());
    // The runner dies before the answer; a restarted one asks again.
    let d = advance(
        &plan,
        &stored,
        &[Observation::Tick],
        now + Duration::from_secs(1),
    );
    assert!(
        matches!(
            d.actions.as_slice(),
            [Action::FetchLogs {
                step: 0,
                attempt: 1,
                ..
            }]
        ),
        "{:?}",
        d.actions
    );
    assert_eq!(d.status, stored, "asking again changes nothing stored");
    assert!(d.wake_at.is_some_and(|w| w <= now + LOGS_WAIT));
    // It keeps dying on the read: once the wait is over, the verdict is given without lines.
    let late = now + LOGS_WAIT + Duration::from_secs(1);
    let d = advance(&plan, &stored, &[Observation::Tick], late);
    assert_eq!(d.status.phase, RunPhase::Failed);
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::FetchLogs { .. }))
    );
    let logs = d.status.steps[0].attempts[0].logs.as_ref().expect("kept");
    assert!(logs.done && logs.tails.is_empty());
    assert_eq!(
        logs.note.as_deref(),
        Some("the log read did not answer within 30s")
    );
    // A late answer to a read given up changes nothing: the run is over.
    let answer = Observation::LogsFetched {
        step: 0,
        attempt: 1,
        tails: vec![LogTail::default()],
    };
    assert_eq!(advance(&plan, &d.status, &[answer], late).status, d.status);
}

#[test]
fn what_the_read_finds_never_changes_the_verdict() {
    for tails in [
        vec![],
        vec![LogTail {
            note: Some("no log stream".into()),
            ..Default::default()
        }],
    ] {
        let (plan, mut ecs) = failing_plan();
        let mut now = t0();
        let status = RunStatus::new("run-1".into(), &plan);
        let (status, _) = until_log_read(&plan, status, &mut ecs, &mut now);
        let answer = Observation::LogsFetched {
            step: 0,
            attempt: 1,
            tails,
        };
        let d = advance(&plan, &status, &[answer], now);
        assert_eq!(d.status.phase, RunPhase::Failed);
        assert_eq!(d.status.steps[1].phase, StepPhase::Pending);
    }
}

#[test]
fn tail_lines_zero_reads_nothing_and_always_reads_successes_too() {
    let (mut plan, mut ecs) = failing_plan();
    plan.steps[0].definition.logs = Some(LogsPolicy {
        tail_lines: 0,
        always: false,
    });
    let sim = simulate(&plan, ecs, &[], None);
    assert_eq!(sim.status.phase, RunPhase::Failed);
    assert_eq!(sim.ecs.log_reads, 0);
    assert!(sim.status.steps[0].attempts[0].logs.is_none());

    let mut plan = plan_of(vec![step("a"), step("b")]);
    plan.steps[0].definition.logs = Some(LogsPolicy {
        tail_lines: 1,
        always: true,
    });
    ecs = FakeEcs::default();
    let sim = simulate(&plan, ecs, &[], None);
    assert_eq!(sim.status.phase, RunPhase::Succeeded);
    assert_eq!(sim.ecs.log_reads, 1, "only the step that asked");
    let tails = &sim.status.steps[0].attempts[0]
        .logs
        .as_ref()
        .expect("read")
        .tails;
    assert_eq!(
        tails[0].lines,
        vec!["app failed in t1"],
        "the last line only"
    );
    assert!(sim.status.steps[1].attempts[0].logs.is_none());
}

#[test]
fn a_cancelled_run_and_a_launch_refusal_read_no_logs() {
    let plan = plan_of(vec![step("a")]);
    let mut ecs = FakeEcs::default();
    ecs.script.insert((0, 1), (Outcome::LaunchFailure, 1));
    let sim = simulate(&plan, ecs, &[], None);
    assert_eq!(sim.status.phase, RunPhase::Failed);
    assert_eq!(sim.ecs.log_reads, 0);
    let message = sim.status.steps[0]
        .failure
        .as_ref()
        .map(|f| f.message.clone());
    assert!(
        message
            .as_deref()
            .unwrap_or_default()
            .contains("no container instance in the cluster has enough"),
        "a launch refusal explains itself: {message:?}"
    );

    let mut ecs = FakeEcs::default();
    ecs.script.insert((0, 1), (Outcome::Exit(0), 50));
    let sim = simulate(&plan, ecs, &[], Some(3));
    assert_eq!(sim.status.phase, RunPhase::Failed);
    assert_eq!(sim.ecs.log_reads, 0);
}

#[test]
fn a_step_retried_many_times_keeps_the_lines_of_its_last_three_attempts_only() {
    let mut a = step("a");
    a.definition.retry = Some(RetryPolicy {
        limit: 5,
        when: vec![RetryOn::ExitCode],
        backoff: Backoff {
            initial_seconds: 1,
            max_seconds: 1,
            factor: 1,
        },
    });
    let plan = plan_of(vec![a]);
    let mut ecs = FakeEcs::default();
    for attempt in 1..=6 {
        ecs.script.insert((0, attempt), (Outcome::Exit(1), 1));
    }
    let sim = simulate(&plan, ecs, &[], None);
    assert_eq!(sim.status.phase, RunPhase::Failed);
    let attempts = &sim.status.steps[0].attempts;
    assert_eq!(attempts.len(), 6);
    for (i, a) in attempts.iter().enumerate() {
        let tail = &a.logs.as_ref().expect("read").tails[0];
        if i < 3 {
            assert!(tail.lines.is_empty(), "attempt {} kept its lines", i + 1);
            assert_eq!(tail.omitted_lines, 2, "and counts them");
        } else {
            assert_eq!(tail.lines.len(), 2, "attempt {} lost its lines", i + 1);
        }
    }
}
