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

/// The Kubernetes requests are paced too: with the API server allowed only 3 requests a second,
/// a dozen Sequences still complete, each step once, and the Lease (renewed by its own client,
/// outside the pace) never changes hands.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_pace_to_the_api_server_delays_work_but_never_the_lease() {
    use k8s_openapi::api::coordination::v1::Lease;
    let world = World::start().await;
    let (controller, log) = world.controller_with(&[
        "--kube-qps",
        "3",
        "--kube-burst",
        "3",
        "--leader-election",
        "--lease-namespace",
        "default",
        "--identity",
        "paced",
    ]);
    let leases: kube::Api<Lease> = kube::Api::namespaced(world.client.clone(), "default");
    let holder = || async {
        leases
            .get_opt("sequencer-controller")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    for i in 0..12 {
        world
            .create(&format!("paced-{i:02}"), json!([step("only", "quick")]))
            .await;
    }
    let started = std::time::Instant::now();
    for i in 0..12 {
        world
            .wait_condition(
                &format!("paced-{i:02}"),
                "Complete",
                Duration::from_secs(240),
            )
            .await;
        assert_eq!(holder().await.as_deref(), Some("paced"));
    }
    let took = started.elapsed();
    let mut controller = controller;
    assert!(
        controller.try_wait().ok().flatten().is_none(),
        "the controller exited (a lost Lease ends it): {:?}",
        log_lines(&log).last()
    );
    assert_eq!(world.emu.calls_of("RunTask").len(), 12);
    stop(controller);
    // At 3 requests a second, a dozen Sequences (each at least a finalizer, two status writes and
    // an Event before its launch) cannot all have completed in under 10 s.
    assert!(
        took >= Duration::from_secs(10),
        "done in {took:?}: the pace was not applied"
    );
}
