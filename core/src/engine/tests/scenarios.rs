//! One rule at a time: order, failures, retries, judging, timeouts, deadlines, suspension.

use super::fake_ecs::*;
use super::simulation::*;
use super::*;
use crate::action::Decision;
use crate::engine::LOOKUP_SETTLE;
use crate::status::Attempt;

#[test]
fn three_steps_run_in_order_and_succeed() {
    let plan = plan_of(vec![step("a"), step("b"), step("c")]);
    let sim = simulate(&plan, FakeEcs::default(), &[], None);
    assert_eq!(sim.status.phase, RunPhase::Succeeded);
    assert_eq!(sim.launches, vec![(0, 1), (1, 1), (2, 1)]);
    assert_eq!(sim.ecs.run_task_calls, 3);
}

#[test]
fn a_failing_step_stops_the_run_and_later_steps_never_launch() {
    let plan = plan_of(vec![step("a"), step("b"), step("c")]);
    let mut ecs = FakeEcs::default();
    ecs.script.insert((1, 1), (Outcome::Exit(3), 1));
    let sim = simulate(&plan, ecs, &[], None);
    assert_eq!(sim.status.phase, RunPhase::Failed);
    assert_eq!(sim.status.steps[2].phase, StepPhase::Pending);
    assert!(sim.status.steps[2].attempts.is_empty());
    let failure = sim.status.steps[1].failure.clone().unwrap();
    assert_eq!(failure.class, FailureClass::ExitCode);
    assert!(
        failure.message.contains("exited with 3"),
        "{}",
        failure.message
    );
}

#[test]
fn ignore_failure_continues_and_active_false_skips() {
    let mut b = step("b");
    b.definition.ignore_failure = true;
    let mut c = step("c");
    c.definition.active = false;
    let plan = plan_of(vec![step("a"), b, c, step("d")]);
    let mut ecs = FakeEcs::default();
    ecs.script.insert((1, 1), (Outcome::NoExitCode, 1));
    let sim = simulate(&plan, ecs, &[], None);
    assert_eq!(sim.status.phase, RunPhase::Succeeded);
    assert!(sim.status.steps[1].failure_ignored);
    assert_eq!(sim.status.steps[2].phase, StepPhase::Skipped);
    assert_eq!(sim.launches, vec![(0, 1), (1, 1), (3, 1)]);
}

#[test]
fn retries_an_infrastructure_failure_then_succeeds_with_a_new_token() {
    let mut a = step("a");
    a.definition.retry = Some(RetryPolicy {
        limit: 2,
        when: vec![RetryOn::Infrastructure],
        backoff: Backoff {
            initial_seconds: 10,
            max_seconds: 60,
            factor: 2,
        },
    });
    let plan = plan_of(vec![a]);
    let mut ecs = FakeEcs::default();
    ecs.script
        .insert((0, 1), (Outcome::StopCode("SpotInterruption"), 1));
    let sim = simulate(&plan, ecs, &[], None);
    assert_eq!(sim.status.phase, RunPhase::Succeeded);
    let attempts = &sim.status.steps[0].attempts;
    assert_eq!(attempts.len(), 2);
    assert_ne!(attempts[0].client_token, attempts[1].client_token);
    assert_eq!(
        attempts[0].failure.as_ref().unwrap().reason,
        "SpotInterruption"
    );
    let gap = attempts[1]
        .created_at
        .duration_since(attempts[0].finished_at.unwrap());
    assert!(
        gap.as_secs() >= 5,
        "backoff of at least half the initial 10 s, got {gap:?}"
    );
}

#[test]
fn exit_code_failures_are_not_retried_unless_asked() {
    let mut a = step("a");
    a.definition.retry = Some(RetryPolicy {
        limit: 3,
        when: vec![RetryOn::Launch, RetryOn::Infrastructure],
        backoff: Backoff::default(),
    });
    let plan = plan_of(vec![a]);
    let mut ecs = FakeEcs::default();
    ecs.script.insert((0, 1), (Outcome::Exit(1), 1));
    let sim = simulate(&plan, ecs, &[], None);
    assert_eq!(sim.status.phase, RunPhase::Failed);
    assert_eq!(sim.status.steps[0].attempts.len(), 1);
}

#[test]
fn essential_only_judging_reads_the_task_definition_first() {
    use crate::step::{ContainerPolicy, ContainerSelection, SuccessPolicy};
    let mut a = step("a");
    a.definition.success = Some(SuccessPolicy {
        containers: ContainerSelection::Policy(ContainerPolicy::Essential),
        exit_codes: vec![0],
    });
    let plan = plan_of(vec![a]);
    let sim = simulate(&plan, FakeEcs::default(), &[], None);
    assert_eq!(sim.status.phase, RunPhase::Succeeded);
    let attempt = &sim.status.steps[0].attempts[0];
    assert_eq!(
        attempt.essential_containers.as_deref(),
        Some(&["app".to_owned()][..])
    );
}

#[test]
fn launch_failures_carry_the_ecs_reason() {
    let plan = plan_of(vec![step("a")]);
    let mut ecs = FakeEcs::default();
    ecs.script.insert((0, 1), (Outcome::LaunchFailure, 0));
    let sim = simulate(&plan, ecs, &[], None);
    let f = sim.status.steps[0].failure.clone().unwrap();
    assert_eq!(
        (f.class, f.reason.as_str()),
        (FailureClass::Launch, "RESOURCE:MEMORY")
    );
}

#[test]
fn throttling_defers_the_launch_and_never_fails_the_step() {
    let plan = plan_of(vec![step("a")]);
    let mut ecs = FakeEcs::default();
    ecs.script.insert((0, 1), (Outcome::Throttled, 1));
    let sim = simulate(&plan, ecs, &[], None);
    assert_eq!(sim.status.phase, RunPhase::Succeeded);
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, RunEvent::LaunchDeferred { .. }))
    );
    assert_eq!(sim.ecs.launches_by_token.len(), 1);
}

#[test]
fn a_timeout_stops_the_tasks_and_fails_the_step() {
    let mut a = step("a");
    a.definition.timeout_seconds = Some(12);
    let plan = plan_of(vec![a]);
    let mut ecs = FakeEcs::default();
    ecs.script.insert((0, 1), (Outcome::Exit(0), 100));
    let sim = simulate(&plan, ecs, &[], None);
    let f = sim.status.steps[0].failure.clone().unwrap();
    assert_eq!(
        (f.class, f.reason.as_str()),
        (FailureClass::Timeout, "DeadlineExceeded")
    );
    let task = &sim.status.steps[0].attempts[0].tasks[0];
    assert_eq!(
        task.stop_request.as_ref().unwrap().reason,
        "sequencer: step timeout exceeded"
    );
    assert_eq!(
        task.stopped_reason.as_deref(),
        Some("sequencer: step timeout exceeded")
    );
}

#[test]
fn count_three_is_judged_on_every_task_and_siblings_are_stopped() {
    let mut a = step("a");
    a.definition.parameters.count = Some(3);
    let plan = plan_of(vec![a]);
    let mut ecs = FakeEcs::default();
    ecs.script.insert((0, 1), (Outcome::Exit(0), 1));
    let sim = simulate(&plan, ecs, &[], None);
    assert_eq!(sim.status.steps[0].attempts[0].tasks.len(), 3);
    assert_eq!(sim.status.phase, RunPhase::Succeeded);
}

#[test]
fn cancel_stops_running_tasks_and_fails_the_run() {
    let plan = plan_of(vec![step("a"), step("b")]);
    let mut ecs = FakeEcs::default();
    ecs.script.insert((0, 1), (Outcome::Exit(0), 50));
    let sim = simulate(&plan, ecs, &[], Some(3));
    assert_eq!(sim.status.phase, RunPhase::Failed);
    assert_eq!(
        sim.status.steps[0].failure.as_ref().unwrap().class,
        FailureClass::Cancelled
    );
    assert!(
        sim.status.steps[0].attempts[0].tasks[0]
            .stop_request
            .as_ref()
            .unwrap()
            .acknowledged
    );
    assert!(sim.status.steps[1].attempts.is_empty());
}

#[test]
fn the_run_deadline_stops_the_running_task_and_fails_the_run() {
    let mut plan = plan_of(vec![step("a"), step("b")]);
    plan.active_deadline_seconds = Some(12);
    let mut ecs = FakeEcs::default();
    ecs.script.insert((0, 1), (Outcome::Exit(0), 100));
    let sim = simulate(&plan, ecs, &[], None);
    assert_eq!(sim.status.phase, RunPhase::Failed);
    let f = sim.status.steps[0].failure.clone().unwrap();
    assert_eq!(
        (f.class, f.reason.as_str()),
        (FailureClass::Timeout, "DeadlineExceeded")
    );
    assert!(
        f.message.contains("activeDeadlineSeconds of 12s"),
        "{}",
        f.message
    );
    let task = &sim.status.steps[0].attempts[0].tasks[0];
    assert_eq!(
        task.stop_request.as_ref().unwrap().reason,
        "sequencer: run deadline exceeded"
    );
    assert!(
        sim.status.steps[1].attempts.is_empty(),
        "no step starts after the deadline"
    );
    let took = sim
        .status
        .completion_time
        .unwrap()
        .duration_since(sim.status.start_time.unwrap());
    assert!(
        took.as_secs() >= 12 && took.as_secs() < 20,
        "ended {took:?} after the start"
    );
}

#[test]
fn a_run_deadline_is_not_ignored_by_ignore_failure_and_stops_retries() {
    let mut a = step("a");
    a.definition.ignore_failure = true;
    a.definition.retry = Some(RetryPolicy {
        limit: 5,
        when: vec![RetryOn::ExitCode],
        backoff: Backoff {
            initial_seconds: 30,
            max_seconds: 30,
            factor: 1,
        },
    });
    let mut plan = plan_of(vec![a, step("b")]);
    plan.active_deadline_seconds = Some(20);
    let mut ecs = FakeEcs::default();
    ecs.script.insert((0, 1), (Outcome::Exit(1), 0));
    let sim = simulate(&plan, ecs, &[], None);
    assert_eq!(sim.status.phase, RunPhase::Failed, "{:#?}", sim.status);
    assert!(!sim.status.steps[0].failure_ignored);
    assert_eq!(
        sim.status.steps[0].failure.as_ref().unwrap().reason,
        "DeadlineExceeded"
    );
    assert_eq!(
        sim.status.steps[0].attempts.len(),
        1,
        "the retry waiting 30 s never started"
    );
    assert!(sim.status.steps[1].attempts.is_empty());
}

#[test]
fn suspension_holds_the_next_step_and_lets_the_running_one_finish() {
    let mut plan = plan_of(vec![step("a"), step("b")]);
    let mut ecs = FakeEcs::default();
    let mut now = t0();
    let mut status = RunStatus::new("run-s".into(), &plan);

    // Suspended before the start: nothing launches.
    plan.suspended = true;
    let d = advance(&plan, &status, &[Observation::Tick], now);
    assert!(d.actions.is_empty());
    assert_eq!(d.status.phase, RunPhase::Pending);
    status = d.status;

    // Resumed: step a launches; then suspended again while it runs.
    plan.suspended = false;
    let d = advance(&plan, &status, &[Observation::Tick], now);
    assert!(matches!(
        d.actions.as_slice(),
        [Action::Launch { step: 0, .. }]
    ));
    let launched = ecs.execute(&d.actions[0]);
    status = advance(&plan, &d.status, &[launched], now).status;
    plan.suspended = true;
    for _ in 0..6 {
        now += Duration::from_secs(5);
        ecs.tick();
        let d = advance(&plan, &status, &[Observation::Tick], now);
        let answers: Vec<Observation> = d.actions.iter().map(|a| ecs.execute(a)).collect();
        assert!(
            d.actions
                .iter()
                .all(|a| matches!(a, Action::Describe { .. })),
            "{:?}",
            d.actions
        );
        status = advance(&plan, &d.status, &answers, now).status;
    }
    assert_eq!(
        status.steps[0].phase,
        StepPhase::Succeeded,
        "the running step finished"
    );
    assert_eq!(
        status.steps[1].phase,
        StepPhase::Pending,
        "the next one waits"
    );
    assert_eq!(status.phase, RunPhase::Running);

    // Resumed again: step b launches.
    plan.suspended = false;
    let d = advance(&plan, &status, &[Observation::Tick], now);
    assert!(
        matches!(d.actions.as_slice(), [Action::Launch { step: 1, .. }]),
        "{:?}",
        d.actions
    );
}

/// ECS may answer MISSING for a task it has just started. Such an answer, served late (a shared
/// poller's cached answer after a minute of throttled polls), is not a lost task: only an answer
/// given past the grace period after the launch is.
#[test]
fn an_early_missing_served_late_is_not_a_lost_task() {
    let plan = plan_of(vec![step("a")]);
    let status = RunStatus::new("run-1".into(), &plan);
    let launch = advance(&plan, &status, &[Observation::Tick], t0());
    let arn = "arn:aws:ecs:us-east-1:1:task/c/t1".to_owned();
    let running = TaskRecord {
        task_arn: arn.clone(),
        last_status: Some("PROVISIONING".into()),
        ..Default::default()
    };
    let launched = Observation::Launched {
        step: 0,
        attempt: 1,
        outcome: Ok(LaunchResponse {
            tasks: vec![running],
            failures: vec![],
            token_conflict: false,
        }),
    };
    let status = advance(&plan, &launch.status, &[launched], t0()).status;
    let missing_at = |answered: Option<Timestamp>| Observation::Described {
        outcome: Ok(DescribeResponse {
            tasks: vec![],
            missing: vec![MissingTask {
                task_arn: arn.clone(),
                answered_at: answered,
            }],
        }),
    };
    let late = t0() + Duration::from_secs(120);
    let early_answer = Some(t0() + Duration::from_secs(2));
    let served_late = advance(&plan, &status, &[missing_at(early_answer)], late);
    assert_eq!(served_late.status.steps[0].phase, StepPhase::Running);
    assert!(!served_late.status.steps[0].attempts[0].tasks[0].missing);
    // A fresh MISSING past the grace period is a lost task: its outcome is unknown.
    let fresh = advance(&plan, &served_late.status, &[missing_at(None)], late);
    let attempt = &fresh.status.steps[0].attempts[0];
    assert!(attempt.tasks[0].missing);
    assert_eq!(
        attempt.failure.as_ref().map(|f| f.class),
        Some(FailureClass::OutcomeUnknown)
    );
}

/// A re-issue answered ConflictException names the tasks the token started: this run's are
/// adopted; when none is (another run's tag), the attempt's outcome is unknown and no new token is
/// tried, although the step retries launch failures.
#[test]
fn a_token_conflict_adopts_this_runs_tasks_and_never_tries_a_new_token() {
    let mut a = step("a");
    a.definition.retry = Some(quick_retry(2, RetryOn::Launch));
    let plan = plan_of(vec![a]);
    let status = RunStatus::new("run-1".into(), &plan);
    let launch = advance(&plan, &status, &[Observation::Tick], t0());
    let task = |tag: &str| TaskRecord {
        task_arn: "arn:aws:ecs:us-east-1:1:task/c/t1".into(),
        last_status: Some("RUNNING".into()),
        run_tag: Some(tag.into()),
        ..Default::default()
    };
    let conflict = |tag: &str| Observation::Launched {
        step: 0,
        attempt: 1,
        outcome: Ok(LaunchResponse {
            tasks: vec![task(tag)],
            failures: vec![],
            token_conflict: true,
        }),
    };

    let ours = advance(&plan, &launch.status, &[conflict("run-1")], t0());
    let attempt = &ours.status.steps[0].attempts[0];
    assert_eq!(attempt.phase, AttemptPhase::Running);
    assert_eq!(attempt.tasks.len(), 1);
    assert!(
        !ours
            .actions
            .iter()
            .any(|a| matches!(a, Action::Launch { .. })),
        "{:?}",
        ours.actions
    );

    let theirs = advance(&plan, &launch.status, &[conflict("run-2")], t0());
    let attempt = &theirs.status.steps[0].attempts[0];
    assert!(
        attempt.tasks.is_empty(),
        "another run's task is not adopted"
    );
    let failure = attempt.failure.as_ref().expect("the attempt ends");
    assert_eq!(failure.class, FailureClass::OutcomeUnknown);
    assert_eq!(failure.reason, "LaunchTokenConflict");
    // Later decisions never start a second attempt for it.
    let mut status = theirs.status;
    for minutes in 1..5 {
        let now = t0() + Duration::from_secs(60 * minutes);
        let d = advance(&plan, &status, &[Observation::Tick], now);
        assert!(
            !d.actions.iter().any(|a| matches!(a, Action::Launch { .. })),
            "{:?}",
            d.actions
        );
        status = d.status;
    }
    assert_eq!(status.steps[0].attempts.len(), 1);
    assert_eq!(status.phase, RunPhase::Failed);
}

/// A run halted while its launch is unconfirmed (the RunTask answer was lost): the lookups that
/// follow, what they answer, and the decisions they lead to.
struct UnconfirmedLaunch {
    plan: Plan,
    status: RunStatus,
}

impl UnconfirmedLaunch {
    /// Step a's attempt 1 recorded and its RunTask sent at t0, the answer lost.
    fn new(deadline: Option<u64>) -> Self {
        let mut plan = plan_of(vec![step("a")]);
        plan.active_deadline_seconds = deadline;
        let status = RunStatus::new("run-1".into(), &plan);
        let status = advance(&plan, &status, &[Observation::Tick], t0()).status;
        UnconfirmedLaunch { plan, status }
    }

    /// One decision at `seconds` after t0.
    fn at(&mut self, seconds: u64, observations: &[Observation]) -> Decision {
        let now = t0() + Duration::from_secs(seconds);
        let d = advance(&self.plan, &self.status, observations, now);
        self.status = d.status.clone();
        d
    }

    /// A decision that asks for a lookup, then the lookup's answer.
    fn look_up(&mut self, seconds: u64, answer: Result<Vec<TaskRecord>, ApiError>) -> Decision {
        let asked = self.at(seconds, &[Observation::Tick]);
        assert!(
            asked
                .actions
                .iter()
                .any(|a| matches!(a, Action::Lookup { .. })),
            "no lookup at {seconds}s: {:?}",
            asked.actions
        );
        let looked_up = Observation::LookedUp {
            step: 0,
            attempt: 1,
            outcome: answer,
        };
        self.at(seconds, &[looked_up])
    }

    fn attempt(&self) -> &Attempt {
        &self.status.steps[0].attempts[0]
    }
}

fn launched_task() -> TaskRecord {
    TaskRecord {
        task_arn: "arn:aws:ecs:us-east-1:1:task/c/t1".into(),
        last_status: Some("PROVISIONING".into()),
        run_tag: Some("run-1".into()),
        ..Default::default()
    }
}

fn throttled() -> ApiError {
    ApiError {
        transient: true,
        code: "DispatchFailure".into(),
        message: "the role could not be assumed".into(),
    }
}

/// Deleting a Sequence whose launch is unconfirmed: ListTasks does not list the new task yet. An
/// empty answer is no proof that nothing was launched: the run looks again, finds the task when
/// ECS lists it, and stops it, never launching again.
#[test]
fn a_cancelled_unconfirmed_launch_keeps_looking_and_stops_the_task_that_appears() {
    let mut run = UnconfirmedLaunch::new(None);
    let cancel = Observation::CancelRequested {
        reason: "the Sequence was deleted".into(),
    };
    run.at(1, &[cancel]);
    let empty = run.look_up(2, Ok(vec![]));
    assert_eq!(
        run.attempt().phase,
        AttemptPhase::Launching,
        "not concluded"
    );
    assert!(run.attempt().retry_launch_at.is_some());
    assert!(
        !empty
            .actions
            .iter()
            .any(|a| matches!(a, Action::Launch { .. })),
        "a cancelled run re-issues nothing: {:?}",
        empty.actions
    );
    assert!(!run.status.is_finished());
    let found = run.look_up(10, Ok(vec![launched_task()]));
    assert_eq!(
        run.attempt().tasks.len(),
        1,
        "the task that appeared is adopted"
    );
    assert!(
        found
            .actions
            .iter()
            .any(|a| matches!(a, Action::StopTask { .. })),
        "and stopped: {:?}",
        found.actions
    );
    assert_eq!(run.status.steps[0].attempts.len(), 1);
}

/// Once RunTask can no longer show up, an empty lookup does mean nothing was launched: the
/// cancelled run ends without waiting longer.
#[test]
fn a_cancelled_launch_that_never_appears_ends_once_the_launch_has_settled() {
    let mut run = UnconfirmedLaunch::new(None);
    run.at(
        1,
        &[Observation::CancelRequested {
            reason: "deleted".into(),
        }],
    );
    run.look_up(2, Ok(vec![]));
    assert!(!run.status.is_finished());
    let settled = LOOKUP_SETTLE.as_secs() + 1;
    run.look_up(settled, Ok(vec![]));
    for seconds in [settled, settled + 5] {
        run.at(seconds, &[Observation::Tick]);
    }
    assert!(run.status.is_finished(), "{:?}", run.status.phase);
    assert!(run.attempt().tasks.is_empty());
}

/// Lookups that keep failing (a revoked role) no longer hold a cancelled run forever: once the
/// launch has settled the attempt ends as outcome unknown, saying which task may be left.
#[test]
fn a_cancelled_run_whose_lookups_keep_failing_ends_as_outcome_unknown() {
    let mut run = UnconfirmedLaunch::new(None);
    run.at(
        1,
        &[Observation::CancelRequested {
            reason: "deleted".into(),
        }],
    );
    run.look_up(2, Err(throttled()));
    assert_eq!(run.attempt().phase, AttemptPhase::Launching);
    let settled = LOOKUP_SETTLE.as_secs() + 60;
    let d = run.look_up(settled, Err(throttled()));
    let failure = run.attempt().failure.clone().expect("the attempt ends");
    assert_eq!(failure.class, FailureClass::OutcomeUnknown);
    assert_eq!(failure.reason, "LaunchLookupFailed");
    assert!(
        failure.message.contains(&run.attempt().started_by),
        "{}",
        failure.message
    );
    assert!(
        !d.actions.iter().any(|a| matches!(a, Action::Launch { .. })),
        "{:?}",
        d.actions
    );
    run.at(settled + 1, &[Observation::Tick]);
    assert!(run.status.is_finished(), "{:?}", run.status.phase);
}

/// The run's deadline ends an attempt whose lookups keep failing, as a cancel does.
#[test]
fn a_deadline_ends_an_attempt_whose_lookups_keep_failing() {
    let mut run = UnconfirmedLaunch::new(Some(60));
    run.look_up(1, Err(throttled()));
    let late = LOOKUP_SETTLE.as_secs() + 120;
    run.look_up(late, Err(throttled()));
    assert_eq!(
        run.attempt().failure.as_ref().map(|f| f.class),
        Some(FailureClass::OutcomeUnknown)
    );
    run.at(late + 1, &[Observation::Tick]);
    assert!(run.status.is_finished(), "{:?}", run.status.phase);
}

/// A lookup ECS refuses (no access to ListTasks, no such cluster) will not succeed by waiting: the
/// attempt ends as outcome unknown at once, running or not.
#[test]
fn a_refused_lookup_ends_the_attempt_as_outcome_unknown_at_once() {
    let mut run = UnconfirmedLaunch::new(None);
    let denied = ApiError {
        transient: false,
        code: "AccessDeniedException".into(),
        message: "not authorized to perform ecs:ListTasks".into(),
    };
    run.look_up(2, Err(denied));
    let failure = run.attempt().failure.clone().expect("ended");
    assert_eq!(failure.class, FailureClass::OutcomeUnknown);
    assert!(
        failure.message.contains("AccessDeniedException"),
        "{}",
        failure.message
    );
}

/// `count: 2`, one task failing with an exit code and the other forgotten by ECS: the attempt's
/// outcome is unknown whatever the order of its tasks, so a step that retries exit codes does not
/// launch again while the forgotten task may still run.
#[test]
fn a_failed_and_a_forgotten_task_make_the_outcome_unknown_in_either_order() {
    for forgotten_first in [false, true] {
        let mut a = step("a");
        a.definition.parameters.count = Some(2);
        a.definition.retry = Some(quick_retry(2, RetryOn::ExitCode));
        let plan = plan_of(vec![a]);
        let status = RunStatus::new("run-1".into(), &plan);
        let status = advance(&plan, &status, &[Observation::Tick], t0()).status;
        let arn = |n: u32| format!("arn:aws:ecs:us-east-1:1:task/c/t{n}");
        let provisioning = |n: u32| TaskRecord {
            task_arn: arn(n),
            last_status: Some("PROVISIONING".into()),
            run_tag: Some("run-1".into()),
            ..Default::default()
        };
        let launched = Observation::Launched {
            step: 0,
            attempt: 1,
            outcome: Ok(LaunchResponse {
                tasks: vec![provisioning(1), provisioning(2)],
                failures: vec![],
                token_conflict: false,
            }),
        };
        let status = advance(&plan, &status, &[launched], t0()).status;
        let (failed, forgotten) = if forgotten_first { (2, 1) } else { (1, 2) };
        let exited = TaskRecord {
            last_status: Some("STOPPED".into()),
            stop_code: Some("EssentialContainerExited".into()),
            containers: vec![container(Some(3))],
            ..provisioning(failed)
        };
        let described = Observation::Described {
            outcome: Ok(DescribeResponse {
                tasks: vec![exited],
                missing: vec![MissingTask::fresh(arn(forgotten))],
            }),
        };
        let mut status = advance(
            &plan,
            &status,
            &[described],
            t0() + Duration::from_secs(120),
        )
        .status;
        for seconds in [121, 122, 200, 400] {
            status = advance(
                &plan,
                &status,
                &[Observation::Tick],
                t0() + Duration::from_secs(seconds),
            )
            .status;
        }
        let attempts = &status.steps[0].attempts;
        assert_eq!(
            attempts.len(),
            1,
            "no retry (forgotten first: {forgotten_first})"
        );
        assert_eq!(
            attempts[0].failure.as_ref().map(|f| f.class),
            Some(FailureClass::OutcomeUnknown),
            "forgotten first: {forgotten_first}"
        );
    }
}

/// A step whose outcome is unknown under `ignoreFailure` lets the run go on, and its failure
/// says that its task may still be running beside the next step's.
#[test]
fn ignore_failure_over_an_unknown_outcome_says_the_task_may_still_run() {
    let mut a = step("a");
    a.definition.ignore_failure = true;
    let plan = plan_of(vec![a, step("b")]);
    let mut ecs = FakeEcs::default();
    ecs.script.insert((0, 1), (Outcome::Vanish, 1));
    let sim = simulate(&plan, ecs, &[], None);
    let failure = sim.status.steps[0].failure.clone().expect("step a failed");
    assert_eq!(failure.class, FailureClass::OutcomeUnknown);
    assert!(
        failure.message.contains("may still be running"),
        "{}",
        failure.message
    );
    assert_eq!(sim.status.steps[1].phase, StepPhase::Succeeded);
}

/// A resumed run finds its launch unconfirmed: within an hour of the first RunTask an empty lookup
/// proves nothing ran (ECS lists a stopped task for at least an hour), and RunTask is re-issued
/// with the same token; later a task that ran and stopped may be forgotten, so the outcome is
/// unknown and nothing is launched.
#[test]
fn an_unconfirmed_launch_is_reissued_only_within_an_hour_of_its_first_runtask() {
    for (minutes, reissued) in [(59, true), (61, false)] {
        let mut run = UnconfirmedLaunch::new(None);
        let d = run.look_up(minutes * 60, Ok(vec![]));
        let launched = d.actions.iter().any(|a| matches!(a, Action::Launch { .. }));
        assert_eq!(
            launched, reissued,
            "after {minutes} minutes: {:?}",
            d.actions
        );
        if !reissued {
            let failure = run.attempt().failure.clone().expect("ended");
            assert_eq!(failure.class, FailureClass::OutcomeUnknown);
            assert_eq!(failure.reason, "LaunchOutcomeUnknown");
        }
    }
}

/// Up to `limit` more attempts after a failure of class `when`, a second apart.
fn quick_retry(limit: u32, when: RetryOn) -> RetryPolicy {
    RetryPolicy {
        limit,
        when: vec![when],
        backoff: Backoff {
            initial_seconds: 1,
            max_seconds: 1,
            factor: 1,
        },
    }
}
