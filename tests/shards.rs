//! Sharding on the real kube-apiserver with the emulator and the real binary: three controllers
//! (the default shard and shards `a` and `b`) split 300 Sequences by their `sequencer.dev/shard`
//! label, no Sequence is touched by two of them, each keeps its own Lease, and a shard that is
//! down leaves the others' Sequences unaffected.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use sequencer::api::sequence::Sequence;
use serde_json::json;
use support::world::*;

const PER_SHARD: usize = 100;
const SHARDS: [&str; 3] = ["default", "a", "b"];

/// The controller of `shard` ("default" for the default shard), with leader election.
fn shard_controller(world: &World, shard: &str) -> (std::process::Child, std::path::PathBuf) {
    let identity = format!("shard-{shard}");
    let mut args = vec![
        "--shards",
        "a,b",
        "--identity",
        &identity,
        "--leader-election",
        "--lease-namespace",
        "default",
    ];
    if shard != "default" {
        args.extend(["--shard", shard]);
    }
    world.controller_with(&args)
}

/// A one-step Sequence, labelled with `label` as its shard when given.
async fn create(world: &World, name: &str, label: Option<&str>) {
    let labels = match label {
        Some(shard) => json!({"sequencer.dev/shard": shard}),
        None => json!({}),
    };
    let object = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence",
        "metadata": {"name": name, "labels": labels},
        "spec": {"steps": [step("only", "quick")], "pollIntervalSeconds": 1}});
    world.create_object(object).await;
}

/// The shard that must own a Sequence: its name's prefix.
fn owner(name: &str) -> &str {
    name.split('-').next().unwrap_or_default()
}

/// Every Sequence named in a span of the controller's log: the ones it reconciled.
fn touched(log: &Path) -> BTreeSet<String> {
    log_lines(log)
        .iter()
        .filter_map(|l| l["span"]["sequence"].as_str().map(str::to_owned))
        .collect()
}

async fn wait_complete(world: &World, names: &[String], limit: Duration) {
    let start = Instant::now();
    loop {
        let done: BTreeSet<String> = world
            .sequences()
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .filter(|s| {
                s.status.as_ref().is_some_and(|st| {
                    st.conditions
                        .iter()
                        .any(|c| c.type_ == "Complete" && c.status == "True")
                })
            })
            .filter_map(|s| s.metadata.name)
            .collect();
        let missing: Vec<&String> = names.iter().filter(|n| !done.contains(*n)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{} never completed: {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_shards_split_the_sequences_and_a_shard_down_leaves_the_others_running() {
    let world = World::start().await;
    let mut controllers: BTreeMap<&str, (std::process::Child, std::path::PathBuf)> = SHARDS
        .iter()
        .map(|shard| (*shard, shard_controller(&world, shard)))
        .collect();

    // The default shard's Sequences: half unlabelled, half labelled with a shard nobody runs
    // (a typo must not leave a Sequence without a controller).
    let mut names = Vec::new();
    for i in 0..PER_SHARD {
        for shard in SHARDS {
            let name = format!("{shard}-{i:03}");
            let label = match shard {
                "default" if i % 2 == 0 => None,
                "default" => Some("no-such-shard"),
                named => Some(named),
            };
            create(&world, &name, label).await;
            names.push(name);
        }
    }
    wait_complete(&world, &names, Duration::from_secs(300)).await;
    assert_eq!(
        world.emu.calls_of("RunTask").len(),
        3 * PER_SHARD,
        "one launch per Sequence"
    );

    // No Sequence was touched by two shards: each controller reconciled exactly its own.
    for (shard, (_, log)) in &controllers {
        let touched = touched(log);
        let expected: BTreeSet<String> = names
            .iter()
            .filter(|n| owner(n) == *shard)
            .cloned()
            .collect();
        assert_eq!(
            touched.len(),
            PER_SHARD,
            "shard {shard} reconciled {} Sequences",
            touched.len()
        );
        assert_eq!(
            touched, expected,
            "shard {shard} reconciled others' Sequences"
        );
    }
    // And each Event was reported by the owning shard.
    let events: Api<Event> = Api::namespaced(world.client.clone(), "default");
    let mut reported = 0;
    for event in events
        .list(&Default::default())
        .await
        .expect("events")
        .items
    {
        let Some(name) = event.regarding.as_ref().and_then(|r| r.name.clone()) else {
            continue;
        };
        assert_eq!(
            event.reporting_instance.as_deref(),
            Some(format!("shard-{}", owner(&name)).as_str()),
            "Event {:?} on {name}",
            event.reason
        );
        reported += 1;
    }
    assert!(reported >= 3 * PER_SHARD, "only {reported} Events");

    // Each shard leads through a Lease of its own.
    let leases: Api<Lease> = Api::namespaced(world.client.clone(), "default");
    for (lease, holder) in [
        ("sequencer-controller", "shard-default"),
        ("sequencer-controller-a", "shard-a"),
        ("sequencer-controller-b", "shard-b"),
    ] {
        let held = leases
            .get(lease)
            .await
            .expect("the shard's Lease")
            .spec
            .and_then(|s| s.holder_identity);
        assert_eq!(held.as_deref(), Some(holder), "Lease {lease}");
    }

    // Shard a goes down hard: the other shards' new Sequences run; shard a's waits, untouched.
    let (mut killed, _) = controllers.remove("a").expect("shard a");
    killed.kill().expect("SIGKILL shard a");
    let _ = killed.wait();
    for shard in SHARDS {
        create(
            &world,
            &format!("{shard}-late"),
            Some(shard).filter(|s| *s != "default"),
        )
        .await;
    }
    wait_complete(
        &world,
        &["default-late".into(), "b-late".into()],
        Duration::from_secs(60),
    )
    .await;
    let waiting: Sequence = world.sequences().get("a-late").await.expect("a-late");
    assert!(
        waiting.status.is_none() && waiting.metadata.finalizers.is_none(),
        "no shard touched a-late while shard a was down: {:?}",
        waiting.status
    );
    assert_eq!(world.emu.calls_of("RunTask").len(), 3 * PER_SHARD + 2);

    // Back up (after its Lease expires), shard a runs it.
    let restarted = shard_controller(&world, "a");
    wait_complete(&world, &["a-late".into()], Duration::from_secs(90)).await;
    assert_eq!(world.emu.calls_of("RunTask").len(), 3 * PER_SHARD + 3);
    let touched_again = touched(&restarted.1);
    assert!(
        touched_again.contains("a-late") && touched_again.iter().all(|n| owner(n) == "a"),
        "the restarted shard reconciles its own Sequences only: {touched_again:?}"
    );
    stop(restarted.0);
    for (_, (child, _)) in controllers {
        stop(child);
    }
}

/// The running-task gauge of the controller whose log is `log`.
fn running_tasks(log: &Path) -> f64 {
    let (_, metrics) = http_get(&http_address(log), "/metrics");
    metric(&metrics, "sequencer_running_tasks")
}

/// A Sequence relabelled to another shard mid-step: the old shard lets go of it (it no longer
/// polls the task, nor keeps its session) and the new one follows the task to the end.
#[tokio::test(flavor = "multi_thread")]
async fn a_sequence_moved_to_another_shard_mid_run_is_let_go_by_the_old_one() {
    let world = World::start().await;
    let (a, a_log) = shard_controller(&world, "a");
    let (b, b_log) = shard_controller(&world, "b");
    let object = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence",
        "metadata": {"name": "moving", "labels": {"sequencer.dev/shard": "a"}},
        "spec": {"steps": [step("long", "slow")], "pollIntervalSeconds": 1}});
    world.create_object(object).await;
    world
        .wait_condition("moving", "Running", Duration::from_secs(60))
        .await;
    world
        .emu
        .wait_for(Duration::from_secs(30), "the task", |e| {
            e.calls_of("RunTask").first().map(|_| ())
        });
    let start = Instant::now();
    while running_tasks(&a_log) < 1.0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "shard a never watched the task"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let sequences: Api<Sequence> = world.sequences();
    sequences
        .patch(
            "moving",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"sequencer.dev/shard": "b"}}})),
        )
        .await
        .expect("relabel");
    let start = Instant::now();
    while running_tasks(&a_log) > 0.0 || running_tasks(&b_log) < 1.0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "shard a still watches the task ({}), or shard b does not ({})",
            running_tasks(&a_log),
            running_tasks(&b_log)
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The new shard follows the task to its end.
    let arns = world.emu.task_arns("etl").await;
    assert_eq!(arns.len(), 1, "{arns:?}");
    world
        .emu
        .finish_task(&arns[0], Some(0), "EssentialContainerExited", "done");
    world
        .wait_condition("moving", "Complete", Duration::from_secs(60))
        .await;
    assert_eq!(world.emu.calls_of("RunTask").len(), 1);
    stop(a);
    stop(b);
}
