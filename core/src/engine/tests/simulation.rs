//! Helpers, and a runner that can die at any action and resume from what it persisted.

use super::fake_ecs::*;
use super::*;

pub(crate) fn container(exit_code: Option<i32>) -> ContainerRecord {
    ContainerRecord {
        name: "app".into(),
        exit_code,
        reason: None,
        last_status: Some("STOPPED".into()),
    }
}

pub(crate) fn step(name: &str) -> PlannedStep {
    PlannedStep {
        name: name.into(),
        definition: StepDefinition::ecs_task(RunTaskParameters {
            task_definition: format!("{name}:1"),
            cluster: Some("c".into()),
            ..Default::default()
        }),
    }
}

pub(crate) fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("valid")
}

pub(crate) struct Simulation {
    pub(crate) ecs: FakeEcs,
    pub(crate) status: RunStatus,
    pub(crate) events: Vec<RunEvent>,
    pub(crate) launches: Vec<(usize, u32)>,
    pub(crate) now: Timestamp,
}

/// Runs `plan` to the end. `crashes` lists action counts at which the runner dies: the results of
/// that batch are lost (the action itself ran if `crash_after` says so), and it restarts from the
/// last persisted status.
pub(crate) fn simulate(
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

pub(crate) fn check_invariants(before: &RunStatus, after: &RunStatus) {
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
                // Only the log lines of old attempts may go (to keep the record small).
                let without_lines = |a: &crate::status::Attempt| {
                    let mut a = a.clone();
                    for tail in a.logs.iter_mut().flat_map(|l| l.tails.iter_mut()) {
                        tail.omitted_lines += tail.lines.len() as u32;
                        tail.lines.clear();
                    }
                    a
                };
                assert_eq!(
                    without_lines(ba),
                    without_lines(aa),
                    "a finished attempt changed"
                );
            }
            // The verdict waits for the log read: no attempt ends with a read still pending.
            if aa.phase.is_terminal() {
                assert!(
                    aa.logs.as_ref().is_none_or(|l| l.done),
                    "attempt {} ended while its log read was pending",
                    aa.attempt
                );
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

pub(crate) fn plan_of(steps: Vec<PlannedStep>) -> Plan {
    Plan::new(steps)
}
