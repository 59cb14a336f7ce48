//! The runner killed at the worst moments, and at random ones (property test).

use super::*;
use proptest::prelude::*;

use super::fake_ecs::*;
use super::simulation::*;

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
        1 => Just(Outcome::Vanish),
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
        partial_lists in any::<bool>(),
        foreign_tasks in any::<bool>(),
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
        // Partial ListTasks answers can only be completed by ECS's clientToken idempotency, which
        // real ECS always has; without it they are not a world the protocol can be safe in.
        let partial_lists = partial_lists && honours_client_token;
        let mut ecs = FakeEcs { honours_client_token, partial_lists, foreign_tasks, ..Default::default() };
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
        // An attempt whose outcome is unknown (its task vanished from ECS, its launch could not be
        // confirmed) is never followed by another: it may still run.
        for s in &sim.status.steps {
            let unknown = s.attempts.iter().position(|a| {
                a.failure.as_ref().is_some_and(|f| f.reason == "TaskMissing" || f.reason == "LaunchOutcomeUnknown")
            });
            if let Some(unknown) = unknown {
                let failure = s.attempts[unknown].failure.as_ref().map(|f| f.class);
                prop_assert_eq!(failure, Some(FailureClass::OutcomeUnknown));
                prop_assert_eq!(unknown + 1, s.attempts.len(),
                    "step {} started attempt {} after attempt {} ended with an unknown outcome", s.name, unknown + 2, unknown + 1);
            }
        }
        // Every attempt that failed on its own tasks carries their last log lines, whatever the
        // crashes (a read lost with the runner is asked again by the resumed one).
        for (i, s) in sim.status.steps.iter().enumerate() {
            for a in s.attempts.iter().filter(|a| a.phase == AttemptPhase::Failed) {
                let targets = crate::log_tail::log_targets(&plan.steps[i], a, false);
                let tails = a.logs.as_ref().map(|l| l.tails.len()).unwrap_or(0);
                prop_assert_eq!(tails, targets.len(), "step {} attempt {}: {:?}", s.name, a.attempt, a.logs);
                for tail in a.logs.iter().flat_map(|l| &l.tails) {
                    prop_assert_eq!(tail.lines.last(), Some(&format!("{} failed in {}", tail.container, tail.task_id)));
                }
            }
        }
        // Another run's task is never adopted.
        for task in sim.status.steps.iter().flat_map(|s| &s.attempts).flat_map(|a| &a.tasks) {
            prop_assert!(!task.task_arn.contains("foreign"), "adopted {}", task.task_arn);
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
