//! Whatever a stored status says (hand-edited, truncated, from another plan, with impossible
//! numbers and phases) and whatever ECS answers, the engine never panics; a status that does not
//! belong to its plan gets no action at all.

use proptest::prelude::*;

use super::simulation::*;
use super::*;
use crate::engine::mismatch;
use crate::log_record::{AttemptLogs, LogTail};
use crate::status::{Attempt, CancelRequest, Failure, StepStatus};

fn at(seconds: i64) -> Timestamp {
    t0() + Duration::from_secs(seconds.unsigned_abs() % 100_000)
}

fn arb_attempt_phase() -> impl Strategy<Value = AttemptPhase> {
    prop_oneof![
        Just(AttemptPhase::Launching),
        Just(AttemptPhase::Running),
        Just(AttemptPhase::Stopping),
        Just(AttemptPhase::Succeeded),
        Just(AttemptPhase::Failed),
    ]
}

fn arb_step_phase() -> impl Strategy<Value = StepPhase> {
    prop_oneof![
        Just(StepPhase::Pending),
        Just(StepPhase::Skipped),
        Just(StepPhase::Running),
        Just(StepPhase::Succeeded),
        Just(StepPhase::Failed),
    ]
}

fn arb_task() -> impl Strategy<Value = TaskRecord> {
    (
        0u8..4,
        prop::option::of(prop_oneof![Just("RUNNING"), Just("STOPPED"), Just("??")]),
        prop::option::of(prop_oneof![
            Just("EssentialContainerExited"),
            Just("TaskFailedToStart")
        ]),
        prop::option::of(-1i32..300),
        any::<bool>(),
    )
        .prop_map(|(id, last, stop_code, exit, missing)| TaskRecord {
            task_arn: format!("arn:aws:ecs:us-east-1:1:task/c/t{id}"),
            last_status: last.map(String::from),
            stop_code: stop_code.map(String::from),
            containers: vec![container(exit)],
            missing,
            ..Default::default()
        })
}

fn arb_attempt() -> impl Strategy<Value = Attempt> {
    (
        (
            any::<u32>(),
            arb_attempt_phase(),
            any::<i64>(),
            prop::option::of(any::<i64>()),
        ),
        (
            prop::collection::vec(arb_task(), 0..4),
            any::<u32>(),
            prop::option::of(any::<i64>()),
        ),
        (
            any::<bool>(),
            any::<bool>(),
            prop::option::of((any::<i64>(), any::<bool>(), 0usize..3)),
        ),
    )
        .prop_map(
            |(
                (number, phase, created, launched),
                (tasks, errors, retry_at),
                (essential, failed, logs),
            )| Attempt {
                attempt: number % 5,
                client_token: format!("token-{number}"),
                started_by: format!("seq-run-{number}"),
                cluster: Some("c".into()),
                phase,
                created_at: at(created),
                launched_at: launched.map(at),
                last_launch_at: None,
                finished_at: None,
                tasks,
                launch_errors: errors,
                retry_launch_at: retry_at.map(at),
                last_error: None,
                essential_containers: essential.then(|| vec!["app".into()]),
                failure: failed.then(|| Failure {
                    class: FailureClass::ExitCode,
                    reason: "x".into(),
                    message: "x".into(),
                }),
                logs: logs.map(|(requested, done, n)| AttemptLogs {
                    requested_at: at(requested),
                    done,
                    tails: (0..n)
                        .map(|i| LogTail {
                            task_id: format!("t{i}"),
                            container: "app".into(),
                            lines: vec!["boom".into()],
                            ..Default::default()
                        })
                        .collect(),
                    note: None,
                }),
            },
        )
}

fn arb_step_status() -> impl Strategy<Value = StepStatus> {
    (
        arb_step_phase(),
        prop::collection::vec(arb_attempt(), 0..4),
        prop::option::of(any::<i64>()),
        any::<bool>(),
    )
        .prop_map(|(phase, attempts, next, ignored)| StepStatus {
            name: String::new(),
            phase,
            attempts,
            next_attempt_at: next.map(at),
            start_time: None,
            completion_time: None,
            failure: None,
            failure_ignored: ignored,
        })
}

fn arb_observation() -> impl Strategy<Value = Observation> {
    let error = ApiError {
        transient: false,
        code: "AccessDeniedException".into(),
        message: "no".into(),
    };
    prop_oneof![
        Just(Observation::Tick),
        Just(Observation::CancelRequested {
            reason: "test".into()
        }),
        (
            0usize..6,
            0u32..5,
            prop::collection::vec(arb_task(), 0..4),
            any::<bool>()
        )
            .prop_map(|(step, attempt, tasks, token_conflict)| {
                Observation::Launched {
                    step,
                    attempt,
                    outcome: Ok(LaunchResponse {
                        tasks,
                        failures: vec![],
                        token_conflict,
                    }),
                }
            }),
        (0usize..6, 0u32..5, prop::collection::vec(arb_task(), 0..4)).prop_map(
            |(step, attempt, tasks)| Observation::LookedUp {
                step,
                attempt,
                outcome: Ok(tasks)
            }
        ),
        (prop::collection::vec(arb_task(), 0..4), any::<bool>()).prop_map(|(tasks, forget)| {
            let missing = if forget {
                tasks
                    .iter()
                    .map(|t| MissingTask::fresh(t.task_arn.clone()))
                    .collect()
            } else {
                vec![]
            };
            Observation::Described {
                outcome: Ok(DescribeResponse { tasks, missing }),
            }
        }),
        (0usize..6, 0u32..5).prop_map(move |(step, attempt)| {
            Observation::TaskDefinitionDescribed {
                step,
                attempt,
                outcome: Err(error.clone()),
            }
        }),
        (0usize..6, 0u32..5, prop::collection::vec(".{0,600}", 0..30)).prop_map(
            |(step, attempt, lines)| Observation::LogsFetched {
                step,
                attempt,
                tails: vec![LogTail {
                    task_id: "t0".into(),
                    container: "app".into(),
                    lines,
                    ..Default::default()
                }],
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn an_arbitrary_status_never_panics_the_engine(
        plan_steps in 1usize..4,
        steps in prop::collection::vec(arb_step_status(), 0..6),
        run_phase in prop_oneof![Just(RunPhase::Pending), Just(RunPhase::Running), Just(RunPhase::Succeeded), Just(RunPhase::Failed)],
        current in prop::option::of(0usize..8),
        total in 0usize..6,
        matching in any::<bool>(),
        cancelled in any::<bool>(),
        options in (any::<bool>(), any::<bool>(), 0u32..3, prop::option::of(1u64..100)),
        observations in prop::collection::vec(arb_observation(), 0..6),
        later in 0i64..10_000,
    ) {
        let mut planned: Vec<PlannedStep> = (0..plan_steps).map(|i| step(&format!("s{i}"))).collect();
        let (essential, suspended, retries, timeout) = options;
        for s in &mut planned {
            if essential {
                s.definition.success = Some(crate::step::SuccessPolicy {
                    containers: crate::step::ContainerSelection::Policy(crate::step::ContainerPolicy::Essential),
                    exit_codes: vec![0],
                });
            }
            s.definition.timeout_seconds = timeout;
            if retries > 0 {
                s.definition.retry = Some(RetryPolicy { limit: retries, when: vec![RetryOn::Launch, RetryOn::ExitCode], backoff: Backoff { initial_seconds: 1, max_seconds: 4, factor: 2 } });
            }
        }
        let mut plan = plan_of(planned);
        plan.suspended = suspended;
        plan.active_deadline_seconds = timeout;
        let mut status = RunStatus::new("run-1".into(), &plan);
        status.phase = run_phase;
        status.current_step = current;
        status.start_time = Some(t0());
        status.cancel = cancelled.then(|| CancelRequest { reason: "test".into(), requested_at: t0() });
        if matching {
            // Right length and names, arbitrary contents: past the consistency check.
            for (i, mut s) in steps.into_iter().take(plan_steps).enumerate() {
                s.name = plan.steps[i].name.clone();
                // Numbered 1, 2, ... with only the last unfinished: past the structural check too.
                let last = s.attempts.len();
                for (k, attempt) in s.attempts.iter_mut().enumerate() {
                    attempt.attempt = k as u32 + 1;
                    if k + 1 < last && !attempt.phase.is_terminal() {
                        attempt.phase = AttemptPhase::Failed;
                    }
                }
                status.steps[i] = s;
            }
        } else {
            status.steps = steps;
            status.total_steps = total;
        }
        let decision = advance(&plan, &status, &observations, at(later));
        if mismatch(&plan, &status).is_some() {
            prop_assert!(decision.actions.is_empty());
            prop_assert_eq!(&decision.status, &status);
        }
    }
}
