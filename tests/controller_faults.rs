//! The controller against ECS's eventual consistency and lost answers, through the real binary,
//! the test kube-apiserver and the emulator's switches: a task ECS does not list or describe yet
//! is neither launched again nor taken for lost.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;
use support::world::*;

/// ECS answers MISSING for a task it has just started. When the shared poller then cannot poll
/// for longer than the grace period (throttled), the early MISSING it holds is served late, at
/// the Sequence's grace timer; it must not be taken for a lost task. The step completes once
/// ECS answers again.
#[tokio::test(flavor = "multi_thread")]
async fn an_early_missing_served_after_a_throttled_minute_is_not_a_lost_task() {
    let world = World::start().await;
    world.emu.consistency(json!({"earlyMissingSeconds": 30}));
    let controller = world.controller();
    world.create("early", json!([step("one", "steady")])).await;
    // The poller's first answer for the new task is MISSING; then DescribeTasks is throttled
    // 24 times (eight polls): the poller backs off (1 s doubling to 60 s, at least half of each) for more
    // than the 60 s grace. (Each poll is tried three times by the SDK.)
    let start = Instant::now();
    loop {
        let launched = world
            .emu
            .calls_of("RunTask")
            .first()
            .map(|c| c["time"].clone());
        let described_after = launched.is_some_and(|t| {
            world
                .emu
                .calls_of("DescribeTasks")
                .iter()
                .any(|c| c["time"].as_f64() > t.as_f64())
        });
        if described_after {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the task was never polled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    world.emu.inject("DescribeTasks", "throttle", 24, None);
    let done = world
        .wait_condition("early", "Complete", Duration::from_secs(300))
        .await;
    let run = done.status.unwrap().run.unwrap().to_value();
    assert_eq!(
        run["steps"][0]["attempts"].as_array().map_or(0, Vec::len),
        1,
        "{run}"
    );
    assert!(
        run["steps"][0]["attempts"][0]["tasks"][0]
            .get("missing")
            .is_none(),
        "{run}"
    );
    stop(controller);
}

/// RunTask's answers are lost after ECS started the task, the controller is killed, and
/// ListTasks does not list the task yet (it lags RunTask). The restarted controller's lookup by
/// startedBy then finds nothing: it must re-issue RunTask with the same clientToken (ECS answers
/// with the original task), never start a second attempt or a second task.
#[tokio::test(flavor = "multi_thread")]
async fn a_launch_looked_up_while_listtasks_lags_is_reissued_with_the_same_token() {
    let world = World::start().await;
    world.emu.consistency(json!({"listLagSeconds": 120}));
    world
        .emu
        .inject_error("RunTask", 10, 500, "InternalFailure", true);
    let mut controller = world.controller();
    world.create("lagging", json!([step("one", "quick")])).await;
    let start = Instant::now();
    while world.emu.calls_of("RunTask").is_empty() {
        assert!(start.elapsed() < Duration::from_secs(60), "never launched");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    controller.kill().unwrap();
    let _ = controller.wait();
    let before = world.emu.calls().len();
    let controller = world.controller();
    let done = world
        .wait_condition("lagging", "Complete", Duration::from_secs(180))
        .await;
    let run = done.status.unwrap().run.unwrap().to_value();
    assert_eq!(
        run["steps"][0]["attempts"].as_array().map_or(0, Vec::len),
        1,
        "one attempt: {run}"
    );
    let after_restart = &world.emu.calls()[before..];
    let looked_up = after_restart
        .iter()
        .position(|c| c["operation"] == "ListTasks");
    let reissued = after_restart
        .iter()
        .position(|c| c["operation"] == "RunTask");
    assert!(
        looked_up.is_some() && looked_up < reissued,
        "the restarted controller looked the launch up before re-issuing it"
    );
    let runs = world.emu.calls_of("RunTask");
    let tokens: BTreeSet<String> = runs.iter().map(|c| c["clientToken"].to_string()).collect();
    assert_eq!(tokens.len(), 1, "always the same clientToken: {tokens:?}");
    world.emu.consistency(json!({})); // list every task again, for counting
    let tasks = world.tasks_by_started_by().await;
    assert_eq!(
        tasks.values().sum::<usize>(),
        1,
        "one task in ECS: {tasks:?}"
    );
    stop(controller);
}
