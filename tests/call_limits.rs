//! A burst of Sequences created at once launches at the rate the controller is told ECS accepts:
//! every launch waits its turn instead of being fired at once, so no call is dropped, none is
//! looked up, and each step is launched once. Real kube-apiserver, the emulator, the real binary.

mod support;

use std::time::Duration;

use serde_json::json;
use support::world::*;

const SEQUENCES: usize = 24;
const RATE: usize = 4;
const BURST: usize = 4;

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_sequences_launches_at_the_configured_rate_each_step_once() {
    let world = World::start().await;
    let (controller, _log) = world.controller_with(&[
        "--ecs-calls-per-second",
        &RATE.to_string(),
        "--ecs-burst",
        &BURST.to_string(),
        "--ecs-max-in-flight",
        "2",
    ]);
    for i in 0..SEQUENCES {
        world
            .create(&format!("burst-{i:02}"), json!([step("only", "quick")]))
            .await;
    }
    for i in 0..SEQUENCES {
        world
            .wait_condition(
                &format!("burst-{i:02}"),
                "Complete",
                Duration::from_secs(120),
            )
            .await;
    }
    stop(controller);

    let run_tasks = world.emu.calls_of("RunTask");
    assert_eq!(
        run_tasks.len(),
        SEQUENCES,
        "one RunTask per step, none repeated"
    );
    assert!(
        world.emu.calls_of("ListTasks").is_empty(),
        "no launch had to be looked up"
    );
    let mut times: Vec<f64> = run_tasks
        .iter()
        .filter_map(|c| c["time"].as_f64())
        .collect();
    times.sort_by(f64::total_cmp);
    // In no second did more calls arrive than the burst and one second's rate (one more for the
    // network's jitter between the controller's clock and the emulator's).
    for (i, t) in times.iter().enumerate() {
        let within = times[i..].iter().take_while(|u| **u < t + 1.0).count();
        assert!(
            within <= BURST + RATE + 1,
            "{within} RunTask calls in the second after call {i}: {times:?}"
        );
    }
    // And the whole burst took as long as the rate says: 20 calls after the first 4, at 4 a second.
    let span = times[SEQUENCES - 1] - times[0];
    let least = (SEQUENCES - BURST) as f64 / RATE as f64 - 0.5;
    assert!(
        span >= least,
        "the launches took {span:.1}s, less than {least}s: {times:?}"
    );
}
