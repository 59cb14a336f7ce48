//! The controller's cache of Sequences lags behind its own status writes (a loaded API server's
//! watch does): a Sequence woken before its cache catches up must be read fresh, not judged from
//! the older copy, which would look its launch up (ListTasks) or re-issue RunTask. Real
//! kube-apiserver behind a proxy that delivers watch events 3 s late, the emulator, the binary.

mod support;

use std::time::Duration;

use serde_json::json;
use support::lagging_proxy::LaggingProxy;
use support::world::*;

const SEQUENCES: usize = 6;

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_behind_the_controllers_own_writes_never_makes_it_look_a_launch_up() {
    let world = World::start().await;
    let proxy = LaggingProxy::start(world.client.clone(), Duration::from_secs(3)).await;
    let (controller, log) = world.controller_as(&proxy.kubeconfig, &[]);
    for i in 0..SEQUENCES {
        world
            .create(
                &format!("lagging-{i}"),
                json!([step("first", "quick"), step("second", "quick")]),
            )
            .await;
    }
    for i in 0..SEQUENCES {
        world
            .wait_condition(
                &format!("lagging-{i}"),
                "Complete",
                Duration::from_secs(120),
            )
            .await;
    }
    let (_, metrics) = http_get(&http_address(&log), "/metrics");
    stop(controller);

    assert_eq!(
        world.emu.calls_of("RunTask").len(),
        2 * SEQUENCES,
        "one RunTask per step, none re-issued"
    );
    assert_eq!(
        world.emu.calls_of("ListTasks").len(),
        0,
        "no launch was looked up: the controller knew every answer it had written"
    );
    // The cache really was behind: the controller read Sequences fresh instead.
    let fresh = metric(&metrics, "sequencer_stale_cache_reads_total");
    assert!(fresh >= 1.0, "no fresh read: {metrics}");
}
