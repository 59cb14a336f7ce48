//! A Sequence's conditions, derived from its run's status. What each condition means is the API's
//! (`crate::api::conditions`); this file decides them from the run.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::conditions::{COMPLETE, FAILED, HELD, RUNNING, SPEC_CHANGED, SUSPENDED};
use sequencer_core::status::{RunPhase, RunStatus, StepPhase};

/// `previous` with the `Held` condition set to True for `reason` and `message`; every other
/// condition is kept as it was.
pub fn held(
    previous: &[Condition],
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let since = previous
        .iter()
        .find(|c| c.type_ == HELD && c.status == "True")
        .map_or(Time(now), |c| c.last_transition_time.clone());
    let mut conditions: Vec<Condition> = previous
        .iter()
        .filter(|c| c.type_ != HELD)
        .cloned()
        .collect();
    conditions.push(Condition {
        type_: HELD.into(),
        status: "True".into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: since,
        observed_generation: generation,
    });
    conditions
}

/// What the conditions are computed from besides the run.
#[derive(Clone, Debug, Default)]
pub struct Context<'a> {
    pub suspended: bool,
    pub generation: Option<i64>,
    /// Why the run could not start (reason, message), e.g. `InvalidSpec`.
    pub refused: Option<(&'a str, &'a str)>,
    /// What changed in the spec since the run's plan was pinned, if anything did.
    pub spec_changed: Option<&'a str>,
}

pub fn conditions(
    previous: &[Condition],
    run: &RunStatus,
    ctx: &Context,
    now: Timestamp,
) -> Vec<Condition> {
    let finished = run.phase.is_terminal() || ctx.refused.is_some();
    let current = run
        .current_step
        .and_then(|i| run.steps.get(i).map(|s| (i, s)));
    let running = !finished && current.is_some_and(|(_, s)| s.phase == StepPhase::Running);
    let (running_reason, running_message) = match current {
        Some((i, s)) if running => (
            "StepRunning".to_owned(),
            format!("step {}/{} ({}) is running", i + 1, run.total_steps, s.name),
        ),
        _ if finished => ("Finished".to_owned(), "the run has ended".to_owned()),
        _ => ("Waiting".to_owned(), "no step is running".to_owned()),
    };
    let complete = run.phase == RunPhase::Succeeded && ctx.refused.is_none();
    let (failed, failed_reason, failed_message) = failure(run, ctx);
    let suspended = ctx.suspended && !finished;

    let make = |type_: &str, status: bool, reason: String, message: String| {
        let status = if status { "True" } else { "False" }.to_owned();
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: type_.to_owned(),
            status,
            reason,
            message,
            last_transition_time,
            observed_generation: ctx.generation,
        }
    };
    // (reason, message) when the condition holds, and when it does not.
    let complete_text = if complete {
        ("Succeeded".into(), run.message.clone().unwrap_or_default())
    } else {
        ("NotFinished".into(), "the run has not succeeded".into())
    };
    let suspended_text = if suspended {
        (
            "SuspendRequested".into(),
            "spec.suspend is true: no further step is launched".into(),
        )
    } else {
        ("NotSuspended".into(), "spec.suspend is false".into())
    };
    let spec_changed_text = match ctx.spec_changed {
        Some(message) => ("PinnedPlanKept".into(), message.to_owned()),
        None => (
            "SpecMatchesPlan".into(),
            "the run follows the current spec".into(),
        ),
    };
    vec![
        make(RUNNING, running, running_reason, running_message),
        make(COMPLETE, complete, complete_text.0, complete_text.1),
        make(FAILED, failed, failed_reason, failed_message),
        make(SUSPENDED, suspended, suspended_text.0, suspended_text.1),
        make(
            SPEC_CHANGED,
            ctx.spec_changed.is_some(),
            spec_changed_text.0,
            spec_changed_text.1,
        ),
    ]
}

fn failure(run: &RunStatus, ctx: &Context) -> (bool, String, String) {
    if let Some((reason, message)) = ctx.refused {
        return (true, reason.to_owned(), message.to_owned());
    }
    if run.phase != RunPhase::Failed {
        return (false, "NotFailed".into(), "the run has not failed".into());
    }
    let step = run
        .steps
        .iter()
        .find(|s| s.phase == StepPhase::Failed && !s.failure_ignored);
    let reason = if run.cancel.is_some() {
        "Cancelled".to_owned()
    } else {
        step.and_then(|s| s.failure.as_ref())
            .map(|f| camel_reason(&f.reason))
            .unwrap_or_else(|| "Failed".into())
    };
    let message = run
        .message
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "the run failed".into());
    (true, reason, message)
}

/// Condition reasons must be CamelCase identifiers: `RESOURCE:MEMORY` becomes `RESOURCEMEMORY`.
fn camel_reason(reason: &str) -> String {
    let cleaned: String = reason
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    match cleaned.chars().next() {
        Some(c) if c.is_ascii_alphabetic() => cleaned,
        _ => format!("Failed{cleaned}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sequencer_core::plan::{Plan, PlannedStep};
    use sequencer_core::run_task::RunTaskParameters;
    use sequencer_core::status::{Failure, FailureClass};
    use sequencer_core::step::StepDefinition;

    fn run_of(n: usize) -> RunStatus {
        let steps = (0..n)
            .map(|i| PlannedStep {
                name: format!("s{i}"),
                definition: StepDefinition::ecs_task(RunTaskParameters {
                    task_definition: "td".into(),
                    ..Default::default()
                }),
            })
            .collect();
        RunStatus::new("r".into(), &Plan::new(steps))
    }

    fn find<'a>(cs: &'a [Condition], t: &str) -> &'a Condition {
        cs.iter().find(|c| c.type_ == t).expect("condition present")
    }

    #[test]
    fn running_then_complete_with_stable_transition_times() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let t1 = Timestamp::from_second(1_800_000_100).unwrap();
        let t2 = Timestamp::from_second(1_800_000_200).unwrap();
        let mut run = run_of(2);
        run.phase = RunPhase::Running;
        run.current_step = Some(0);
        run.steps[0].phase = StepPhase::Running;
        let ctx = Context {
            generation: Some(3),
            ..Default::default()
        };
        let first = conditions(&[], &run, &ctx, t0);
        assert_eq!(find(&first, RUNNING).status, "True");
        assert_eq!(find(&first, RUNNING).message, "step 1/2 (s0) is running");
        assert_eq!(find(&first, COMPLETE).status, "False");
        assert_eq!(find(&first, RUNNING).observed_generation, Some(3));

        // Still running at t1 (another step): the transition time stays t0.
        run.current_step = Some(1);
        run.steps[1].phase = StepPhase::Running;
        let second = conditions(&first, &run, &ctx, t1);
        assert_eq!(find(&second, RUNNING).last_transition_time, Time(t0));
        assert_eq!(find(&second, COMPLETE).last_transition_time, Time(t0));

        run.phase = RunPhase::Succeeded;
        run.current_step = None;
        let third = conditions(&second, &run, &ctx, t2);
        assert_eq!(
            (
                find(&third, RUNNING).status.as_str(),
                find(&third, RUNNING).last_transition_time.clone()
            ),
            ("False", Time(t2))
        );
        assert_eq!(
            (
                find(&third, COMPLETE).status.as_str(),
                find(&third, COMPLETE).last_transition_time.clone()
            ),
            ("True", Time(t2))
        );
        assert_eq!(find(&third, FAILED).last_transition_time, Time(t0));
    }

    #[test]
    fn failed_carries_the_failing_steps_reason_as_camel_case() {
        let mut run = run_of(1);
        run.phase = RunPhase::Failed;
        run.steps[0].phase = StepPhase::Failed;
        run.steps[0].failure = Some(Failure {
            class: FailureClass::Launch,
            reason: "RESOURCE:MEMORY".into(),
            message: "m".into(),
        });
        run.message = Some("step s0 failed: m".into());
        let cs = conditions(&[], &run, &Context::default(), Timestamp::UNIX_EPOCH);
        let failed = find(&cs, FAILED);
        assert_eq!(
            (
                failed.status.as_str(),
                failed.reason.as_str(),
                failed.message.as_str()
            ),
            ("True", "RESOURCEMEMORY", "step s0 failed: m")
        );
        assert_eq!(find(&cs, COMPLETE).status, "False");
    }

    #[test]
    fn no_condition_has_an_empty_message() {
        let cs = conditions(&[], &run_of(1), &Context::default(), Timestamp::UNIX_EPOCH);
        assert!(
            cs.iter()
                .all(|c| !c.message.is_empty() && !c.reason.is_empty()),
            "{cs:?}"
        );
    }

    #[test]
    fn a_refused_spec_is_failed_and_suspension_shows_only_while_unfinished() {
        let run = run_of(1);
        let ctx = Context {
            refused: Some(("InvalidSpec", "spec.steps[0]: bad")),
            suspended: true,
            ..Default::default()
        };
        let cs = conditions(&[], &run, &ctx, Timestamp::UNIX_EPOCH);
        assert_eq!(
            (
                find(&cs, FAILED).status.as_str(),
                find(&cs, FAILED).reason.as_str()
            ),
            ("True", "InvalidSpec")
        );
        assert_eq!(find(&cs, SUSPENDED).status, "False");
        let cs = conditions(
            &[],
            &run,
            &Context {
                suspended: true,
                ..Default::default()
            },
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(find(&cs, SUSPENDED).status, "True");
    }

    #[test]
    fn a_spec_change_during_the_run_is_reported_until_it_matches_again() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let t1 = Timestamp::from_second(1_800_000_100).unwrap();
        let run = run_of(1);
        let quiet = conditions(&[], &run, &Context::default(), t0);
        assert_eq!(find(&quiet, SPEC_CHANGED).status, "False");
        let ctx = Context {
            spec_changed: Some("spec.steps changed at generation 2"),
            ..Default::default()
        };
        let changed = conditions(&quiet, &run, &ctx, t1);
        let c = find(&changed, SPEC_CHANGED);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
            (
                "True",
                "PinnedPlanKept",
                "spec.steps changed at generation 2"
            )
        );
        assert_eq!(c.last_transition_time, Time(t1));
    }
}
