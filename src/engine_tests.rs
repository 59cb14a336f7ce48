//! Engine tests: scenarios, and property tests that crash the runner at random points.
//!
//! `FakeEcs` is an in-process ECS good enough for the engine: RunTask (with or without clientToken
//! idempotency), DescribeTasks, StopTask, ListTasks by startedBy, DescribeTaskDefinition. Each
//! task follows a script: run for some ticks, then stop with an exit code or a stop code.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use proptest::prelude::*;

use crate::action::{Action, RunEvent};
use crate::engine::advance;
use crate::observation::{ApiError, DescribeResponse, EcsFailure, LaunchResponse, Observation};
use crate::plan::{Plan, PlannedStep};
use crate::run_task::RunTaskParameters;
use crate::status::{
    AttemptPhase, ContainerRecord, FailureClass, RunPhase, RunStatus, StepPhase, TaskRecord,
};
use crate::step::{Backoff, RetryOn, RetryPolicy, StepDefinition};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    Exit(i32),
    NoExitCode,
    StopCode(&'static str),
    /// RunTask answers with `failures[]` and no task.
    LaunchFailure,
    /// RunTask throws a transient error (the call has no effect).
    Throttled,
}

#[derive(Default)]
struct FakeEcs {
    honours_client_token: bool,
    tasks: Vec<(
        TaskRecord,
        String, /* startedBy */
        u32,    /* ticks left */
        Outcome,
    )>,
    launches_by_token: HashMap<String, Vec<String>>,
    run_task_calls: u32,
    /// Outcome per (step, attempt); default success.
    script: HashMap<(usize, u32), (Outcome, u32)>,
    next_id: u32,
}

impl FakeEcs {
    fn execute(&mut self, action: &Action) -> Observation {
        match action {
            Action::Launch {
                step,
                attempt,
                parameters,
                identity,
            } => {
                self.run_task_calls += 1;
                let (outcome, ticks) = self
                    .script
                    .get(&(*step, *attempt))
                    .copied()
                    .unwrap_or((Outcome::Exit(0), 2));
                if outcome == Outcome::Throttled && self.run_task_calls % 2 == 1 {
                    let e = ApiError {
                        transient: true,
                        code: "ThrottlingException".into(),
                        message: "Rate exceeded".into(),
                    };
                    return Observation::Launched {
                        step: *step,
                        attempt: *attempt,
                        outcome: Err(e),
                    };
                }
                if outcome == Outcome::LaunchFailure {
                    let failures = vec![EcsFailure {
                        arn: None,
                        reason: Some("RESOURCE:MEMORY".into()),
                        detail: None,
                    }];
                    return Observation::Launched {
                        step: *step,
                        attempt: *attempt,
                        outcome: Ok(LaunchResponse {
                            tasks: vec![],
                            failures,
                        }),
                    };
                }
                if self.honours_client_token
                    && let Some(arns) = self.launches_by_token.get(&identity.client_token)
                {
                    let tasks = arns.iter().map(|a| self.snapshot(a)).collect();
                    return Observation::Launched {
                        step: *step,
                        attempt: *attempt,
                        outcome: Ok(LaunchResponse {
                            tasks,
                            failures: vec![],
                        }),
                    };
                }
                let count = parameters.count.unwrap_or(1);
                let mut arns = Vec::new();
                for _ in 0..count {
                    self.next_id += 1;
                    let arn = format!("arn:aws:ecs:us-east-1:1:task/c/t{}", self.next_id);
                    let record = TaskRecord {
                        task_arn: arn.clone(),
                        task_definition_arn: Some(parameters.task_definition.clone()),
                        last_status: Some("PROVISIONING".into()),
                        ..Default::default()
                    };
                    self.tasks
                        .push((record, identity.started_by.clone(), ticks, outcome));
                    arns.push(arn);
                }
                self.launches_by_token
                    .entry(identity.client_token.clone())
                    .or_default()
                    .extend(arns.clone());
                let tasks = arns.iter().map(|a| self.snapshot(a)).collect();
                Observation::Launched {
                    step: *step,
                    attempt: *attempt,
                    outcome: Ok(LaunchResponse {
                        tasks,
                        failures: vec![],
                    }),
                }
            }
            Action::Lookup {
                step,
                attempt,
                started_by,
                ..
            } => {
                let tasks = self
                    .tasks
                    .iter()
                    .filter(|t| &t.1 == started_by)
                    .map(|t| t.0.clone())
                    .collect();
                Observation::LookedUp {
                    step: *step,
                    attempt: *attempt,
                    outcome: Ok(tasks),
                }
            }
            Action::Describe { task_arns, .. } => {
                let tasks = task_arns.iter().map(|a| self.snapshot(a)).collect();
                Observation::Described {
                    outcome: Ok(DescribeResponse {
                        tasks,
                        missing: vec![],
                    }),
                }
            }
            Action::StopTask {
                task_arn, reason, ..
            } => {
                if let Some(t) = self.tasks.iter_mut().find(|t| &t.0.task_arn == task_arn)
                    && t.0.last_status.as_deref() != Some("STOPPED")
                {
                    t.0.last_status = Some("STOPPED".into());
                    t.0.stop_code = Some("UserInitiated".into());
                    t.0.stopped_reason = Some(reason.clone());
                    t.0.containers = vec![container(Some(143))];
                }
                Observation::StopAnswered {
                    task_arn: task_arn.clone(),
                    outcome: Ok(()),
                }
            }
            Action::DescribeTaskDefinition { step, attempt, .. } => {
                Observation::TaskDefinitionDescribed {
                    step: *step,
                    attempt: *attempt,
                    outcome: Ok(vec!["app".into()]),
                }
            }
        }
    }

    fn snapshot(&self, arn: &str) -> TaskRecord {
        self.tasks
            .iter()
            .find(|t| t.0.task_arn == arn)
            .map(|t| t.0.clone())
            .unwrap_or_default()
    }

    /// Time passes: running tasks get closer to their end.
    fn tick(&mut self) {
        for (task, _, ticks, outcome) in &mut self.tasks {
            if task.last_status.as_deref() == Some("STOPPED") {
                continue;
            }
            if *ticks > 0 {
                *ticks -= 1;
                task.last_status = Some("RUNNING".into());
                continue;
            }
            task.last_status = Some("STOPPED".into());
            match *outcome {
                Outcome::Exit(code) => {
                    task.stop_code = Some("EssentialContainerExited".into());
                    task.containers = vec![container(Some(code))];
                }
                Outcome::NoExitCode => {
                    task.stop_code = Some("EssentialContainerExited".into());
                    task.containers = vec![container(None)];
                }
                Outcome::StopCode(code) => {
                    task.stop_code = Some(code.into());
                    task.containers = vec![container(None)];
                }
                _ => task.containers = vec![container(Some(0))],
            }
        }
    }
}

fn container(exit_code: Option<i32>) -> ContainerRecord {
    ContainerRecord {
        name: "app".into(),
        exit_code,
        reason: None,
        last_status: Some("STOPPED".into()),
    }
}

fn step(name: &str) -> PlannedStep {
    PlannedStep {
        name: name.into(),
        definition: StepDefinition::ecs_task(RunTaskParameters {
            task_definition: format!("{name}:1"),
            cluster: Some("c".into()),
            ..Default::default()
        }),
    }
}

fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("valid")
}

struct Simulation {
    ecs: FakeEcs,
    status: RunStatus,
    events: Vec<RunEvent>,
    launches: Vec<(usize, u32)>,
    now: Timestamp,
}

/// Runs `plan` to the end. `crashes` lists action counts at which the runner dies: the results of
/// that batch are lost (the action itself ran if `crash_after` says so), and it restarts from the
/// last persisted status.
fn simulate(
    plan: &Plan,
    ecs: FakeEcs,
    crashes: &[(u32, bool)],
    cancel_at_round: Option<u32>,
) -> Simulation {
    let mut sim = Simulation {
        ecs,
        status: RunStatus::new("run-1".into(), plan),
        events: vec![],
        launches: vec![],
        now: t0(),
    };
    let mut observations = vec![Observation::Tick];
    let mut actions_done = 0u32;
    for round in 0..2000 {
        if cancel_at_round == Some(round) {
            observations.push(Observation::CancelRequested {
                reason: "test".into(),
            });
        }
        let previous = sim.status.clone();
        let decision = advance(plan, &previous, &observations, sim.now);
        check_invariants(&previous, &decision.status);
        sim.status = decision.status; // persisted before acting
        sim.events.extend(decision.events);
        if sim.status.is_finished() {
            assert!(
                decision.actions.is_empty()
                    || decision
                        .actions
                        .iter()
                        .all(|a| matches!(a, Action::StopTask { .. }))
            );
            break;
        }
        observations = Vec::new();
        let mut crashed = false;
        for action in &decision.actions {
            actions_done += 1;
            if let Some((_, after)) = crashes.iter().find(|(n, _)| *n == actions_done) {
                if *after {
                    sim.ecs.execute(action);
                }
                crashed = true;
                break;
            }
            if let Action::Launch { step, attempt, .. } = action {
                sim.launches.push((*step, *attempt));
            }
            observations.push(sim.ecs.execute(action));
        }
        if crashed {
            observations = vec![Observation::Tick]; // a restarted runner starts with a tick
            continue;
        }
        if observations.is_empty() {
            let wake = decision.wake_at.unwrap_or(sim.now + Duration::from_secs(5));
            sim.now = wake.max(sim.now + Duration::from_millis(1));
            sim.ecs.tick();
            observations.push(Observation::Tick);
        }
    }
    assert!(
        sim.status.is_finished(),
        "the run did not finish: {:#?}",
        sim.status
    );
    sim
}

fn check_invariants(before: &RunStatus, after: &RunStatus) {
    // Terminal stays terminal, with the same facts.
    if before.phase.is_terminal() {
        assert_eq!(before.phase, after.phase);
    }
    for (b, a) in before.steps.iter().zip(&after.steps) {
        if b.phase.is_terminal() {
            assert_eq!(b.phase, a.phase, "step {} left a terminal phase", b.name);
            assert_eq!(b.failure, a.failure);
        }
        for (ba, aa) in b.attempts.iter().zip(&a.attempts) {
            assert_eq!(ba.client_token, aa.client_token);
            if ba.phase.is_terminal() {
                assert_eq!(ba, aa, "a finished attempt changed");
            }
            for bt in ba.tasks.iter().filter(|t| t.is_finished()) {
                let at = aa
                    .tasks
                    .iter()
                    .find(|t| t.task_arn == bt.task_arn)
                    .expect("a task disappeared");
                assert_eq!(
                    (bt.stop_code.clone(), bt.containers.clone()),
                    (at.stop_code.clone(), at.containers.clone())
                );
            }
        }
        assert!(
            a.attempts.len() >= b.attempts.len(),
            "attempts were forgotten"
        );
    }
    // Strict order: a step has attempts only if every earlier step is done, and none after a failure.
    for (i, s) in after.steps.iter().enumerate() {
        if !s.attempts.is_empty() {
            for earlier in &after.steps[..i] {
                assert!(
                    earlier.phase.is_terminal(),
                    "step {} started before {} finished",
                    s.name,
                    earlier.name
                );
                assert!(
                    earlier.phase != StepPhase::Failed || earlier.failure_ignored,
                    "step {} started after a failure",
                    s.name
                );
            }
        }
        // At most one live attempt per step, and attempts numbered 1..n.
        assert!(s.attempts.iter().filter(|a| !a.phase.is_terminal()).count() <= 1);
        for (n, a) in s.attempts.iter().enumerate() {
            assert_eq!(a.attempt as usize, n + 1);
        }
    }
}

fn plan_of(steps: Vec<PlannedStep>) -> Plan {
    Plan::new(steps)
}

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
fn a_crash_right_after_runtask_is_resumed_by_lookup_without_a_second_launch() {
    let plan = plan_of(vec![step("a")]);
    // Action 1 is the first Launch: it runs, then the runner dies before recording the answer.
    let sim = simulate(&plan, FakeEcs::default(), &[(1, true)], None);
    assert_eq!(sim.status.phase, RunPhase::Succeeded);
    assert_eq!(
        sim.ecs.run_task_calls, 1,
        "the lookup found the task; RunTask was not called again"
    );
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, RunEvent::TasksFound { .. }))
    );
}

#[test]
fn a_crash_before_runtask_relaunches_with_the_same_token() {
    let plan = plan_of(vec![step("a")]);
    let sim = simulate(&plan, FakeEcs::default(), &[(1, false)], None);
    assert_eq!(sim.status.phase, RunPhase::Succeeded);
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, RunEvent::LaunchReissued { .. }))
    );
    assert_eq!(sim.ecs.launches_by_token.len(), 1);
}

fn arb_outcome() -> impl Strategy<Value = (Outcome, u32)> {
    let outcome = prop_oneof![
        4 => Just(Outcome::Exit(0)),
        1 => Just(Outcome::Exit(2)),
        1 => Just(Outcome::NoExitCode),
        1 => Just(Outcome::StopCode("TaskFailedToStart")),
        1 => Just(Outcome::LaunchFailure),
        1 => Just(Outcome::Throttled),
    ];
    (outcome, 0u32..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// Whatever the tasks do and wherever the runner dies, steps run in order, no (step, attempt)
    /// starts tasks twice, terminal states stay terminal (checked each round), and the run ends in
    /// the state its outcomes call for.
    #[test]
    fn exactly_once_in_order_under_random_outcomes_and_crashes(
        n_steps in 1usize..5,
        outcomes in prop::collection::vec(arb_outcome(), 12),
        options in prop::collection::vec((any::<bool>(), any::<bool>(), 0u32..3, 1u32..3), 5),
        crashes in prop::collection::vec((1u32..40, any::<bool>()), 0..6),
        honours_client_token in any::<bool>(),
    ) {
        let steps: Vec<PlannedStep> = (0..n_steps).map(|i| {
            let mut s = step(&format!("s{i}"));
            let (ignore, inactive, retries, count) = options[i];
            s.definition.ignore_failure = ignore;
            s.definition.active = !(inactive && i % 2 == 1);
            s.definition.parameters.count = Some(count);
            if retries > 0 {
                s.definition.retry = Some(RetryPolicy { limit: retries, when: vec![RetryOn::Launch, RetryOn::Infrastructure, RetryOn::ExitCode], backoff: Backoff { initial_seconds: 1, max_seconds: 4, factor: 2 } });
            }
            s
        }).collect();
        let plan = plan_of(steps);
        let mut ecs = FakeEcs { honours_client_token, ..Default::default() };
        for step in 0..n_steps {
            for attempt in 1..=3u32 {
                ecs.script.insert((step, attempt), outcomes[(step * 3 + attempt as usize - 1) % outcomes.len()]);
            }
        }
        let sim = simulate(&plan, ecs, &crashes, None);

        // Exactly once: one set of tasks per clientToken, whatever the crashes.
        for (token, arns) in &sim.ecs.launches_by_token {
            let attempt = sim.status.steps.iter().flat_map(|s| &s.attempts).find(|a| &a.client_token == token);
            let attempt = attempt.expect("every launch belongs to a recorded attempt");
            prop_assert_eq!(arns.len(), attempt.tasks.len(),
                "token {} started {} task(s) but its attempt records {}", token, arns.len(), attempt.tasks.len());
        }
        // The end state follows from the step results.
        let blocking = sim.status.steps.iter().any(|s| s.phase == StepPhase::Failed && !s.failure_ignored);
        prop_assert_eq!(sim.status.phase, if blocking { RunPhase::Failed } else { RunPhase::Succeeded });
        for (i, s) in sim.status.steps.iter().enumerate() {
            match s.phase {
                StepPhase::Succeeded => prop_assert_eq!(s.attempts.last().map(|a| a.phase), Some(AttemptPhase::Succeeded)),
                StepPhase::Skipped => prop_assert!(!plan.steps[i].definition.active && s.attempts.is_empty()),
                StepPhase::Failed => {
                    let limit = plan.steps[i].definition.retry.as_ref().map_or(0, |r| r.limit);
                    prop_assert!(s.attempts.len() as u32 <= limit + 1);
                    prop_assert!(s.failure.is_some());
                }
                StepPhase::Pending => prop_assert!(blocking && s.attempts.is_empty()),
                StepPhase::Running => prop_assert!(false, "a finished run has a running step"),
            }
        }
    }
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
