//! The exactly-once protocol under ECS's faults, through the real binary and the emulator: errors
//! whose outcome is unknown are looked up, never judged; definite refusals fail what they must.

mod support;

use std::collections::BTreeSet;

use support::batch_step as step;
use support::*;

/// RunTask carried out, but its answer lost behind a 500 whose code sequencer has never heard
/// of, on every try the SDK makes: whether the task started is unknown. It must be looked up and
/// adopted: not failed as a refused launch, and not launched again with a new token (which the
/// step's retry policy would do for a launch failure).
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_runtask_answer_with_an_unknown_code_is_looked_up_not_failed_or_relaunched() {
    let emu = Emulator::with_jobs(&[("x", &[("SEQ_EMU_SECONDS", "1")])]).await;
    // The SDK tries a call three times; every try takes effect and loses its answer.
    emu.inject_error("RunTask", 3, 500, "InternalError", true);
    let retry = "    retry: {limit: 2, when: [launch, infrastructure]}\n";
    let b = batch(&[step("one", "x:1", retry), step("two", "x:1", "")].concat());
    let run = run(emu.run_batch(&b.path).args(["--output", "json"]));
    assert_eq!(run.code, 0, "{run:?}");
    let kinds: Vec<String> = events(&run)
        .iter()
        .filter_map(|e| e["event"].as_str().map(String::from))
        .collect();
    assert!(kinds.contains(&"launchDeferred".into()), "{kinds:?}");
    assert!(kinds.contains(&"tasksFound".into()), "{kinds:?}");
    assert!(!kinds.contains(&"attemptFailed".into()), "{kinds:?}");
    assert_eq!(
        emu.task_arns("etl").await.len(),
        2,
        "one task per step, the lost one adopted"
    );
    let tokens: BTreeSet<String> = emu
        .calls_of("RunTask")
        .iter()
        .filter_map(|c| c["clientToken"].as_str().map(String::from))
        .collect();
    assert_eq!(tokens.len(), 2, "one clientToken per step: {tokens:?}");
}

/// A documented refusal is definite: ECS did nothing, and the step fails with its reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_documented_refusal_of_runtask_fails_the_launch_with_its_code() {
    let emu = Emulator::with_jobs(&[("x", &[("SEQ_EMU_SECONDS", "1")])]).await;
    emu.inject_error("RunTask", 1, 400, "AccessDeniedException", false);
    let b = batch(&step("one", "x:1", ""));
    let run = run(&mut emu.run_batch(&b.path));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("FAILED [AccessDeniedException]"),
        "{run:?}"
    );
    assert!(emu.task_arns("etl").await.is_empty());
}

/// `containers: essential` needs the task definition; when ECS refuses DescribeTaskDefinition
/// (no permission), the step can never be judged: it fails with that reason at once instead of
/// waiting for a deadline that may not exist.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_describe_task_definition_fails_the_step_instead_of_parking_it() {
    let emu = Emulator::with_jobs(&[("x", &[("SEQ_EMU_SECONDS", "1")])]).await;
    emu.inject_error(
        "DescribeTaskDefinition",
        1000,
        400,
        "AccessDeniedException",
        false,
    );
    // The timeout bounds the test should the step ever be parked again.
    let essential = "    success: {containers: essential}\n    timeout_seconds: 30\n";
    let b = batch(&[step("one", "x:1", essential), step("two", "x:1", "")].concat());
    let run = run(&mut emu.run_batch(&b.path));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("[1/2 one] FAILED [AccessDeniedException]"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("cannot be judged under `containers: essential`"),
        "{run:?}"
    );
    assert_eq!(emu.calls_of("RunTask").len(), 1, "step two never launched");
}
